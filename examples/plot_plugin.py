"""
A third-party plugin: your estimator and dataset by name
========================================================

idprops finds estimators, models and datasets through Python entry points, in the
groups ``idprops.estimators``, ``idprops.models`` and ``idprops.datasets``. A package
that declares one is a plugin: once installed, its names work everywhere a built-in
name does — :func:`idprops.get_estimator`, ``idprops measure --estimator NAME``,
:func:`idprops.studies.measure`, study files.

Here we build such a package, ``mydim``, with one estimator and one dataset, and make
it visible the way ``pip install`` would: a ``mydim-0.1.dist-info`` folder with an
``entry_points.txt`` in a folder on ``sys.path``. (For a real package, write the
entry points in its ``setup.cfg``, see :doc:`/guide/plugins`; in a notebook,
:func:`idprops.register_estimator` registers a class for the session without any
packaging.)
"""

# %%
# The plugin's code
# -----------------
# An estimator that subclasses :class:`idprops.base.BaseDimension` declares how many
# neighbours it needs and turns their distances into ``dimension_``; the base class
# gives it input handling, duplicate removal, the exact kNN engine and the shared
# ``score``. This one is the maximum-likelihood estimate of the Pareto law of
# :math:`\mu = T_2/T_1`, without the :math:`n - 1` correction. The dataset loader takes
# the keyword arguments every idprops loader takes and returns a torch Dataset of
# ``(x, label)``: two noisy concentric rings, a 1-dimensional dataset.
import sys
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import idprops
from idprops import registry

PLUGIN_SOURCE = '''
import numpy as np

from idprops.base import BaseDimension
from idprops.data import load_dataset


class MeanRatioDimension(BaseDimension):
    """d = 1 / mean log(T2 / T1): the Pareto MLE without the n - 1 correction."""

    def __init__(self, *, n_queries=None, backend="auto", random_state=None):
        self.n_queries = n_queries
        self.backend = backend
        self.random_state = random_state

    def _n_neighbors(self):
        return 2

    def _estimate(self, distances):
        log_mu = np.log(distances[:, 1] / distances[:, 0])
        self.dimension_ = float(1 / log_mu.mean())
        self.dimension_std_ = self.dimension_ / np.sqrt(len(log_mu))


def load_rings(*, root=None, train=True, download=False, classes=None, n=None, seed=0,
               scale="unit"):
    """Two concentric rings (radii 1 and 1.5) in the plane, labelled by ring."""
    rng = np.random.default_rng(1 if train is False else 0)
    ring = rng.integers(0, 2, 1500)
    angle = rng.uniform(0, 2 * np.pi, 1500)
    radius = 1 + 0.5 * ring
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    return load_dataset((X, ring), classes=classes, n=n, seed=seed)
'''

ENTRY_POINTS = """
[idprops.estimators]
meanratio = mydim:MeanRatioDimension

[idprops.datasets]
rings = mydim:load_rings
"""

# %%
# "Installing" it
# ---------------
# pip would write the module and a ``.dist-info`` folder into ``site-packages``; we
# write them into a temporary folder and put it on ``sys.path``. A running session
# caches the entry points it has seen: :func:`idprops.registry.refresh` forgets them.
site = Path(tempfile.mkdtemp(prefix="idprops-plugin-"))
(site / "mydim.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
info = site / "mydim-0.1.dist-info"
info.mkdir()
(info / "METADATA").write_text("Metadata-Version: 2.1\nName: mydim\nVersion: 0.1\n")
(info / "entry_points.txt").write_text(ENTRY_POINTS)
sys.path.insert(0, str(site))
registry.refresh()

print("estimators:", idprops.available_estimators())
print("datasets:  ", idprops.available_datasets())
print(idprops.get_estimator("meanratio"))

# %%
# Using it by name
# ----------------
# The command line accepts the plugin's names like any other (here called in-process;
# in a shell: ``idprops measure --data rings --estimator meanratio --estimator twonn``):
from idprops.cli import main

exit_code = main(["measure", "--data", "rings", "--estimator", "meanratio", "--estimator", "twonn"])

# %%
# So does :func:`~idprops.studies.measure`, and so would a study file
# (``[estimators.meanratio]``). The rings are one-dimensional and 0.5 apart, so we
# expect :math:`d \approx 1`, and :math:`K_F` just below 2: no two points of different
# rings are closer than 0.5, and with 1,500 points some pair is at nearly the same angle.
from idprops.data import load_dataset
from idprops.studies import measure

rings = load_dataset("rings")
result = measure(rings, estimators=("meanratio", "twonn", "mle"))
for row in result["dimensions"]:
    print(f"{row['estimator']:10s} d = {row['dimension']:.3f} ± {row['std']:.3f}")
print(f"K_F = {result['sharpness']['K_F']:.3f}, closest pair {result['sharpness']['pair']}")

# %%
# The figure: the plugin's dataset, with the closest pair of points of different
# labels (the pair that sets :math:`K_F`), and the plugin's estimate next to the
# built-in ones.
X, y = np.stack([x for x, _ in rings]), np.array([label for _, label in rings])
i, j = result["sharpness"]["pair"]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4))
ax0.scatter(X[:, 0], X[:, 1], c=y, s=4, cmap="coolwarm")
ax0.plot(X[[i, j], 0], X[[i, j], 1], "k-", lw=2, label=f"1 / K_F = {1 / result['sharpness']['K_F']:.3f}")
ax0.set_aspect("equal")
ax0.legend(loc="center")
ax0.set_title("dataset plugin 'rings'")
names = [row["estimator"] for row in result["dimensions"]]
ax1.bar(
    names,
    [row["dimension"] for row in result["dimensions"]],
    yerr=[row["std"] for row in result["dimensions"]],
    color=["C2", "C0", "C0"],
)
ax1.axhline(1, color="k", ls=":", label="truth")
ax1.set_ylabel("intrinsic dimension")
ax1.set_title("estimator plugin 'meanratio' and built-ins")
ax1.legend()
fig.tight_layout()

# %%
# Uninstalling: take the folder off ``sys.path`` and refresh, and the names are gone.
sys.path[:] = [p for p in sys.path if p != str(site)]
sys.modules.pop("mydim", None)
registry.refresh()
print("meanratio" in idprops.available_estimators())
