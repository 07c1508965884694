"""Run Django's task tests (`django_task_tests`, unpacked from Django's sdist) against jobqueue's backend.

`python -m tests.tasks_suite.run ready` runs the tests that need no worker (the dummy backend's
role), `... run worker` those whose tasks a worker runs (the immediate backend's role); the caller
starts the worker in between. Every TASKS a test sets is taken as it is written, only the backend
swapped for ours in that role (and QUEUES dropped: ours are `default` and the priorities' queues).
A test that exercises something other than the backend's behaviour, or behaviour ours does not
share by design, is listed in NOT_APPLICABLE with the reason. Exit status 1 if any test fails.
"""

import sys
import unittest

ROLES = {
    "django.tasks.backends.dummy.DummyBackend": "tests.tasks_suite.backends.ReadyBackend",
    "django.tasks.backends.immediate.ImmediateBackend": "tests.tasks_suite.backends.WorkerBackend",
}
# test_custom_backend.py is left out whole: it tests Django's base class with backends of its own.
MODULES = ["test_tasks", "test_dummy_backend", "test_immediate_backend"]

TYPE_CHECKS = "checks the class of the backend (isinstance DummyBackend or ImmediateBackend)"
QUEUE_NAMES = "uses queue names of its own (queue_1, QUEUES=[] for any name); ours are default, high, medium, low"
LOGS = "counts the log lines Django's backend writes in the enqueuing process; ours logs in the worker"
SYNC_IN_ASYNC = "calls the blocking refresh() inside an async test: a backend reading a database cannot there"
DUMMY_MEMORY = "changes the dummy's stored result in memory, then reads it back"
IMMEDIATE_ONLY = "the immediate backend's own limits (no results, no run_after, Ctrl-C in the caller)"
NOT_APPLICABLE: dict[str, str] = {
    "test_tasks.TaskTestCase.test_using_correct_backend": TYPE_CHECKS,
    "test_tasks.TaskTestCase.test_get_backend": TYPE_CHECKS,
    "test_tasks.TaskTestCase.test_using_queue_name": QUEUE_NAMES,
    "test_tasks.TaskTestCase.test_unknown_queue_name": QUEUE_NAMES,
    "test_tasks.TaskTestCase.test_refresh_result": SYNC_IN_ASYNC,
    "test_tasks.TaskTestCase.test_module_path": "expects the test app named `tasks`, our package's name",
    "test_dummy_backend.DummyBackendTestCase.test_using_correct_backend": TYPE_CHECKS,
    "test_dummy_backend.DummyBackendTestCase.test_enqueue_logs": LOGS,
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result": DUMMY_MEMORY,
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result_async": DUMMY_MEMORY,
    "test_dummy_backend.DummyBackendTestCase.test_validate_on_enqueue": QUEUE_NAMES,
    "test_dummy_backend.DummyBackendTestCase.test_validate_on_aenqueue": QUEUE_NAMES,
    "test_dummy_backend.DummyBackendTestCase.test_validate_disallowed_async_task": "switches the dummy's "
    "supports_async_task off by mock.patch of its class",
    "test_dummy_backend.DummyBackendTransactionTestCase.test_doesnt_wait_until_transaction_commit_by_default": (
        "ours publishes after the commit by design (README: enqueue inside a transaction)"
    ),
    "test_immediate_backend.ImmediateBackendTestCase.test_using_correct_backend": TYPE_CHECKS,
    "test_immediate_backend.ImmediateBackendTestCase.test_throws_keyboard_interrupt": IMMEDIATE_ONLY,
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_get_result": IMMEDIATE_ONLY,
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_refresh_result": IMMEDIATE_ONLY,
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_pass_run_after": IMMEDIATE_ONLY,
    "test_immediate_backend.ImmediateBackendTestCase.test_enqueue_logs": LOGS,
    "test_immediate_backend.ImmediateBackendTestCase.test_failed_logs": LOGS,
    "test_immediate_backend.ImmediateBackendTestCase.test_successful_task_no_none_in_logs": LOGS,
    "test_immediate_backend.ImmediateBackendTestCase.test_validate_on_enqueue": QUEUE_NAMES,
    "test_immediate_backend.ImmediateBackendTestCase.test_validate_on_aenqueue": QUEUE_NAMES,
    "test_immediate_backend.ImmediateBackendTransactionTestCase.test_doesnt_wait_until_transaction_commit_by_default": (
        "ours publishes after the commit by design: a task enqueued in a transaction runs after it"
    ),
}
# Tests of test_tasks that enqueue on the immediate backend: they run with the worker.
WORKER_TESTS = {
    "test_tasks.TaskTestCase.test_task_error_invalid_exception",
    "test_tasks.TaskTestCase.test_task_error_unknown_module",
}


def in_our_roles(tasks: dict) -> dict:
    """TASKS as a test writes it, each of Django's test backends swapped for ours in its role."""
    swapped = {}
    for alias, config in tasks.items():
        config = dict(config)
        if config.get("BACKEND") in ROLES:
            config["BACKEND"] = ROLES[config["BACKEND"]]
            config.pop("QUEUES", None)
        swapped[alias] = config
    return swapped


def _swap_backends_in_override_settings() -> None:
    from django.test import utils

    original = utils.override_settings.__init__

    def __init__(self, **kwargs):
        if "TASKS" in kwargs:
            kwargs["TASKS"] = in_our_roles(kwargs["TASKS"])
        original(self, **kwargs)

    utils.override_settings.__init__ = __init__


def _tests(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _tests(item)
        else:
            yield item


def selected(phase: str) -> tuple[unittest.TestSuite, int]:
    """The applicable tests of the phase, and how many tests the modules have in all."""
    import importlib

    chosen, total = unittest.TestSuite(), 0
    for name in MODULES:
        module = importlib.import_module(f"django_task_tests.{name}")
        for test in _tests(unittest.defaultTestLoader.loadTestsFromModule(module)):
            total += 1
            key = test.id().removeprefix("django_task_tests.")
            if isinstance(test, unittest.loader._FailedTest):  # an import error is a failure
                chosen.addTest(test)
                continue
            if key in NOT_APPLICABLE:
                continue
            needs_worker = name == "test_immediate_backend" or key in WORKER_TESTS
            if needs_worker == (phase == "worker"):
                type(test).databases = {"default"}  # ours stores a task as a job
                chosen.addTest(test)
    return chosen, total


def main(phase: str) -> int:
    import django
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    _swap_backends_in_override_settings()
    suite, total = selected(phase)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    print(f"phase {phase}: ran {result.testsRun} of {total} tests; {len(NOT_APPLICABLE)} not applicable in all")
    return 0 if result.wasSuccessful() and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
