"""Exact k-nearest neighbours: FAISS (GPU or CPU) or torch, batched, re-ranked in float64.

Every estimator in idprops gets its neighbours from :func:`kneighbors`. The search
runs in float32 on centred data (the fast part, a matrix product), asks for a few
more candidates than needed, and then recomputes the candidates' distances exactly
in float64 from the vectors and re-ranks them. The matrix-product trick
``|x|^2 + |y|^2 - 2 x.y`` loses precision for close points (faiss returns 0 for
near-duplicates, which makes log-ratios infinite); the re-ranking removes that
error before any logarithm is taken.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.utils import check_array

__all__ = ["available_backends", "kneighbors"]

BACKENDS = ("auto", "faiss", "faiss-gpu", "torch")

# Bytes allowed for one batch of float32 distances (batch x n), and for one chunk of
# float64 candidate differences during re-ranking: keeps memory O(batch x n + n x k).
_BATCH_BYTES = 256 * 2**20
_RERANK_BYTES = 64 * 2**20


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _cuda_available() -> bool:
    # Importing torch costs about a second; on a machine without an NVIDIA driver it
    # cannot see a GPU anyway, so do not pay for it there.
    if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _faiss_gpu_available() -> bool:
    faiss = _faiss()
    return (
        faiss is not None
        and hasattr(faiss, "StandardGpuResources")
        and faiss.get_num_gpus() > 0
    )


def available_backends() -> list[str]:
    """Backends that can run on this machine, fastest first.

    Examples
    --------
    >>> "torch" in available_backends() or "faiss" in available_backends()
    True
    """
    found = []
    if _faiss_gpu_available():
        found.append("faiss-gpu")
    if _faiss() is not None:
        found.append("faiss")
    if importlib.util.find_spec("torch") is not None:
        found.append("torch")
    return found


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        # faiss GPU wheels need about 0.8 GB of CUDA libraries that many users lack, so
        # torch on the GPU comes before faiss on the CPU.
        cuda = _cuda_available()
        if cuda and _faiss_gpu_available():
            return "faiss-gpu"
        if cuda or _faiss() is None:
            return "torch"
        return "faiss"
    if backend not in available_backends():
        hint = {
            "faiss": "pip install faiss-cpu",
            "faiss-gpu": "pip install 'idprops[gpu]' on a machine with a CUDA GPU",
            "torch": "pip install torch",
        }[backend]
        raise ValueError(f"the {backend!r} kNN backend is not available here ({hint})")
    return backend


def _search_faiss(X, Y, n_cand, batch_size, gpu, device):
    faiss = _faiss()
    index = faiss.IndexFlatL2(Y.shape[1])
    if gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device or 0, index)
    index.add(Y)
    out = np.empty((len(X), n_cand), dtype=np.int64)
    for start in range(0, len(X), batch_size):
        _, out[start : start + batch_size] = index.search(X[start : start + batch_size], n_cand)
    return out


def _search_torch(X, Y, n_cand, batch_size, device):
    import torch

    if device is None:
        device = "cuda" if _cuda_available() else "cpu"
    Yt = torch.from_numpy(Y).to(device)
    y_sq = (Yt * Yt).sum(1)
    out = np.empty((len(X), n_cand), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            xb = torch.from_numpy(X[start : start + batch_size]).to(device)
            # |x - y|^2 up to the per-row constant |x|^2, which does not change the ranking.
            d2 = torch.addmm(y_sq.unsqueeze(0), xb, Yt.T, alpha=-2.0)
            idx = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False).indices
            out[start : start + len(xb)] = idx.cpu().numpy()
    return out


def _n_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _exact_rerank(X, Y, candidates, k, exclude_self):
    """Exact float64 distances to the candidates, sorted by (distance, index)."""
    n, n_cand = candidates.shape
    distances = np.empty((n, n_cand))
    chunk = max(1, _RERANK_BYTES // (8 * n_cand * X.shape[1]))

    def rerank_chunk(start):
        stop = min(start + chunk, n)
        # One pass that gathers, casts and subtracts: the re-ranking is memory bound.
        diff = np.subtract(Y[candidates[start:stop]], X[start:stop, None, :], dtype=np.float64)
        distances[start:stop] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))

    starts = range(0, n, chunk)
    # numpy releases the GIL in these loops, so threads use the other cores.
    with ThreadPoolExecutor(min(_n_threads(), len(starts))) as pool:
        list(pool.map(rerank_chunk, starts))
    if exclude_self:
        distances[candidates == np.arange(n)[:, None]] = np.inf
    order = np.lexsort((candidates, distances), axis=-1)[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def kneighbors(
    X,
    k: int,
    *,
    Y=None,
    backend: str = "auto",
    batch_size: int | None = None,
    device: str | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of the rows of ``X`` among the rows of ``Y``.

    Parameters
    ----------
    X : array-like of shape (n_queries, n_features)
        Query points.
    k : int
        Number of neighbours per query.
    Y : array-like of shape (n_points, n_features), default=None
        Points searched. ``None`` searches ``X`` itself and excludes each query's own
        row by index (not by distance, so an exact duplicate is still a neighbour at
        distance 0).
    backend : {"auto", "faiss", "faiss-gpu", "torch"}, default="auto"
        ``"auto"`` takes faiss on the GPU when torch sees CUDA and faiss has GPU
        support, else torch on CUDA when a GPU is seen, else faiss on the CPU, else
        torch on the CPU.
    batch_size : int, default=None
        Queries per batch. ``None`` keeps one batch's float32 distances near 256 MiB
        for torch (faiss tiles its own products and gets 65,536 queries a batch).
    device : str or int, default=None
        Torch device (``"cpu"``, ``"cuda:1"``) or faiss GPU number.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float64
        Euclidean distances, ascending, recomputed exactly from the vectors.
    indices : ndarray of shape (n_queries, k), int64
        Rows of ``Y`` (or ``X``); ties in distance are ordered by index.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> dist, idx = kneighbors(X, 2)
    >>> idx
    array([[1, 2],
           [0, 2],
           [1, 0],
           [2, 1]])
    >>> dist[3]
    array([4., 6.])
    """
    X = check_array(X, dtype=[np.float64, np.float32], input_name="X")
    exclude_self = Y is None
    Y = X if exclude_self else check_array(Y, dtype=[np.float64, np.float32], input_name="Y")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but Y has {Y.shape[1]}; both must describe "
            "points in the same space."
        )
    available = len(Y) - exclude_self
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > available:
        raise ValueError(
            f"cannot find k={k} neighbours among {available} other points; use a "
            f"smaller k or more data."
        )
    backend = _resolve_backend(backend)

    # Extra candidates absorb float32 ranking errors near the k-th neighbour; the exact
    # re-ranking then picks the true k.
    n_cand = min(k + exclude_self + max(k, 8), len(Y))
    # Centring changes no distance but shrinks |x|^2 and |y|^2, which is where the
    # float32 matrix-product trick loses its precision.
    center = Y.mean(axis=0)
    Xc = np.ascontiguousarray(X - center, dtype=np.float32)
    Yc = Xc if exclude_self else np.ascontiguousarray(Y - center, dtype=np.float32)
    if batch_size is None:
        # faiss tiles its own matrix products, so a batch only bounds its output.
        batch_size = max(1, _BATCH_BYTES // (4 * len(Y))) if backend == "torch" else 65536
    elif batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    if backend == "torch":
        candidates = _search_torch(Xc, Yc, n_cand, batch_size, device)
    else:
        candidates = _search_faiss(Xc, Yc, n_cand, batch_size, backend == "faiss-gpu", device)
    return _exact_rerank(X, Y, candidates, k, exclude_self)
