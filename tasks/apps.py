from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Job types"

    def ready(self) -> None:
        from jobs.rules import registry

        from . import control, fence, log_buffer, node, outcomes  # noqa: F401  (they register on import)

        registry.load_handler_modules()
