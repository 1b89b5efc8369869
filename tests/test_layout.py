"""The package's import structure: no private names across modules, arrows pointing down."""

import ast
from pathlib import Path

import pytest

import idprops

PACKAGE = Path(idprops.__file__).parent


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, path.name == "__init__.py"


def _imports(name, path, is_package):
    """(imported module, imported names, line) of every ``from ... import`` of idprops."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module == "idprops" or module.startswith("idprops."):
            yield module, [alias.name for alias in node.names], node.lineno


def _is_private(name):
    return name.startswith("_") and not name.startswith("__")


def private_imports():
    """Every ``from X import _name`` where X is another idprops module (or a private
    name taken from a package's ``__init__``)."""
    found = []
    for name, path, is_package in _modules():
        for module, names, line in _imports(name, path, is_package):
            # A private module (idprops._threads) is one module's helper shared on
            # purpose: its public names are fine, its private ones are not.
            for imported in names:
                if _is_private(imported) and module != name:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: from {module} import {imported}")
    return found


def test_the_walk_finds_a_private_import(tmp_path, monkeypatch):
    # The checker itself: a relative and an absolute private import are both caught.
    fake = tmp_path / "idprops"
    (fake / "sub").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "sub" / "__init__.py").write_text("")
    (fake / "helpers.py").write_text("def _helper(): pass\n")
    (fake / "sub" / "a.py").write_text("from ..helpers import _helper\n")
    (fake / "sub" / "b.py").write_text("from idprops.helpers import _helper\nfrom . import a\n")
    (fake / "sub" / "c.py").write_text("def _own(): pass\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert [f.split(": ", 1)[1] for f in private_imports()] == [
        "from idprops.helpers import _helper",
        "from idprops.helpers import _helper",
    ]


def test_no_module_imports_a_private_name_from_another():
    assert private_imports() == []


def _top_level_arrows():
    """(importing module, imported module) for every idprops import, at any depth."""
    for name, path, is_package in _modules():
        for module, _, line in _imports(name, path, is_package):
            yield name, module, line


@pytest.mark.parametrize(
    "below, above",
    [
        ("idprops.nn", "idprops.analysis"),
        ("idprops.nn", "idprops.studies"),
        ("idprops.nn", "idprops.plotting"),
        ("idprops.estimators", "idprops.nn"),
        ("idprops.estimators", "idprops.studies"),
        ("idprops.data", "idprops.studies"),
        ("idprops.analysis", "idprops.studies"),
        ("idprops.plotting", "idprops.studies"),
        ("idprops.registry", "idprops.studies"),
    ],
)
def test_imports_point_down(below, above):
    wrong = [
        f"{name}:{line} imports {module}"
        for name, module, line in _top_level_arrows()
        if (name == below or name.startswith(below + ".")) and (module == above or module.startswith(above + "."))
    ]
    assert wrong == []


def test_nothing_below_imports_the_cli():
    assert [n for n, m, _ in _top_level_arrows() if m == "idprops.cli" and n != "idprops.cli"] == []
