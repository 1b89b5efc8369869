"""
Scaling law and label sharpness against robustness, from a small study
=======================================================================

Konz & Mazurowski (ICLR 2024) train many networks on many datasets and find that

- test loss falls with the training-set size :math:`N` as a power law whose exponent
  is set by the data's intrinsic dimension, :math:`L \\propto K_F\\, N^{-1/d_{data}}`,
  i.e. :math:`\\log L \\approx -\\frac{1}{d_{data}} \\log N + \\log K_F + a`;
- datasets with sharper labels (higher :math:`K_F`) give less robust models.

Both are *studies*: grids of cells (dataset x model x :math:`N` x seed), each of which
trains a network and measures it. Here both run in miniature on scikit-learn's
digits — binary tasks made of pairs of digits, a small CNN, 10 epochs, one seed — in
about half a minute on two CPU cores. The presets ``digits`` and
``digits-robustness`` (``idprops study run digits``) are the same
experiments at a size that says something; see :doc:`/guide/studies`.
"""

# %%
# The scaling-law study
# ---------------------
# Every step is named: the model by its registered name, the training by a preset
# (the paper's Adam, lr 1e-3, weight decay 1e-4) with overrides, the estimators, the
# representation layer and the attacks by name with parameters. ``run`` writes the
# cells to a results store as they finish and returns their records; a second ``run``
# with the same store computes nothing.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from idprops.analysis import correlation, fit_scaling_law
from idprops.plotting import plot_correlation, plot_scaling_law
from idprops.studies import RobustnessStudy, ScalingLawStudy

store = Path(tempfile.mkdtemp()) / "results.sqlite"
training = {"epochs": 10, "batch_size": 32, "threads": 1}
scaling = ScalingLawStudy(
    datasets=[{"name": "digits", "pairs": [[3, 8], [4, 9], [2, 3], [1, 7]]}],
    models=["small_cnn"],
    sizes=[50, 100, 200],
    seeds=[0],
    training=training,
    estimators=["mle", "twonn"],
    representation={"layers": ["relu"], "estimator": "twonn"},
    attacks={"fgsm": {"eps": 2 / 255}},
    device="cpu",
)
results = scaling.run(store)
print(f"{results.n_run} cells run; again: {scaling.run(store).n_run} cells run")

for r in results:
    print(
        f"digits {r['data.classes']} N = {r['n_train']:3d}: test loss {r['test_loss']:.3f}, "
        f"d_data {r['d_data.mle']:.2f} (MLE) {r['d_data.twonn']:.2f} (TwoNN), K_F {r['K_F']:.3f}, "
        f"d_repr {r['d_repr.relu']:.2f} (TwoNN)"
    )

# %%
# One record per cell, with the configuration's fields and the results, nested names
# dotted (``d_data.mle``, ``robust_accuracy.fgsm``): ready for pandas
# (``results.to_frame()``) or for :mod:`idprops.analysis`.
#
# The scaling-law figure: test loss against :math:`N` on log-log axes, one line per
# task, each with its least-squares fit :math:`\log L = -\alpha \log N + c` and its
# 95 % confidence interval. Beside it, the label-sharpness paper's other finding,
# :math:`d_{repr} \le d_{data}`: the trained network's last hidden layer is simpler
# than its input data (both by TwoNN here, as the paper's script measured
# :math:`d_{repr}`: compare dimensions measured with the same estimator).
tasks = sorted({tuple(r["data.classes"]) for r in results})
label = {t: f"{t[0]} vs {t[1]}" for t in tasks}
fits = {}
for t in tasks:
    rows = [r for r in results if tuple(r["data.classes"]) == t]
    fits[label[t]] = fit_scaling_law([r["n_train"] for r in rows], [r["test_loss"] for r in rows])
    d = np.mean([r["d_data.mle"] for r in rows])
    f = fits[label[t]]
    print(
        f"{label[t]}: alpha = {f.alpha:.2f} [{f.alpha_ci[0]:.2f}, {f.alpha_ci[1]:.2f}], "
        f"R^2 = {f.r2:.2f}; measured d_data {d:.1f}"
    )

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
plot_scaling_law(
    [r["n_train"] for r in results],
    [r["test_loss"] for r in results],
    groups=[label[tuple(r["data.classes"])] for r in results],
    fit=fits,
    ax=ax0,
)
ax0.set_xlabel("training-set size N")
ax0.set_title("test loss against N (small CNN, digit pairs)")
ax0.legend(fontsize=7)

d_data = [r["d_data.twonn"] for r in results]
d_repr = [r["d_repr.relu"] for r in results]
ax1.scatter(d_data, d_repr)
top = max(d_data + d_repr) * 1.05
ax1.plot([0, top], [0, top], "k:", label="d_repr = d_data")
ax1.set_xlabel("d_data of the training set (TwoNN)")
ax1.set_ylabel("d_repr of layer 'relu' (TwoNN)")
ax1.set_title(f"d_repr <= d_data in {sum(np.less_equal(d_repr, d_data))} of {len(d_data)} cells")
ax1.legend()
fig.tight_layout()

# %%
# Read these numbers with care. The law is an upper bound, reached by networks
# trained to convergence on large :math:`N` (the paper: 500 to 1,750 images at
# 224 x 224, 100 epochs); here the loss of easy binary tasks collapses between
# :math:`N = 50` and 200, so :math:`\alpha` comes out far above
# :math:`1/d_{data} \approx 0.2`, and three sizes with one seed leave intervals wider
# than the values. Likewise, TwoNN on the 50 to 200 images of a cell is noisy (its
# standard error, :math:`d/\sqrt{N}`, is about 1 at :math:`N = 50`). The ``digits``
# preset (five sizes, three seeds, six pairs) is the same study at a size that says
# more.

# %%
# The robustness study
# --------------------
# One network per pair of digits, trained on the pair's whole training split
# (about 270 images), then attacked on its test images with the paper's single-step
# FGSM (:math:`\epsilon = 2/255`) and a 10-step PGD (:math:`\epsilon = 1/16`, one grey
# level of the digits). :math:`K_F` is computed exactly over the training set.
pairs = [[0, 1], [3, 8], [4, 9], [1, 7], [5, 6], [2, 3], [7, 9], [5, 8]]
robustness = RobustnessStudy(
    datasets=[{"name": "digits", "pairs": pairs}],
    training=training,
    sharpness={"M": "all"},
    attacks={"fgsm": {"eps": 2 / 255}, "pgd": {"eps": 1 / 16, "steps": 10, "seed": 0}},
    device="cpu",
)
rows = robustness.run(store)  # one store can hold several studies
K_F = [r["K_F"] for r in rows]
for attack in ("fgsm", "pgd"):
    for field in ("robust_accuracy", "loss_increase"):
        print(f"K_F vs {field} under {attack}: {correlation(K_F, [r[f'{field}.{attack}'] for r in rows])}")

# %%
# K_F against the loss increase under PGD, one point per pair of digits, with the
# Pearson correlation and its bootstrap 95 % interval. Eight binary tasks whose
# :math:`K_F` spans less than a factor of two are far too few to see the paper's
# correlation (Pearson :math:`r \approx 0.70` across natural and medical datasets
# whose :math:`K_F` differ several-fold): the interval covers most of
# :math:`[-1, 1]`. The ``digits-robustness`` preset runs all 45 pairs with two seeds.
fig, ax = plt.subplots(figsize=(5.5, 4.2))
plot_correlation(
    K_F,
    [r["loss_increase.pgd"] for r in rows],
    labels=[f"{a}v{b}" for a, b in (r["data.classes"] for r in rows)],
    ax=ax,
)
ax.set_xlabel("label sharpness K_F of the training set")
ax.set_ylabel("test loss increase under PGD (eps = 1/16)")
fig.tight_layout()

# %%
# ``report`` writes the same analysis as a Markdown and HTML report with its figures
# and a CSV of the cells; it is what ``idprops study`` prints the path of.
report = robustness.report(rows, Path(tempfile.mkdtemp()) / "robustness-report")
print(sorted(p.name for p in report.parent.iterdir()))
