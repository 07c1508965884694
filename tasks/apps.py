from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Job types"

    def ready(self) -> None:
        from . import log_buffer, monitoring, registry, signals  # noqa: F401  (signals connect on import)

        registry.load_handler_modules()
