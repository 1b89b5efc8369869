"""The code is linted and formatted as pyproject.toml's ruff configuration says."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (it is in the test extra)")
    return [exe]


@pytest.mark.parametrize("args", [["check", "--no-fix"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(args):
    result = subprocess.run(_ruff() + args + ["."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
