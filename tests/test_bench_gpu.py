"""The GPU benchmark's smoke run: every piece the GPU run uses, at tiny sizes, here on the CPU."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_sections_run_and_give_the_estimators_answers(bench, tmp_path):
    from idprops import MLEDimension
    from idprops.data.manifolds import sample_sphere

    assert (
        bench.main(["--smoke", "--device", "cpu", "--sections", "exact", "fast", "million", "--out", str(tmp_path)])
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == {}
    n, D = bench.SMOKE["exact"][0]
    X = sample_sphere(n, 10, ambient_dim=D, random_state=0).astype(np.float32)
    assert results["exact"][0]["mle"]["dimension"] == MLEDimension(k=20, unbiased=False).fit(X).dimension_
    assert results["fast"]["n_queries"] == bench.SMOKE["fast"][2]
    assert 0 < results["million"]["search_share_outside_products"] < 1
    assert "| 600 | 16 |" in (tmp_path / "RESULTS.md").read_text()


def test_a_failing_section_is_recorded_and_the_others_run(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.SECTIONS, "fast", lambda cfg, device: 1 / 0)
    assert bench.main(["--smoke", "--device", "cpu", "--sections", "fast", "machine", "--out", str(tmp_path)]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert "ZeroDivisionError" in results["errors"]["fast"]
    assert results["machine"]["card"] == "cpu (smoke run)"


def test_paper_preset_estimate_scales_one_cell(bench):
    # 0.1 s per image and epoch, 10 s of measuring, at 224 x 224 on a ResNet-18: each
    # cell of N images costs 0.1 N x 100 + 10 s, times the model's FLOPs over ResNet-18's.
    cell = {"train_s_per_epoch": 50.0, "n": 500, "image_size": 224, "measure_s": 10.0}
    estimate = bench.paper_estimate(cell)
    resnet18 = sum(0.1 * n * 100 + 10 for n in (500, 750, 1000, 1250, 1500, 1750)) * 4  # 4 datasets
    assert estimate["cells"] == 6 * 6 * 4
    assert estimate["hours_by_model"]["resnet18"] == pytest.approx(resnet18 / 3600)
    assert estimate["hours_by_model"]["vgg19"] == pytest.approx(resnet18 / 3600 * 19.63 / 1.81)


def test_synthetic_images_are_on_the_paper_scale(bench):
    x, y = bench.images(10, 16)
    assert x.shape == (10, 3, 16, 16) and x.min() == 0 and x.max() == 255
    assert set(y.tolist()) == {0, 1}
