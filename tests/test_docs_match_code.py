"""What the docs say matches what the code does: registry docstrings, citations,
and the preset's stated run time."""

import inspect
import re
import subprocess
from pathlib import Path

import pytest

from idprops import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "function",
    [
        registry.get_estimator,
        registry.get_model,
        registry.get_dataset,
        registry.register_estimator,
        registry.register_model,
        registry.register_dataset,
        registry.get_attack,
        registry.register_attack,
        registry.get_study,
        registry.register_study,
    ],
    ids=lambda f: f.__name__,
)
def test_registry_functions_document_their_parameters(function):
    doc = inspect.getdoc(function)
    section = re.search(r"^Parameters\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    assert section, f"{function.__name__} has no Parameters section"
    documented = set(re.findall(r"^(\w+) :", section.group(1), re.MULTILINE))
    assert documented == set(inspect.signature(function).parameters), documented


def test_the_register_estimator_example_gets_the_k_it_names():
    # The docstring's examples run as doctests; this is the claim they illustrate:
    # a name refers to the class with its own defaults (the old "mle_k10" example got
    # k = 20), and parameters go with the name.
    from idprops import MLEDimension

    registry.register_estimator("my_mle", MLEDimension, replace=True)
    assert registry.resolve_estimator("my_mle:k=10").k == 10
    assert registry.resolve_estimator("my_mle").k == 20
    assert 'mle_k10", MLEDimension' not in inspect.getdoc(registry.register_estimator)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".rst", ".md", ".toml", ".cfg", ".txt"}
    return [ROOT / name for name in listed.splitlines() if Path(name).suffix in suffixes and (ROOT / name).exists()]


def test_no_file_cites_a_document_the_repository_does_not_hold():
    # SEEDS.md was a working note outside the repository; cite the papers instead.
    # (The changelog and this test name it to say that it is gone.)
    shipped = [p for p in _tracked_text_files() if p.relative_to(ROOT).parts[0] not in ("tests", "CHANGELOG.md")]
    citing = [str(p.relative_to(ROOT)) for p in shipped if "SEEDS.md" in p.read_text(encoding="utf-8")]
    assert not citing, f"these files cite SEEDS.md, which is not in the repository: {citing}"


def test_no_doubled_article_in_examples_and_docs():
    doubled = re.compile(r"\b(the|a|an) (the|a|an)\b", re.IGNORECASE)
    folders = ("examples", "docs", "idprops")
    hits = [
        f"{p.relative_to(ROOT)}: {m.group(0)!r}"
        for p in _tracked_text_files()
        if p.relative_to(ROOT).parts[0] in folders
        # a comment's line break may fall between the two words
        for m in doubled.finditer(re.sub(r"\n#\s*", " ", p.read_text(encoding="utf-8")))
    ]
    assert not hits, hits


def test_the_digits_preset_and_the_readme_give_one_run_time():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    preset = (ROOT / "idprops" / "studies" / "presets" / "digits.toml").read_text(encoding="utf-8")
    assert "under a minute on 2 CPU cores" in readme
    assert "under a minute on 2 idle CPU cores" in preset and "a few minutes" not in preset
