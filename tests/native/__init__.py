"""C extensions the tests build themselves with gcc against this Python's headers."""

import atexit
import functools
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from tests import servers

HERE = Path(__file__).parent


@functools.cache
def hold_gil_dir() -> str:
    """A directory holding the built `hold_gil` module (once per test session): put it on the
    PYTHONPATH of the processes that import it. Skips locally, fails under CI, without gcc."""
    gcc = servers.require_binary("gcc", "gcc")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        servers.unavailable(f"Python.h is not in {include} (this Python was installed without its headers)")
    built = Path(tempfile.mkdtemp(prefix="jq-native-"))
    atexit.register(shutil.rmtree, built, ignore_errors=True)
    target = built / f"hold_gil{sysconfig.get_config_var('EXT_SUFFIX')}"
    command = [gcc, "-shared", "-fPIC", "-O2", f"-I{include}", str(HERE / "hold_gil.c"), "-o", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"building hold_gil failed:\n{result.stderr}"
    return str(built)
