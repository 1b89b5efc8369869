"""A name registered at run time does not reach worker processes: the error says so and
what to do (issue 22 item 5)."""

import pytest

from idprops.registry import _ESTIMATORS, get_estimator, register_estimator
from idprops.studies.study import CellError, Study


class LookupStudy(Study):
    """Cells that look an estimator up by name, as every study's cells do."""

    kind = "lookup"

    def __init__(self, names=("mle",)):
        self.names = names

    def cells(self):
        return [self._cell(estimator=name) for name in self.names]

    @staticmethod
    def run_cell(config):
        return {"class": get_estimator(config["estimator"]).__name__}


@pytest.fixture
def registered(monkeypatch):
    from idprops import MLEDimension

    monkeypatch.setattr(_ESTIMATORS, "_runtime", {})
    register_estimator("mle_in_a_notebook", MLEDimension)
    return "mle_in_a_notebook"


def test_a_runtime_name_works_here(registered):
    results = LookupStudy(names=[registered, "twonn"]).run(progress=False)
    assert [r["class"] for r in results] == ["MLEDimension", "TwoNNDimension"]


def test_workers_say_that_runtime_names_do_not_reach_them(registered):
    with pytest.raises(CellError) as caught:
        LookupStudy(names=[registered, "twonn"]).run(n_jobs=2, progress=False)
    message = str(caught.value)
    assert f"unknown estimator {registered!r}" in message and "worker process" in message
    assert "not what register_estimator added" in message
    assert "'idprops.estimators' entry-point group of an installed package" in message
    assert "n_jobs=1" in message
