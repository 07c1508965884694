"""A Django app of a project that runs its `@task` functions on jobqueue (its settings: settings.py)."""
