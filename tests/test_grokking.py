"""GrokkingStudy: the grokking mark, and a tiny run's fields, invariants and resume."""

import csv
import math

import pytest

from idprops.studies.grokking import GrokkingStudy, _llid_val_spearman, grokking_cell, mark_grokking

TINY = dict(
    p=7,
    train_fraction=0.5,
    eval_every=3,
    device="cpu",
    models={"width": 16, "depth": 1, "heads": 2, "mlp_width": 32},
    training={"max_steps": 6, "threads": 1},
    tracking={"n_samples": 30},
)


def _timeless(curves):
    return [{k: v for k, v in c.items() if k != "seconds"} for c in curves]


def test_mark_grokking_hand_cases():
    steps = [0, 100, 200, 300, 400]
    late = mark_grokking(steps, [0.0, 0.95, 1.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.5, 0.93])
    assert late == {"train_step": 100, "grok_step": 400, "delay": 300, "grokked": True}
    # Validation follows training at once: learning, not grokking.
    together = mark_grokking(steps, [0.0, 0.95, 1.0, 1.0, 1.0], [0.0, 0.5, 0.92, 0.95, 0.97])
    assert together == {"train_step": 100, "grok_step": 200, "delay": 100, "grokked": True}
    assert (
        mark_grokking(steps, [0.0, 0.95, 1.0, 1.0, 1.0], [0.0, 0.5, 0.92, 0.95, 0.97], min_ratio=3)["grokked"] is False
    )
    never = mark_grokking(steps, [0.0, 0.95, 1.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.3, 0.4])
    assert never == {"train_step": 100, "grok_step": None, "delay": None, "grokked": False}
    assert mark_grokking([0, 10], [0.0, 0.5], [0.0, 0.1])["train_step"] is None


def test_llid_val_spearman_after_memorization():
    steps, llid = [0, 10, 20, 30, 40], [5.0, 16.0, 14.0, 12.0, 10.0]
    val = [0.0, 0.1, 0.4, 0.8, 0.95]
    assert _llid_val_spearman(steps, llid, val, 10) == pytest.approx(-1.0)  # step 0 left out
    assert _llid_val_spearman(steps, llid, val, 0) == pytest.approx(0.0)  # ranks 1,5,4,3,2 vs 1..5
    assert _llid_val_spearman(steps, llid, val, None) is None
    assert _llid_val_spearman(steps, llid, val, 30) is None  # two evaluations only


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    store = tmp_path_factory.mktemp("grok") / "store.sqlite"
    return GrokkingStudy(**TINY).run(store, progress=False)


def test_tiny_run_fields_and_invariants(tiny):
    assert tiny.n_run == 1
    r = tiny[0]
    assert r["n_train"] + r["n_val"] == 7 * 6 and r["n_train"] == 21
    assert r["steps"] == 6
    curves = r["curves"]
    assert [c["step"] for c in curves] == [0, 3, 6]
    for c in curves:
        # Accuracies are exact counts over the splits.
        assert math.isclose(c["train_accuracy"] * 21, round(c["train_accuracy"] * 21), abs_tol=1e-9)
        assert math.isclose(c["val_accuracy"] * 21, round(c["val_accuracy"] * 21), abs_tol=1e-9)
        assert list(c["ids"]) == ["blocks.0.attn", "blocks.0.mlp"]
        assert c["llid"] == c["ids"]["blocks.0.mlp"]
        assert c["pid"] == max(c["ids"].values()) >= c["llid"]
        assert c["log_pid_llid"] == pytest.approx(math.log(c["pid"] / c["llid"]))
    assert r["final_val_accuracy"] == curves[-1]["val_accuracy"]
    assert r["llid_final"] == curves[-1]["llid"]
    start = r["train_step"] or 0
    assert r["llid_min"] == min(c["llid"] for c in curves if c["step"] >= start)
    for key in ("train_step", "grok_step", "delay", "grokked", "llid_val_spearman", "id_seconds", "id_share"):
        assert key in r
    assert r["training.optimizer"] == "adamw" and r["training.weight_decay"] == 1.0


def test_cell_is_deterministic(tiny):
    config = GrokkingStudy(**TINY).cells()[0]
    again = grokking_cell(config)
    assert _timeless(again["curves"]) == _timeless(tiny[0]["curves"])


def test_a_cell_leaves_every_gpus_random_stream_alone(monkeypatch):
    import torch

    # With n_jobs=1 a cell runs in the caller's process; torch.manual_seed reseeded
    # every GPU's stream there (a CPU machine calls manual_seed_all all the same).
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", calls.append)
    grokking_cell(GrokkingStudy(**TINY).cells()[0])
    assert calls == []


def test_resume_runs_no_cell_and_report(tiny, tmp_path):
    study = GrokkingStudy(**TINY)
    resumed = study.run(tiny.store_path, progress=False)
    assert resumed.n_run == 0
    assert resumed[0]["key"] == tiny[0]["key"]
    assert resumed[0]["created"] == tiny[0]["created"]
    path = study.report(resumed, tmp_path)
    with (tmp_path / "results.csv").open(newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + len(resumed)
    assert (tmp_path / "grokking.png").is_file() and (tmp_path / "id_curves.png").is_file()
    assert "Grokking study" in path.read_text()


def test_grid_and_bad_settings():
    cells = GrokkingStudy(weight_decays=[0.0, 1.0], seeds=[0, 1, 2]).cells()
    assert [(c["training"]["weight_decay"], c["seed"]) for c in cells][:4] == [(0.0, 0), (0.0, 1), (0.0, 2), (1.0, 0)]
    assert len({c["split_seed"] for c in cells}) == 1
    paper = GrokkingStudy(training={"preset": "brown2022_grokking", "max_steps": 10}).cells()[0]["training"]
    assert (paper["optimizer"], paper["warmup_steps"], paper["batch_size"]) == ("adam", 10_000, 512)
    with pytest.raises(ValueError, match="eval_every"):
        GrokkingStudy(training={"steps_per_epoch": 5}).cells()
    with pytest.raises(ValueError, match="weight_decays"):
        GrokkingStudy(training={"weight_decay": 5}).cells()
    with pytest.raises(ValueError, match="unknown setting"):
        GrokkingStudy(training={"learning_rate": 5}).cells()
    with pytest.raises(ValueError, match="train_fraction"):
        GrokkingStudy(train_fraction=1.5).cells()
    with pytest.raises(ValueError, match="trains the 'transformer' model, not 'small_cnn'"):
        GrokkingStudy(models="small_cnn").cells()
    with pytest.raises(ValueError, match="trains one transformer; got 2"):
        GrokkingStudy(models=[{"width": 8}, {"width": 16}]).cells()
    assert GrokkingStudy(models=[{"name": "transformer", "width": 8}]).cells()[0]["model"]["width"] == 8


def test_a_modulus_that_is_not_prime_fails_before_the_first_cell(tmp_path):
    # It failed in every cell (a CellError, a RuntimeError), as each built its equations.
    with pytest.raises(ValueError, match="p must be prime for every b to have an inverse mod p; got 4"):
        GrokkingStudy(**{**TINY, "p": 4}).run(tmp_path / "s.sqlite", progress=False)


def test_min_distinct_is_set_from_the_tracking_table():
    from idprops.studies.steps import id_tracker
    from idprops.studies.store import config_key

    # The tracker's default leaves the cells' configurations (and so their keys) as
    # they were before min_distinct could be set.
    usual = GrokkingStudy(**TINY).cells()[0]
    assert GrokkingStudy(**{**TINY, "tracking": {"n_samples": 30, "min_distinct": 0.5}}).cells()[0] == usual
    assert "min_distinct" not in usual["tracking"]
    assert id_tracker(usual["tracking"], seed=0).min_distinct == 0.5
    cell = GrokkingStudy(**{**TINY, "tracking": {"n_samples": 30, "min_distinct": 0.1}}).cells()[0]
    assert cell["tracking"]["min_distinct"] == 0.1 and config_key(cell) != config_key(usual)
    assert id_tracker(cell["tracking"], seed=0).min_distinct == 0.1
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(ValueError, match="min_distinct is a share of the sample"):
            GrokkingStudy(tracking={"min_distinct": bad}).cells()
    with pytest.raises(ValueError, match="'min_distinct'"):
        GrokkingStudy(tracking={"min_distinc": 0.1}).cells()


def test_summary_when_validation_reaches_the_threshold_and_training_never_does():
    from idprops.studies.grokking import _cell_summary

    row = {
        "training.weight_decay": 1.0,
        "seed": 1,
        "grok_step": 5,
        "train_step": None,
        "grokked": False,
        "llid_val_spearman": None,
        "llid_at_train_step": None,
        "llid_at_grok_step": 3.0,
        "llid_final": 2.5,
        "llid_min": 2.0,
        "steps": 10,
        "seconds": 1.0,
    }
    text = _cell_summary(row, 0.15)
    assert "validation accuracy reached 0.15 at step 5, train accuracy never did; LLID 3 then" in text


def test_llid_at_memorisation_and_generalisation_and_the_drop():
    from idprops.studies.grokking import _cell_summary, _llid_marks

    # The grokking-cpu preset's curve (every 50 steps from step 100): LLID is 11.0 at both
    # steps, rises to 16.6 while memorised, and settles near 10.8 once generalised.
    steps = [0, 50, 100, 150, 200, 250, 300, 350, 400, 700, 750, 800, 850]
    llid = [21.7, 7.2, 11.0, 14.8, 16.6, 16.0, 10.7, 13.3, 13.8, 11.0, 10.2, 10.0, 10.9]
    train = [0.0, 0.25] + [1.0] * 11
    val = [0.0, 0.04, 0.12, 0.19, 0.21, 0.26, 0.39, 0.52, 0.58, 0.94, 0.97, 0.98, 0.99]
    marks = mark_grokking(steps, train, val)
    assert (marks["train_step"], marks["grok_step"]) == (100, 700)
    out = _llid_marks(steps, llid, marks)
    assert out["llid_at_train_step"] == out["llid_at_grok_step"] == 11.0
    assert out["llid_memorised"] == 13.8  # median of 11.0, 14.8, 16.6, 16.0, 10.7, 13.3, 13.8
    assert out["llid_generalised"] == pytest.approx(10.55)  # of 11.0, 10.2, 10.0, 10.9
    assert out["llid_drop"] == pytest.approx(13.8 - 10.55)
    assert (out["llid_peak"], out["llid_peak_step"]) == (16.6, 200)
    # The lowest LLID is looked for from memorisation on: step 50's 7.2 comes before it.
    assert (out["llid_min"], out["llid_min_step"]) == (10.0, 800)

    row = {"training.weight_decay": 1.0, "seed": 0, "grokked": True, "llid_val_spearman": -0.9, "steps": 900}
    row.update(marks, **out, llid_final=10.9, seconds=12.0)
    text = _cell_summary(row, 0.9)
    assert "memorisation (train accuracy >= 0.9) at step 100, generalisation (validation accuracy >= 0.9)" in text
    assert "LLID while memorised: median 13.8, peak 16.6 at step 200; once generalised: median 10.6" in text
    assert "a drop of 3.25 (24%)" in text and "lowest from memorisation on 10 (step 800)" in text
    # A flagged or failed LLID (NaN) is said to be unmeasured, not printed as nan.
    row.update(llid_at_grok_step=math.nan)
    assert "LLID 11 and not measured at the two steps themselves" in _cell_summary(row, 0.9)
