"""No dead weight in the settings: each of the project's own settings is read by its code."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
OWN = re.compile(r"^(JOB|API|HEALTHZ|METRICS|FLOWER|GRAFANA|LOG|DEV_ENV)_[A-Z_]+$")


def app_code() -> str:
    files = [*ROOT.glob("jobs/**/*"), *ROOT.glob("tasks/**/*"), *ROOT.glob("jobqueue_site/**/*")]
    files += [ROOT / "gunicorn.conf.py"]
    return "\n".join(
        path.read_text()
        for path in files
        if path.suffix in {".py", ".html"} and path.name != "settings.py" and "migrations" not in path.parts
    )


def test_every_setting_of_the_project_is_read_by_its_code():
    names = [name for name in dir(settings) if OWN.match(name)]
    code = app_code()
    assert len(names) > 50
    assert [name for name in names if not re.search(rf"\b{name}\b", code)] == []
