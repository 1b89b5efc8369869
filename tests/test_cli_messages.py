"""Command-line errors that say what to do in the command line's terms (issue 22 item 5)."""

import pytest

from idprops.cli import main
from idprops.studies.study import available_presets, parse_overrides

SMALL_CNN_LAYERS = (
    "features, features.conv1, features.relu1, features.conv2, features.relu2, "
    "features.pool, flatten, fc1, relu, dropout, fc2"
)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_model_without_a_layer_lists_its_layers(capsys):
    code, _, err = run(capsys, "measure", "--model", "small_cnn")
    assert code == 2 and err.count("\n") == 1
    assert err.strip().endswith(f"--model small_cnn needs at least one --layer NAME; its layers: {SMALL_CNN_LAYERS}")


def test_an_unknown_layer_lists_the_layers_not_python(capsys):
    code, _, err = run(capsys, "measure", "--classes", "0,1", "--n", "40", "--model", "small_cnn", "--layer", "fc9")
    assert code == 2 and err.count("\n") == 1
    assert "no layer named 'fc9'; close names: 'fc2', 'fc1'; its layers: 'features', " in err
    assert "'dropout', 'fc2'" in err and "named_modules" not in err


def test_a_large_model_lists_its_first_layers_and_counts_them():
    from idprops.activations import resolve_layer
    from idprops.nn import build_model

    with pytest.raises(ValueError, match=r"its layers: 'conv1', 'bn1', .*\.\.\. \(\d+ in all\)$") as caught:
        resolve_layer(build_model("resnet50"), "nope")
    assert "named_modules" not in str(caught.value)


def test_a_toml_syntax_error_in_set_says_so():
    for item, problem in [("sizes=[50,100", "Unclosed array"), ("training={epochs=1", "Unclosed inline table")]:
        with pytest.raises(ValueError, match=f"TOML syntax error in .*{problem}"):
            parse_overrides([item])
    assert parse_overrides(["data=digits", "device=cpu"]) == {"data": "digits", "device": "cpu"}


def test_set_with_a_syntax_error_from_the_command_line(capsys):
    code, _, err = run(capsys, "study", "scaling-law", "--preset", "digits", "--set", "sizes=[50,100")
    assert code == 2 and "TOML syntax error" in err and "not an integer" not in err


def test_study_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "scaling-law: digits, paper" in out
    assert all(name in out for name in available_presets())
    with pytest.raises(SystemExit):
        main(["study", "robustness", "--help"])
    assert "digits-robustness" in " ".join(capsys.readouterr().out.split())
