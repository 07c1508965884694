"""Django's own tests of its task API, run against jobqueue's backend (tests/e2e/test_django_task_suites.py).

Nothing of Django's tests is kept here: the test fetches Django's sdist from PyPI and unpacks its
`tests/tasks` as the package `django_task_tests` (ours is named `tasks`). This package holds only
the configuration: the settings, the backends that stand in for Django's dummy and immediate ones,
and the runner that says which tests apply.
"""
