"""Steps written as text: NAME:KEY=VALUE,... in the CLI and in study files."""

import json

import pytest

from idprops import MLEDimension
from idprops.cli import main
from idprops.data import load_digits
from idprops.parsing import check_parameters, parse_spec
from idprops.registry import resolve_estimator
from idprops.studies.scaling import ScalingLawStudy
from idprops.studies.specs import parse_estimators, parse_steps


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mle", ("mle", {})),
        ("mle:k=10", ("mle", {"k": 10})),
        (" mle : k = 10 , unbiased = false ", ("mle", {"k": 10, "unbiased": False})),
        ("mle:aggregation=mean", ("mle", {"aggregation": "mean"})),
        ('mle:aggregation="mean"', ("mle", {"aggregation": "mean"})),
        ("twonn:discard_fraction=0.25", ("twonn", {"discard_fraction": 0.25})),
        ("x:a=[1, 2],b={c = 3},d='e,f'", ("x", {"a": [1, 2], "b": {"c": 3}, "d": "e,f"})),
        ("pgd:eps=1e-3", ("pgd", {"eps": 0.001})),
    ],
)
def test_values_are_toml_literals_and_bare_words_strings(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "names nothing"),
        (":k=1", "names nothing"),
        ("mle:k", "'k' is not KEY=VALUE"),
        ("mle:k=", "'k=' is not KEY=VALUE"),
        ("mle:k=1,k=2", "k is given twice"),
    ],
)
def test_malformed_text_says_what_to_write(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_unknown_parameters_name_the_estimator_and_its_parameters():
    with pytest.raises(ValueError) as info:
        resolve_estimator("twonn:k=10")
    assert str(info.value) == (
        "twonn (TwoNNDimension) has no parameter 'k'; its parameters: "
        "backend, discard_fraction, method, n_queries, random_state"
    )
    with pytest.raises(ValueError, match="MLEDimension has no parameters 'a', 'b'"):
        resolve_estimator(MLEDimension, a=1, b=2)
    with pytest.raises(ValueError, match="MLEDimension has no parameter 'x'"):
        resolve_estimator(MLEDimension(), x=1)
    # A factory that takes **kwargs is left to say for itself.
    check_parameters("f", lambda **kwargs: None, {"anything": 1})
    # Keyword parameters win over those in the text.
    assert resolve_estimator("mle:k=10", k=12).k == 12


def test_cli_sets_estimator_parameters(capsys):
    code = main(["measure", "--json", "--no-sharpness", "--estimator", "mle:k=10", "--estimator", "twonn:method=mle"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)["dimensions"]
    assert [(row["estimator"], row["params"]["k" if row["estimator"] == "mle" else "method"]) for row in rows] == [
        ("mle", 10),
        ("twonn", "mle"),
    ]
    assert rows[0]["dimension"] == MLEDimension(k=10).fit(load_digits(train=None)).dimension_


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mle:kk=10", "--estimator mle:kk=10: mle (MLEDimension) has no parameter 'kk'; its parameters: aggregation"),
        ("mle:k=1", "--estimator mle:k=1: The 'k' parameter of MLEDimension must be an int in the range [2, inf)"),
    ],
)
def test_cli_refuses_unknown_or_bad_parameters_before_reading_data(capsys, spec, message):
    assert main(["measure", "--estimator", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_study_files_take_the_same_form(tmp_path):
    # The text form and the table form describe the same cell.
    assert parse_steps(["mle:k=10"], "estimators") == parse_steps({"mle:k=10": {"name": "mle", "k": 10}}, "estimators")
    study_file = tmp_path / "study.toml"
    study_file.write_text(
        'datasets = [{name = "digits", classes = [0, 1]}]\nsizes = [40]\n'
        'estimators = ["mle:k=10", "twonn"]\nsharpness = false\n'
        'attacks = {}\ndevice = "cpu"\n[training]\nepochs = 1\n'
    )
    study = ScalingLawStudy.from_toml(study_file, {"store": str(tmp_path / "r.sqlite")})
    (cell,) = study.cells()
    assert cell["estimators"] == {
        "mle:k=10": {"name": "mle", "params": {"k": 10}},
        "twonn": {"name": "twonn", "params": {}},
    }
    with pytest.raises(ValueError, match="estimators.mle:kk=1: mle \\(MLEDimension\\) has no parameter 'kk'"):
        parse_estimators(["mle:kk=1"])
