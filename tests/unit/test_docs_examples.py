"""The documentation's example checker (tests/docs_examples.py) fails on each of the four breaks
readers of the old README met, and passes on their fixed forms."""

import pytest

from tests.docs_examples import failures

FENCE = "```"


def check(tmp_path, text: str) -> list[str]:
    path = tmp_path / "page.md"
    path.write_text(text.replace("~~~", FENCE))
    return failures(path)


def test_a_bare_python_fails_and_the_venvs_python_passes(tmp_path):
    broken = "<!-- sketch -->\n~~~bash\npython manage.py jobs list --status dead\n~~~\n"
    assert any("bare `python`" in failure for failure in check(tmp_path, broken))
    fixed = broken.replace("python manage.py", ".venv/bin/python manage.py")
    assert check(tmp_path, fixed) == []
    # Inside a container there is no venv: the image's python is meant.
    assert check(tmp_path, broken.replace("python manage.py", "docker compose exec web python manage.py")) == []


SKETCH = """<!-- sketch -->
~~~python
from tasks import job_type


@job_type("{name}", max_retries=2, timeout=300)
def report(payload, ctx): ...
~~~
"""


def test_a_sketch_registering_the_builtin_report_fails_and_one_of_its_own_passes(tmp_path):
    found = check(tmp_path, SKETCH.format(name="report"))
    assert len(found) == 1 and "job_type('report') registers a name the project already has" in found[0]
    assert check(tmp_path, SKETCH.format(name="shop.daily_sales")) == []


LIMITS = """<!-- sketch -->
~~~python
from tasks import job_type


@job_type("crm_sync", rate="60/minute", limit_key="customer_id")
def crm_sync(payload, ctx): ...
~~~

<!-- sketch -->
~~~bash
.venv/bin/python manage.py jobs limits set {name} --rate 100/minute --key {key}
~~~
"""


def test_limits_set_on_a_type_that_exists_only_in_a_sketch_fails(tmp_path):
    found = check(tmp_path, LIMITS.format(name="crm_sync", key="customer_id"))
    assert len(found) == 1 and "names the job type 'crm_sync', which `make run` does not have" in found[0]
    assert check(tmp_path, LIMITS.format(name="email_welcome", key="email")) == []


DJANGO_PROJECT = """<!-- sketch -->
~~~python
# billing/tasks.py
from django_tasks import task


@task(priority=10)
def invoice_total(invoice_id: int, lines: list[dict]) -> dict:
    return {"id": invoice_id, "total": sum(line["price"] for line in lines)}
~~~
"""
LOADED = """
<!-- sketch -->
~~~bash
JOB_HANDLER_MODULES=billing.tasks make run
~~~
"""


def test_a_pages_own_type_needs_its_module_loaded_where_a_command_names_it(tmp_path):
    page = SKETCH.format(name="shop.daily_sales").replace("~~~python\n", "~~~python\n# shop/jobs.py\n")
    page += "\n<!-- sketch -->\n~~~bash\nJOB_HANDLER_MODULES=shop.jobs make run\n{submit}\n~~~\n"
    submit = ".venv/bin/python manage.py jobs submit shop.daily_sales"
    found = check(tmp_path, page.format(submit=submit))
    assert len(found) == 1 and "knows 'shop.daily_sales' only with JOB_HANDLER_MODULES set" in found[0]
    assert check(tmp_path, page.format(submit=f"JOB_HANDLER_MODULES=shop.jobs {submit}")) == []
    assert check(tmp_path, page.replace("JOB_HANDLER_MODULES=shop.jobs make run", "make run").format(submit="")) != []


def test_a_task_module_whose_page_does_not_load_it_for_make_run_fails(tmp_path):
    found = check(tmp_path, DJANGO_PROJECT)
    assert len(found) == 1 and "never shows `JOB_HANDLER_MODULES=billing.tasks make run`" in found[0]
    # Setting it for something else than `make run` is not enough either.
    assert check(tmp_path, DJANGO_PROJECT + LOADED.replace(" make run", "")) != []
    assert check(tmp_path, DJANGO_PROJECT + LOADED) == []


@pytest.mark.parametrize(
    "block, expected",
    [
        ("~~~bash\nmake run\n~~~\n", "unmarked code block"),
        ("<!-- sketch -->\n~~~bash\ncurl -s http://127.0.0.1:8000/job-status/<id>\n~~~\n", "syntax error"),
        ("<!-- sketch -->\n~~~python\nfrom tasks import no_such_name\n~~~\n", "no_such_name"),
        ("<!-- run-by: tests/e2e/test_nothing_here.py -->\n~~~bash\nmake run\n~~~\n", "does not exist"),
        ("<!-- run-by: tests/e2e/test_dev_stack.py -->\n~~~bash\nmake bench\n~~~\n", "neither reads"),
        ("<!-- run -->\n~~~python\nassert 1 + 1 == 3\n~~~\n", "AssertionError"),
    ],
)
def test_other_blocks_that_would_mislead_a_reader_fail(tmp_path, block, expected):
    found = check(tmp_path, block)
    assert len(found) == 1 and expected in found[0], found


def test_output_blocks_need_no_marker_and_run_blocks_run(tmp_path):
    text = "~~~text\nREADY\n~~~\n\n<!-- run -->\n~~~python\nfrom tasks import job_type\n\nassert job_type\n~~~\n"
    assert check(tmp_path, text) == []
