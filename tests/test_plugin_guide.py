"""The plugins guide followed as written: its files, installed with pip, used from the
parent folder of the project (issue 22 item 5: a project folder named like the module
shadowed it there)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "plugins.rst"


def literal_block(lines: list[str], start: int) -> str:
    """The indented literal block that follows the line ``start`` (which ends with ::)."""
    block = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n") + "\n"


def guide_blocks() -> dict[str, str]:
    """The guide's literal blocks by what introduces them: the layout, each file, the session."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    blocks = {}
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        first = i
        while first > 0 and lines[first - 1].strip():
            first -= 1
        paragraph = " ".join(lines[first : i + 1])
        block = literal_block(lines, i)
        file = re.match(r"``([\w.]+)``", paragraph)
        install = re.search(r"pip install -e ([\w.-]+)", paragraph)
        if file and file.group(1).endswith((".py", ".cfg", ".toml")):
            blocks[file.group(1)] = block
        elif install:
            blocks["session"], blocks["install"] = block, install.group(1).rstrip(".")
        elif block.splitlines()[0].endswith("/"):
            blocks["layout"] = block
    return blocks


def test_the_guide_lays_out_one_project():
    blocks = guide_blocks()
    folder = blocks["layout"].splitlines()[0].rstrip("/")
    listed = {line.strip() for line in blocks["layout"].splitlines()[1:]}
    assert listed == {"setup.cfg", "pyproject.toml", "mydim.py"} <= set(blocks)
    assert blocks["install"] == folder


@pytest.mark.skipif(sys.platform == "win32", reason="site-packages layout of a POSIX prefix")
def test_the_plugin_installs_and_loads_from_the_parent_folder(tmp_path):
    blocks = guide_blocks()
    project = tmp_path / blocks["layout"].splitlines()[0].rstrip("/")
    project.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "mydim.py"):
        (project / name).write_text(blocks[name], encoding="utf-8")
    prefix = tmp_path / "prefix"
    # No network: idprops and setuptools are those of this environment.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--prefix", str(prefix), "-e", blocks["install"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    session = [line[4:] for line in blocks["session"].splitlines() if line.startswith((">>> ", "... "))]
    expected = [line for line in blocks["session"].splitlines() if line and not line.startswith((">>>", "..."))]
    # The prefix's site folder as if pip had installed into this environment (its .pth
    # file points at the project); the session runs from the project's parent folder.
    code = "\n".join(
        [
            f"import site; site.addsitedir({str(site)!r})",
            *(f"print(repr({s}))" if s.startswith("idprops.get") else s for s in session),
        ]
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected
