#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a setting is missing or malformed: one line, not a traceback
        hint = " (in development `make run` leaves var/dev.env, setting DEBUG=1)" if "SECRET_KEY" in str(exc) else ""
        sys.stderr.write(f"ImproperlyConfigured: {exc}{hint}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
