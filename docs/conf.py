"""Sphinx configuration of the documentation site: `make docs` builds it into docs/_build/html."""

import sys
from pathlib import Path

HERE = Path(__file__).parent
# Every module in docs/_ext/ is an extension of this site, loaded by name.
sys.path.insert(0, str(HERE / "_ext"))

project = "jobqueue"
copyright = "jobqueue authors"
extensions = [
    "myst_parser",
    "sphinx_copybutton",
    *sorted(path.stem for path in (HERE / "_ext").glob("*.py") if not path.name.startswith("_")),
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "examples", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = "jobqueue"
# The prompt and output lines of shell examples are not copied.
copybutton_exclude = ".linenos, .gp, .go"
