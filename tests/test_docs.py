"""The documentation: the Sphinx build with warnings as errors (it runs every gallery
example), an API page for every public name, and an Examples section in every public
docstring (the examples themselves run as doctests: setup.cfg's --doctest-modules)."""

import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import idprops

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"


def public_modules() -> list[str]:
    """idprops and every submodule whose dotted name has no part starting with "_"."""
    names = ["idprops"]
    for info in pkgutil.walk_packages(idprops.__path__, "idprops."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def public_names() -> list[tuple[str, object]]:
    """("module.name", object) for every name in the __all__ of every public module."""
    out = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            out.append((f"{module_name}.{name}", getattr(module, name)))
    return out


def documented_in_api() -> dict[int, str]:
    """id(object) -> name, for every autosummary entry of docs/api.rst."""
    documented = {}
    module = None
    in_autosummary = False
    for line in (DOCS / "api.rst").read_text(encoding="utf-8").splitlines():
        if line.startswith(".. currentmodule::"):
            module = importlib.import_module(line.split("::")[1].strip())
            in_autosummary = False
        elif line.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and line.startswith("   ") and not line.strip().startswith(":"):
            name = line.strip()
            obj = getattr(module, name)  # an AttributeError here is a stale entry
            documented[id(obj)] = f"{module.__name__}.{name}"
        elif line and not line.startswith(" "):
            in_autosummary = False
    return documented


def test_every_public_name_has_an_api_page():
    documented = documented_in_api()
    missing = [name for name, obj in public_names() if id(obj) not in documented]
    assert not missing, (
        f"public names without a page in docs/api.rst: {missing}; add each to the autosummary list of its module there"
    )


def test_every_public_class_and_function_has_an_examples_section():
    missing = sorted(
        {
            name
            for name, obj in public_names()
            if (inspect.isclass(obj) or inspect.isfunction(obj))
            and not re.search(r"^Examples\n--------$", inspect.getdoc(obj) or "", re.MULTILINE)
        }
    )
    assert not missing, f"public classes and functions whose docstring has no Examples section: {missing}"


@pytest.mark.docs
def test_docs_build_with_warnings_as_errors(tmp_path):
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "matplotlib"):
        pytest.importorskip(module)
    # Build a copy: autosummary and sphinx-gallery write generated pages into the source
    # folder, and a developer's build there must not collide with the test's.
    generated = shutil.ignore_patterns("_build", "auto_examples", "gen_modules", "sg_execution_times.rst")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=generated)
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    html = tmp_path / "html"
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # A subprocess: the examples register plugins, import torch and draw figures, which
    # must not leak into the other tests.
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(html)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # a hung example fails the test instead of the whole suite
    )
    assert build.returncode == 0, f"{build.stdout[-6000:]}\n{build.stderr[-6000:]}"

    examples = sorted(path.stem for path in EXAMPLES.glob("plot_*.py"))
    assert len(examples) >= 6
    gallery = (html / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for name in examples:
        page = html / "auto_examples" / f"{name}.html"
        assert page.is_file(), f"no gallery page for {name}"
        assert f"{name}.html" in gallery
        text = page.read_text(encoding="utf-8")
        figures = sorted((html / "_images").glob(f"sphx_glr_{name}_0*.png"))
        assert figures, f"{name} rendered no figure"
        for figure in figures:
            assert figure.stat().st_size > 5_000  # a drawn figure, not an empty canvas
            assert figure.name in text

    for name in documented_in_api().values():
        assert (html / "gen_modules" / f"{name}.html").is_file(), f"no API page for {name}"
    for page in ("index", "install", "api", "guide/index", "guide/studies", "guide/concepts"):
        assert (html / f"{page}.html").is_file()
