import os

# Tests run two at a time on two cores (pytest -n 2): one thread each, or OpenMP
# oversubscription makes tiny-model training many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:
    pass


@pytest.fixture
def rng():
    return np.random.default_rng(0)
