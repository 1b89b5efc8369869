"""scikit-learn's private helpers come through idprops._sklearn_compat only, within a
declared range of scikit-learn versions; the version of idprops is written once."""

import ast
import configparser
import importlib.metadata
import re
from pathlib import Path

import sklearn
from packaging.requirements import Requirement
from packaging.version import Version

import idprops

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "idprops" / "_sklearn_compat.py"


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _sklearn_requirement() -> Requirement:
    lines = _setup_cfg()["options"]["install_requires"].strip().splitlines()
    return next(req for req in map(Requirement, lines) if req.name == "scikit-learn")


def test_the_installed_scikit_learn_is_within_the_declared_range():
    declared = _sklearn_requirement().specifier
    assert any(spec.operator in ("<", "<=") for spec in declared), (
        "scikit-learn needs an upper bound in setup.cfg: idprops uses its private helpers"
    )
    assert Version(sklearn.__version__) in declared, (
        f"scikit-learn {sklearn.__version__} is outside setup.cfg's {declared}; check "
        "idprops/_sklearn_compat.py against it, run the tests and move the bound"
    )


def _private_sklearn_imports(path: Path) -> list[str]:
    """``module:name`` of every private scikit-learn name the file imports."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "sklearn":
                continue
            private_module = any(part.startswith("_") for part in parts)
            for alias in node.names:
                if private_module or alias.name.startswith("_"):
                    found.append(f"{where}:{node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sklearn" and any(part.startswith("_") for part in parts):
                    found.append(f"{where}:{node.lineno}: {alias.name}")
    return found


def test_only_the_compat_module_imports_private_scikit_learn_names():
    files = [p for folder in ("idprops", "tests", "examples", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    offenders = [hit for path in files if path != COMPAT for hit in _private_sklearn_imports(path)]
    assert not offenders, f"import these from idprops._sklearn_compat instead: {offenders}"
    assert _private_sklearn_imports(COMPAT), "the compat module should hold the private imports"


def test_the_ast_check_sees_private_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sklearn.utils._testing\n"
        "from sklearn.utils import _safe_indexing\n"
        "from sklearn.utils._param_validation import Interval\n"
        "from sklearn.utils.validation import validate_data\n"
    )
    assert len(_private_sklearn_imports(sample)) == 3


def test_the_version_is_written_once():
    # setup.cfg and the docs read idprops.__version__; the installed metadata agrees.
    assert _setup_cfg()["metadata"]["version"] == "attr: idprops.__version__"
    assert "version = release = idprops.__version__" in (ROOT / "docs" / "conf.py").read_text()
    assert importlib.metadata.version("idprops") == idprops.__version__
    literal = re.compile(r"""["']""" + re.escape(idprops.__version__) + r"""["']""")
    sources = [p for folder in ("idprops", "docs", "tests") for p in (ROOT / folder).rglob("*.py")]
    written = [str(p.relative_to(ROOT)) for p in sources if literal.search(p.read_text(encoding="utf-8"))]
    assert written == ["idprops/__init__.py"], f"the version is also written in {written}"
    # The changelog has a section for it (or an Unreleased one above it).
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(idprops.__version__)}\b", changelog, re.MULTILINE)
