"""What setup.cfg declares: the dependencies each supported Python needs."""

import configparser
from pathlib import Path

from packaging.requirements import Requirement

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _install_requires() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config["options"]["install_requires"].strip().splitlines()
    return {req.name: req for req in map(Requirement, lines)}


def test_tomli_is_required_where_tomllib_is_missing():
    # Study files are TOML; Python 3.10 (python_requires >= 3.10) has no tomllib.
    tomli = _install_requires()["tomli"]
    assert tomli.marker.evaluate({"python_version": "3.10"})
    assert not tomli.marker.evaluate({"python_version": "3.11"})
