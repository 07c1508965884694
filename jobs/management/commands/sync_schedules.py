from django.core.management.base import BaseCommand

from jobs import services


class Command(BaseCommand):
    help = "Write the schedules declared in code to the database (the mover also does this when it starts)."

    def handle(self, *args, **options):
        result = services.schedules_sync_code()
        for label, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("removed", result.removed),
            ("left alone (made at run time)", result.conflicts),
        ):
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        if not result.changed and not result.conflicts:
            self.stdout.write("code-defined schedules are up to date")
