"""Sphinx configuration: numpydoc API reference and a sphinx-gallery of examples.

Build: ``.venv/bin/python -m sphinx -W -b html docs docs/_build/html``.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The gallery's networks are tiny: one thread runs them fastest, and keeps the build's
# time from exploding when other processes share the cores (set before numpy and
# torch are imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import idprops

project = "idprops"
author = "the idprops developers"
copyright = "2026, the idprops developers"
version = release = idprops.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# fit's keyword-only neighbors= makes scikit-learn add set_fit_request (metadata
# routing), whose generated docstring links to scikit-learn's own glossary.
autodoc_default_options = {
    "members": True,
    "inherited-members": False,
    "exclude-members": "set_fit_request,set_score_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
templates_path = ["_templates"]
html_theme = "alabaster"
html_static_path = []
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "reset_modules": ("matplotlib",),
    "remove_config_comments": True,
    # "Examples using X" on every API page: the names the examples use.
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("idprops",),
    "min_reported_time": 1,
}


def _write_cli_help() -> None:
    """The command's ``--help`` texts, included by api.rst, so they never go stale."""
    import contextlib
    import io
    from pathlib import Path

    from idprops.cli import build_parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal; make it fixed
    out = Path(__file__).parent / "gen_modules"
    out.mkdir(exist_ok=True)
    pages = {"measure": [["measure"]], "study": [["study"], ["study", "scaling-law"]]}
    for name, commands in pages.items():
        text = []
        for argv in commands:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
                build_parser().parse_args([*argv, "--help"])
            text.append(f"$ idprops {' '.join(argv)} --help\n{buf.getvalue()}")
        path = out / f"cli_{name}.txt"
        content = "\n".join(text)
        if not path.is_file() or path.read_text() != content:
            path.write_text(content)


_write_cli_help()
