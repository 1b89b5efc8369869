"""
Intrinsic dimension of activations through training, on true and random labels
===============================================================================

Two results about what a network does with its data, combined in one tiny
experiment on scikit-learn's digits:

- Zhang et al. (ICLR 2017): a network can fit *random* labels perfectly; it simply
  memorises, and its test accuracy stays at chance. :func:`idprops.data.corrupt`
  wraps a dataset in their randomization tests (``"random_labels"``,
  ``"partial_labels"``, ``"shuffled_pixels"``, ``"random_pixels"``, ``"gaussian"``),
  fixed once drawn.
- Ansuini et al. (2019) and Brown et al. (2022): the intrinsic dimension of a layer's
  activations changes through training, and that of the last hidden layer (LLID) is
  low when the network generalises. :class:`~idprops.nn.callbacks.ActivationIDTracker`
  measures every chosen layer (TwoNN) on a fixed sample, in eval mode, before training
  and every few epochs.

We train Zhang et al.'s MLP with three hidden layers of 512 units on the digits'
training split (1,347 images) twice, with the true labels and with random ones, and
track the ID of its three hidden layers on the 450 test images.
"""

# %%
import matplotlib.pyplot as plt
import torch

from idprops.data import corrupt, load_digits
from idprops.nn import Trainer, mlp3x512
from idprops.nn.callbacks import ActivationIDTracker, llid_pid
from idprops.plotting import plot_id_curves

train, test = load_digits(train=True), load_digits(train=False)
layers = ["relu1", "relu2", "relu3"]  # input side first; the last feeds the classifier

runs = {}
for labels in ("true_labels", "random_labels"):
    data = corrupt(train, labels, seed=0)  # "true_labels" changes nothing
    torch.manual_seed(0)  # the same initial weights for both runs
    model = mlp3x512(in_channels=1, num_classes=10, input_size=8)
    tracker = ActivationIDTracker(layers, data=test, n_samples=450, every=5)
    trainer = Trainer(model, epochs=40, batch_size=64, lr=1e-3, callbacks=[tracker], progress=False)
    trainer.fit(data, test)
    runs[labels] = (trainer.history, tracker.records_)
    last = trainer.history[-1]
    summary = llid_pid(tracker.records_[-1]["ids"])
    print(
        f"{labels:13s} {int(data.corrupted_.sum()):4d} labels changed; after 40 epochs: "
        f"train accuracy {last['train_accuracy']:.2f}, test accuracy {last['val_accuracy']:.2f}; "
        f"LLID {summary.llid:.1f}, PID {summary.pid:.1f}, log(PID/LLID) {summary.log_ratio:.2f}"
    )

# %%
# Random labels are learnt too, only more slowly, and test accuracy stays at chance
# (10 %): the network memorises. With the true labels, training compresses the
# representation layer by layer, and the last hidden layer ends lowest; the network
# that memorises random labels ends with a last hidden layer as high-dimensional as
# its first, its ID climbing (after an early drop) as it learns them. ``log(PID/LLID)``, which Brown et al. found
# to track validation accuracy across regularizers, is large for the network that
# generalises and near zero for the one that memorises.
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for labels, (history, _) in runs.items():
    epochs = [h["epoch"] + 1 for h in history]
    (line,) = axes[0].plot(epochs, [h["train_accuracy"] for h in history], label=f"{labels}: train")
    axes[0].plot(epochs, [h["val_accuracy"] for h in history], "--", color=line.get_color(), label=f"{labels}: test")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("accuracy")
axes[0].set_title("MLP 3x512 on digits")
axes[0].legend(fontsize=8)
for ax, (labels, (_, records)) in zip(axes[1:], runs.items()):
    plot_id_curves(records, x="epoch", ax=ax)
    ax.set_title(f"layer IDs on test images, {labels}")
low = min(ax.get_ylim()[0] for ax in axes[1:])
high = max(ax.get_ylim()[1] for ax in axes[1:])
for ax in axes[1:]:
    ax.set_ylim(low, high)
fig.tight_layout()
