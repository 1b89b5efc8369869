"""Exact k-nearest neighbours: FAISS (GPU or CPU) or torch, batched, re-ranked in float64.

Every estimator in idprops gets its neighbours from :func:`kneighbors`. The search
runs in float32 on centred data (the fast part, a matrix product), asks for a few
more candidates than needed, and then recomputes the candidates' distances exactly
in float64 from the vectors and re-ranks them. The matrix-product trick
``|x|^2 + |y|^2 - 2 x.y`` loses precision for close points (faiss returns 0 for
near-duplicates, which makes log-ratios infinite); the re-ranking removes that
error before any logarithm is taken.

A search of X against itself (of 2,048 rows or more) on the CPU with faiss
multiplies each pair of row blocks once and feeds both ends' candidate heaps from
the one product (:mod:`idprops._symmetric`): half the products of X against X.

The result is exact, not just likely right: the float32 error has a known bound, so
a row whose k-th exact distance lies below the first unexamined candidate's float32
distance minus that bound cannot be missing a neighbour. Rows that cannot be proven
so (points tied at the k-th distance) are searched again with more candidates, and
the few still unproven are scanned in float64.

Data of 4,096 features or more (few points of a wide layer) are searched by products
over slabs of features summed in float64, whose bound does not grow with the width.
Where a search of X against itself has few rows for k (under 150 per neighbour, or
under 1,500 rows from k = 3), measuring every row's k neighbours from the vectors would cost more than float64
products: those give the distances, each proven within 2**-33 of itself, and only
pairs they cannot settle (points far nearer to each other than to the centre, ties to
be ordered by index) are measured from the vectors. The float64 scan of rows the
float32 search leaves unproven takes its distances the same way.

:func:`closest_pair`, the nearest two rows in different groups (K_F's pair of
differently labelled inputs), searches each group against the groups after it; on
wide data whose products of X by itself fit one batch it makes those products once,
with each row's own group masked out.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading

import numpy as np
from sklearn.utils import check_array

from ._symmetric import symmetric_candidates
from ._threads import n_cores, row_parts, single_threaded_native, thread_pool
from .validation import check_finite

__all__ = ["available_backends", "closest_pair", "kneighbors"]

BACKENDS = ("auto", "faiss", "faiss-gpu", "torch")

# Bytes allowed for one batch of float32 distances (batch x n): keeps memory
# O(batch x n + n x k). A chunk of float64 candidate differences during re-ranking is
# kept small enough to stay in a core's cache. The figures behind these constants and
# the choices below are in benchmarks/TUNING.md.
_BATCH_BYTES = 256 * 2**20
_RERANK_BYTES = 2 * 2**20
# A slab of features cast to float64 for the float64 products.
_SLAB_BYTES = 64 * 2**20
# Rows of the median that centres the float64 products.
_FLOAT64_CENTER_ROWS = 9
# Rows of a slab cast and centred together, in a core's own cache.
_CENTRED_BLOCK_BYTES = 512 * 2**10
# From this many features the float32 search's error bound, which grows with them,
# proves too few rows: products summed over slabs of features take its place.
_WIDE_FEATURES = 4096
# Features per slab of those float32 products: the bound grows with it, and summing
# the slabs' products in float64 costs more the narrower they are.
_SLAB_FEATURES = 1024
# float64 products give a distance where their error bound is below this share of its
# square, which leaves it right to 1.2e-10 (measuring it from the vectors: to D x 1e-16).
_PRODUCT_TOLERANCE = 2.0**-32
# Under this many rows per neighbour, float64 products of X by itself cost less than
# float32 ones and measuring every row's k neighbours from the vectors; below
# _FEW_ROWS rows, from _FEW_ROWS_NEIGHBOURS neighbours on. Only where those products
# fit the batch budget at once: by chunks they are made twice over.
_ROWS_PER_NEIGHBOUR = 150
_FEW_ROWS, _FEW_ROWS_NEIGHBOURS = 1500, 3
# Candidates a row of the float32 products may have measured before it goes to float64.
_MEASURED_WINDOW = 64
# Rows per block of a product of data by itself over slabs (:func:`_add_upper_products`).
_SELF_PRODUCT_ROWS = 1280
# Finding the pairs a search of X against itself found from both ends costs more than
# measuring them twice at 64 features, and less from 128.
_MEASURE_ONCE_MIN_FEATURES = 128
# A GPU driver's device file: NVIDIA on Linux, WSL2 (which has no /dev/nvidiactl), ROCm.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")
# faiss' GPU search returns at most this many neighbours per query.
_FAISS_GPU_MAX_K = 2048
# Below this many rows, starting threads and setting process-wide thread limits costs
# more than the symmetric search saves.
_SYMMETRIC_MIN_ROWS = 2048


def float_dtype(X):
    """The ``dtype`` to ask ``check_array`` for: float32 where it holds ``X`` exactly.

    Images of 8 or 16 bits, float16 activations and booleans have every value in
    float32, so a float32 copy gives the same neighbours and distances as float64 at
    half the memory; other integers may not fit float32's 24 bits and become float64.
    """
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, np.dtype) and (dtype.kind in "biuf" and dtype.itemsize <= 2):
        return np.float32
    return [np.float64, np.float32]


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _cuda_available() -> bool:
    # Importing torch costs about a second; on a machine without a GPU driver it cannot
    # see a GPU anyway, so do not pay for it there.
    if "torch" not in sys.modules and not any(map(os.path.exists, _GPU_DEVICE_FILES)):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _faiss_gpu_available() -> bool:
    faiss = _faiss()
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


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


def _resolve_backend(backend: str, device=None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        # faiss GPU wheels need about 0.8 GB of CUDA libraries that many users lack, so
        # torch on the GPU comes before faiss on the CPU.
        cuda = not _on_cpu(device) and _cuda_available()
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


def _faiss_search(Y, gpu, device):
    """A search of Y for one batch: (queries, n) -> float32 squared distances, indices."""
    faiss = _faiss()
    if not gpu:
        # The same search as a flat index's, without the index's copy of Y.
        return lambda queries, n: faiss.knn(queries, Y, n)
    index = faiss.IndexFlatL2(Y.shape[1])
    index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), _gpu_number(device), index)
    index.add(Y)
    return index.search


def _gpu_number(device) -> int:
    """faiss' GPU number for ``device``: None, an int, or "cuda[:N]" as torch writes it."""
    if device is None:
        return 0
    if isinstance(device, (int, np.integer)):
        return int(device)
    kind, _, number = str(device).partition(":")
    if kind != "cuda" or not (number or "0").isdigit():
        raise ValueError(f"device={device!r} is not a GPU; the faiss-gpu backend takes 'cuda:N' or N")
    return int(number or 0)


def _on_cpu(device) -> bool:
    """Whether ``device`` names the CPU (torch's spelling, or a torch.device)."""
    return device is not None and str(device).split(":")[0] == "cpu"


def _torch_device(device):
    import torch

    if device is None:
        return torch.device("cuda" if _cuda_available() else "cpu")
    if isinstance(device, (int, np.integer)):  # a GPU number, as faiss takes it
        return torch.device("cuda", int(device))
    return torch.device(device)


def _set_ieee_float32_matmuls():
    """Make torch's float32 products float32 (not TF32 or bfloat16); return the undo.

    torch has two APIs for this process-wide setting, and reading the older one
    raises once the newer one was used, so the caller's own API is the one changed.
    """
    import torch

    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller set the newer, per-backend fp32_precision
        backends = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
        # CUDA's backend-wide setting is exposed as cudnn's.
        parents = (torch.backends.cudnn, torch.backends.mkldnn)
        # A setting reads as its parent's when it has none of its own; writing that
        # value back would pin it, so it gets "none" (inherit) back instead.
        saved = [
            "none" if b.fp32_precision == parent.fp32_precision else b.fp32_precision
            for b, parent in zip(backends, parents)
        ]
        for b in backends:
            b.fp32_precision = "ieee"
        return lambda: [setattr(b, "fp32_precision", p) for b, p in zip(backends, saved)]
    if legacy == "highest":  # torch's default: writing it would pin the newer API's settings
        return lambda: None
    torch.set_float32_matmul_precision("highest")
    return lambda: torch.set_float32_matmul_precision(legacy)


class _IEEEFloat32Matmuls:
    """A context in which torch's float32 products are float32, for searches in any threads.

    TF32 products would break the float32 error bound that the re-ranking relies on.
    The first search to enter changes the setting and the last to leave restores the
    caller's: searches restoring each other's setting in turn could lose it, and a
    lock held for a whole search would make concurrent GPU searches wait in line.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._undo = None

    def __enter__(self) -> None:
        with self._lock:
            if not self._inside:
                self._undo = _set_ieee_float32_matmuls()
            self._inside += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside:
                self._undo()


_ieee_float32_matmuls = _IEEEFloat32Matmuls()


def _torch_search(Y, device):
    """A search of Y for one batch: (queries, n) -> float32 squared distances, indices."""
    import torch

    Yt = torch.from_numpy(Y).to(device)
    y_sq = (Yt * Yt).sum(1)

    def search(queries, n):
        with _ieee_float32_matmuls, torch.no_grad():
            xb = torch.from_numpy(queries).to(device)
            # |x - y|^2 up to the per-row constant |x|^2, added after the selection.
            d2 = torch.addmm(y_sq.unsqueeze(0), xb, Yt.T, alpha=-2.0)
            values, idx = torch.topk(d2, n, dim=1, largest=False)
            values += (xb * xb).sum(1, keepdim=True)
            return values.cpu().numpy(), idx.cpu().numpy()

    return search


def _search(search, X, n_cand, batch_size):
    """The n_cand float32-nearest candidates of every row of X, a batch at a time."""
    approx = np.empty((len(X), n_cand), dtype=np.float32)
    out = np.empty((len(X), n_cand), dtype=np.int64)
    for start in range(0, len(X), batch_size):
        stop = start + batch_size
        approx[start:stop], out[start:stop] = search(X[start:stop], n_cand)
    return approx, out


def _sq_norms(A) -> np.ndarray:
    """Squared Euclidean norm of every row, accumulated in float64."""
    return np.einsum("ij,ij->i", A, A, dtype=np.float64)


def _error_bound(x_norm, y_norm, n_features, unit_roundoff):
    """A bound on |computed - exact| squared distance between points of these norms.

    The expansion |x|^2 + |y|^2 - 2 x.y with dot products of length D errs by at most
    gamma (|x| + |y|)^2, gamma = (D + 2) u / (1 - (D + 2) u) for unit roundoff u
    (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1); the factor 2
    covers rounding the centred data to the search's precision.
    """
    m = (n_features + 2) * unit_roundoff
    if m >= 1:
        # No bound holds (2**24 features in float32): every row goes to the float64 scan.
        return np.full(np.broadcast(x_norm, y_norm).shape, np.inf)
    return 2 * m / (1 - m) * (x_norm + y_norm) ** 2


def _center(Y, n_rows: int = 64) -> np.ndarray:
    """The point the search measures norms from: the median of at most ``n_rows`` spread rows.

    Any centre gives the same neighbours, but the float32 error bound grows with the
    norms around it. One corrupted sample s away moves the mean by s / n towards it:
    among 3,000 rows of N(0, 1) in 20 dimensions, a single row at 1e6 left every row
    unproven and sent all of them to the far slower float64 scan. A
    median does not move; on clean data its norms are within a few percent of the
    mean's (N(0, 1) data: 2.5 % more than around the mean, from 64 rows). Few rows
    keep it cheap on wide data, where each feature's median is a sort of its own.
    """
    return _median(_spread_rows(Y, n_rows))


def _spread_rows(Y, n_rows: int) -> np.ndarray:
    """At most ``n_rows`` rows of Y, evenly spaced."""
    return Y[:: -(-len(Y) // n_rows)]


def _median(rows) -> np.ndarray:
    """The lower median of each column of a few rows."""
    middle = (len(rows) - 1) // 2
    # A partition of each feature's values laid out in a row is faster than np.median
    # along the columns.
    return np.partition(np.ascontiguousarray(rows.T), middle, axis=1)[:, middle]


def _float64_center(Y) -> np.ndarray:
    """The centre of float64 products: a median of few rows, or the origin where it helps little.

    float64 products prove distances with a wide margin (:func:`_product_distances`),
    so the median of a few rows serves. Where it leaves those rows' norms more than
    4/5 of what they are around the origin (data with no offset, sparse activations),
    centring would shrink the error bound by under a third, and costs a pass over
    every slab: the origin serves.
    """
    rows = _spread_rows(Y, _FLOAT64_CENTER_ROWS)
    center = _median(rows)
    around_center, around_origin = np.median(_sq_norms(rows - center)), np.median(_sq_norms(rows))
    return center if around_center < 0.64 * around_origin else np.zeros_like(center)


def _power_of_two_scale(center, *arrays) -> int:
    """The exponent e of a power of two 2**e at least the largest ``|a - center|``.

    Dividing by 2**e (:func:`_divided`) is exact and brings the data near 1, where
    neither float32's nor float64's squares overflow or leave the normal numbers.
    Data spanning float64's whole range (-1.7e308 to 1.7e308) give e = 1025, whose
    power is not a float64. 0 when all are zero. An array given twice (Y that is X)
    is read once.
    """
    arrays = list({id(a): a for a in arrays}.values())
    center = center.astype(np.float64)
    with np.errstate(over="ignore"):
        peak = max(float(np.max(np.maximum(a.max(axis=0) - center, center - a.min(axis=0)))) for a in arrays)
    if np.isinf(peak):  # halves do not overflow
        half = max(
            float(np.max(np.maximum(a.max(axis=0) / 2 - center / 2, center / 2 - a.min(axis=0) / 2))) for a in arrays
        )
        return int(np.frexp(half)[1]) + 1
    return int(np.frexp(peak)[1]) if peak > 0 else 0


def _divided(A, exponent: int):
    """A / 2**exponent, exactly (unless it falls below the normal numbers), in place for arrays."""
    if exponent == 0:
        return A
    if exponent > 1023:  # 2**exponent is not a float64, but its inverse is
        A *= 2.0**-exponent
        return A
    A /= 2.0**exponent
    return A


def _centred(A, center, scale, dtype, out=None) -> np.ndarray:
    """(A - center) / 2**scale as a C-contiguous array of ``dtype`` (one temporary at most).

    ``out``, a buffer of A's shape and ``dtype``, takes the result where ``dtype``
    holds A's values (wide slabs: a buffer reused from slab to slab, already in the
    cache, instead of fresh pages for each).
    """
    # Subtracted in float64 when either is, so that float32 data are not rounded
    # on their way to a float64 scan.
    work = np.result_type(A, center, dtype)
    if out is not None and work == dtype and scale <= 1023:
        _centred_into(out, A, center.astype(dtype, copy=False))
        return _divided(out, scale)
    if scale > 1023:
        # The difference itself may overflow: both are divided by 4 first, exactly but
        # for values below 1e-307, which are nothing beside data that span 1e308.
        A = np.subtract(np.multiply(A, 0.25, dtype=work), np.multiply(center, 0.25, dtype=work))
        return np.ascontiguousarray(_divided(A, scale - 2), dtype=dtype)
    A = np.subtract(A, center, dtype=work)
    return np.ascontiguousarray(_divided(A, scale), dtype=dtype)


def _centred_into(out, A, center) -> None:
    """``out[:] = A - center``, a few rows at a time on every core.

    A cast (float32 A, float64 ``out``) is a copy, then a subtraction of one type,
    faster than a mixed subtraction; a block of rows is subtracted while its copy is
    still in the core's cache, not after the whole slab has gone to memory and back.
    """
    block = max(1, _CENTRED_BLOCK_BYTES // (out.itemsize * max(1, A.shape[1])))
    subtract = center.any()  # the origin (:func:`_float64_center`) only casts

    def part(part_rows):
        for top in range(part_rows.start, part_rows.stop, block):
            rows = slice(top, min(top + block, part_rows.stop))
            if A.dtype == out.dtype and subtract:
                np.subtract(A[rows], center, out=out[rows])
            else:
                np.copyto(out[rows], A[rows])
                if subtract:
                    out[rows] -= center

    list(thread_pool(n_cores()).map(part, row_parts(len(A))))


def _numpy_distances(X, Y, rows, cols):
    """float64 distances from X[rows[i]] to Y[cols[i]], computed from differences."""
    if X.shape[1] >= _WIDE_FEATURES:
        return _wide_distances(X, Y, rows, cols)
    out = np.empty(len(rows))
    chunk = max(1, _RERANK_BYTES // (8 * X.shape[1]))
    local = threading.local()

    def one_chunk(start):
        stop = start + chunk
        m = len(rows[start:stop])
        # Buffers of each thread's own: arrays of a few MiB allocated and freed in a
        # worker thread often fault in fresh pages.
        if not hasattr(local, "diff"):
            local.y = np.empty((chunk, Y.shape[1]), dtype=Y.dtype)
            local.x = np.empty((chunk, X.shape[1]), dtype=X.dtype)
            local.diff = np.empty((chunk, X.shape[1]))
        # "clip" lets take write into ``out`` directly; every index is in range.
        y = np.take(Y, cols[start:stop], axis=0, out=local.y[:m], mode="clip")
        if rows[start] == rows[start + m - 1]:  # one query's pairs (rows ascend): no gather
            x = X[rows[start]][None]
        else:
            x = np.take(X, rows[start:stop], axis=0, out=local.x[:m], mode="clip")
        # einsum, not a stack of BLAS dot products: those run OpenBLAS' own threads
        # inside these, which on a busy machine took far longer. Differences
        # and squares beyond float64's range are measured again by the caller.
        with np.errstate(over="ignore", invalid="ignore"):
            diff = np.subtract(y, x, out=local.diff[:m], dtype=np.float64)
            out[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))

    starts = range(0, len(rows), chunk)
    # numpy releases the GIL in these loops, so threads use the other cores.
    list(thread_pool(n_cores()).map(one_chunk, starts))
    return out


def _wide_distances(X, Y, rows, cols):
    """:func:`_numpy_distances` for wide rows: one pair at a time, in float64 buffers of one row.

    A row's buffers stay in a core's own cache, where casting, subtracting and a
    BLAS dot product each pass over them once; the numpy loops for many pairs at
    once cast within the subtraction and sum squares in einsum, both several times
    slower per value. ``rows`` ascend, so each query is cast once.
    """
    out = np.empty(len(rows))

    def part(pairs):
        x, diff = np.empty(X.shape[1]), np.empty(Y.shape[1])
        last = -1
        # Differences beyond float64's range are measured again by the caller.
        with np.errstate(over="ignore", invalid="ignore"):
            for p, (row, col) in enumerate(zip(rows[pairs].tolist(), cols[pairs].tolist()), start=pairs.start):
                if row != last:
                    np.copyto(x, X[row])
                    last = row
                np.copyto(diff, Y[col])
                diff -= x
                out[p] = np.dot(diff, diff)

    with single_threaded_native():
        list(thread_pool(n_cores()).map(part, row_parts(len(rows))))
    return np.sqrt(out)


def _torch_distances(X, Y, device):
    """:func:`_numpy_distances` on a torch device, with X and Y copied there once."""
    import torch

    def to_device(A):
        # torch refuses to share memory with a read-only array or negative strides
        # (np.flip's), both of which check_array lets through.
        return torch.from_numpy(np.require(A, requirements=["C", "W"])).to(device)

    Xt = to_device(X)
    Yt = Xt if Y is X else to_device(Y)

    def measure(rows, cols):
        rows_t = torch.from_numpy(rows).to(device)
        cols_t = torch.from_numpy(cols).to(device)
        out = torch.empty(len(rows), dtype=torch.float64, device=device)
        # The gathered rows, their float64 cast and the differences: 20 bytes a value.
        chunk = max(1, _BATCH_BYTES // (20 * X.shape[1]))
        for start in range(0, len(rows), chunk):
            stop = start + chunk
            diff = Yt[cols_t[start:stop]].double()
            diff -= Xt[rows_t[start:stop]].double()
            out[start:stop] = diff.square_().sum(1).sqrt_()
        return out.cpu().numpy()

    return measure


def _copy_pairs_seen_twice(candidates, out, todo):
    """Copy each larger row's pair that its smaller row also found; clear its ``todo``.

    For a search of all of X against itself: row i's candidate j seen again as row j's
    candidate i needs measuring once. Among 5,000 points in 784 dimensions 42 % of the
    pairs were, and measuring them took a quarter of a search. ``out`` holds the
    distances of the pairs seen from their smaller row (flat, row-major); candidates
    of -1 are not there.
    """
    n, width = candidates.shape
    # int32 halves the memory the gather below moves.
    small = candidates.astype(np.int32)
    later = np.flatnonzero((small < np.arange(n, dtype=np.int32)[:, None]) & (small >= 0))
    # The other end's candidates are gathered a chunk at a time: all at once they
    # would take n x width^2 / 2 values (2 GiB for 100,000 rows and k = 100).
    chunk = max(1, _RERANK_BYTES // (4 * width))
    for start in range(0, len(later), chunk):
        seen = later[start : start + chunk]
        row, other = (seen // width).astype(np.int32), small.reshape(-1)[seen]
        # A row holds each candidate once, so each pair matches at most one slot.
        pair, slot = np.divmod(np.flatnonzero(small[other] == row[:, None]), width)
        # Both ends give the same float64 value: the difference only changes sign.
        out[seen[pair]] = out[other[pair].astype(np.int64) * width + slot]
        todo[seen[pair]] = False


def _exact_distances(X, Y, rows, candidates, exclude_self, measure, valid=None):
    """float64 distances from X[rows[i]] to Y[candidates[i]], computed from differences.

    ``measure(rows, cols)``, distances of the pairs (X[rows[i]], Y[cols[i]]), does the
    bulk of the work where given (on the search's GPU); numpy on the CPU otherwise.
    Candidates where ``valid`` is False are not measured (their distance is left 0).
    """
    n, width = candidates.shape
    flat = candidates.reshape(-1)
    measure = measure or functools.partial(_numpy_distances, X, Y)
    out = np.zeros(n * width)
    # A point's distance to itself is exactly 0.
    others = candidates != rows[:, None] if exclude_self else np.ones((n, width), dtype=bool)
    if valid is not None:
        others &= valid
    todo = others.reshape(-1).copy()
    # ``rows`` is always ascending and unique, so this many are all of X.
    if exclude_self and n == len(X) and X.shape[1] >= _MEASURE_ONCE_MIN_FEATURES:
        first = np.flatnonzero((candidates > rows[:, None]) & others)
        if len(first):
            out[first] = measure(first // width, flat[first])
        todo[first] = False
        _copy_pairs_seen_twice(np.where(others, candidates, -1), out, todo)
    pairs = np.flatnonzero(todo)
    if len(pairs):  # none where float64 products gave every distance
        out[pairs] = measure(rows[pairs // width], flat[pairs])
    out = out.reshape(n, width)
    # Squared differences overflow float64 from about 1e154 and lose precision below
    # 1e-154: data at such scales, a pair much nearer than the data's spread (two
    # points 1e-200 apart among points spread over 5), or the rest of the data beside
    # one point at 1e200. Such a pair is measured again in units of its own largest
    # difference; a difference beyond float64's range (data spanning -1.7e308 to
    # 1.7e308) in units of twice that. A distance beyond the range is inf.
    i, j = np.nonzero(~((out >= 2.0**-450) & (out <= 2.0**500)) & others)
    if len(i):
        y, x = Y[candidates[i, j]].astype(np.float64), X[rows[i]].astype(np.float64)
        with np.errstate(over="ignore"):
            diff = y - x
            halved = ~np.isfinite(diff).all(axis=1)
            diff[halved] = y[halved] / 2 - x[halved] / 2
            peak = np.abs(diff).max(axis=1)
            diff /= np.where(peak > 0, peak, 1.0)[:, None]
            out[i, j] = np.where(halved, 2.0, 1.0) * peak * np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _top_k(X, Y, rows, candidates, k, exclude_self, measure, valid=None, known=None):
    """The k nearest of each row's candidates (those ``valid``), by exact (distance, index).

    ``known`` holds distances that float64 products give exactly enough
    (:func:`_product_distances`), NaN where the candidate must be measured. Those
    too near another of their row's to order are measured too.
    """
    todo = valid
    if known is not None:
        todo = np.isnan(known) if valid is None else valid & np.isnan(known)
    dist = _exact_distances(X, Y, rows, candidates, exclude_self, measure, todo)
    if exclude_self:
        dist[candidates == rows[:, None]] = np.inf
    if valid is not None:
        dist[~valid] = np.inf
    if known is not None:
        dist = _measure_close_calls(X, Y, rows, candidates, dist, known, exclude_self, measure)
    order = np.argsort(dist, axis=1)
    # Ties decide by index; argsort does not, and lexsort costs several times more, so
    # only rows with a tie among their first k + 1 are sorted again with it.
    ranked = np.take_along_axis(dist, order[:, : k + 1], axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.lexsort((candidates[tied], dist[tied]), axis=-1)
    order = order[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def _measure_close_calls(X, Y, rows, candidates, dist, known, exclude_self, measure):
    """``dist`` with ``known`` filled in, and measured where products cannot order a row.

    A distance from products lies within ``_PRODUCT_TOLERANCE / 2`` of the true one
    (relatively), so two that close in one row may be in the wrong order: a tie
    between duplicate points, or on a grid, which must be decided by index. Such
    candidates are measured from the vectors, until no product distance in a row
    lies that close to another distance.
    """
    unsure = ~np.isnan(known) & np.isfinite(dist)  # known is inf beyond float64's range
    dist = np.where(unsure, known, dist)
    while True:
        order = np.argsort(dist, axis=1)
        ranked = np.take_along_axis(dist, order, axis=1)
        in_order = np.take_along_axis(unsure, order, axis=1)
        with np.errstate(invalid="ignore"):  # inf - inf beyond a row's window
            close = ranked[:, 1:] - ranked[:, :-1] <= 2 * _PRODUCT_TOLERANCE * ranked[:, 1:]
        # The last candidate in a row's window is not close to the first left out of it
        # (inf - d <= inf).
        close &= np.isfinite(ranked[:, 1:])
        close &= in_order[:, 1:] | in_order[:, :-1]
        if not close.any():
            return dist
        redo = np.zeros_like(in_order)
        redo[:, 1:] |= close
        redo[:, :-1] |= close
        np.put_along_axis(redo, order, redo & in_order, axis=1)
        dist[redo] = _exact_distances(X, Y, rows, candidates, exclude_self, measure, redo)[redo]
        unsure &= ~redo


def _certify(X, Y, rows, candidates, approx, x_norm, y_norm_max, k, exclude_self, scale, measure):
    """The k nearest of each row's float32 candidates, and which rows are proven right.

    The float32 search works on the data divided by ``2**scale``; ``x_norm`` and
    ``y_norm_max`` are norms there. A point that is not a candidate has a float32
    squared distance of at least the largest candidate's, so an exact one of at least
    that minus the error bound. A point within the k-th exact distance r of x has a norm of
    at most |x| + r, which bounds its error better than the largest norm does when x
    lies in a small cluster near the centre. When r^2 is below that, no point that was
    not re-measured can be as near.
    """
    dist, idx = _top_k(X, Y, rows, candidates, k, exclude_self, measure)
    if candidates.shape[1] == len(Y):
        return dist, idx, np.ones(len(rows), dtype=bool)
    r = _divided(dist[:, -1].copy(), scale)
    bound = _error_bound(x_norm, np.minimum(y_norm_max, x_norm + r), X.shape[1], 2.0**-24)
    return dist, idx, r**2 < approx.max(axis=1) - bound


def _slab_features(n_rows: int, dtype) -> int:
    """Features per slab of :func:`_products` for ``n_rows`` rows of A and B together."""
    return _SLAB_FEATURES if dtype == np.float32 else max(1, _SLAB_BYTES // (8 * n_rows))


def _product_terms(n_rows: int, n_features: int, dtype) -> int:
    """The length that bounds the error of :func:`_products`' sums, in ``dtype``'s units.

    Each slab's product errs as a dot product of its width; summing the slabs in
    float64 adds one more term a slab, which in float32's units is under one in all.
    """
    slab = min(n_features, _slab_features(n_rows, dtype))
    return slab + (1 if dtype == np.float32 else -(-n_features // slab))


def _product_distances(d2, x_norm, y_norm, n_terms: int, scale: int) -> np.ndarray:
    """Distances from float64 products where they are as good as measured, NaN elsewhere.

    ``d2`` are squared distances from the products, ``x_norm`` and ``y_norm`` (broadcast
    against it) the norms of their ends, in the products' units (the data divided by
    ``2**scale``). Where the products' error bound is below ``_PRODUCT_TOLERANCE`` of
    the squared distance, the distance is right to half that; nearer pairs (beside
    their distance to the centre) lose digits to cancellation and are left to be
    measured from the vectors.
    """
    bound = _error_bound(x_norm, y_norm, n_terms, 2.0**-53)
    # The bound counts rounding only: products that underflow (points 1e-200 apart
    # beside one at 1e200) err by up to 2**-1074 each, which only this floor makes
    # negligible beside the tolerance.
    proven = (bound <= _PRODUCT_TOLERANCE * d2) & (d2 >= 2.0**-960)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(proven, np.ldexp(np.sqrt(d2), scale), np.nan)


def _products(A, B, center, scale, dtype, device=None):
    """((A - c) / s) @ ((B - c) / s).T and both sets of squared norms, summed in float64.

    The features are cast to ``dtype`` a slab at a time, so no float64 copy of all of
    them is ever made. In float32 a slab is ``_SLAB_FEATURES`` wide and each slab's
    products are float32: their error bound grows with the slab's width, not with all
    features. ``B=None`` multiplies A by itself, which BLAS does in half the products.
    A torch ``device`` (a GPU) multiplies the slabs there and sums them there.
    """
    n_other = 0 if B is None else len(B)
    slab = _slab_features(len(A) + n_other, dtype)
    shape = (len(A), len(A) if B is None else n_other)
    gram = np.zeros(shape) if device is None else _DeviceSum(shape, device)
    a_sq, b_sq = np.zeros(len(A)), np.zeros(n_other)
    # Blocks of A's rows: its products with itself are made at and above the diagonal
    # only, by symmetry, and mirrored once at the end.
    edges = np.linspace(0, len(A), max(1, round(len(A) / _SELF_PRODUCT_ROWS)) + 1).astype(int)
    a_buffer = np.empty(len(A) * min(slab, A.shape[1]), dtype=dtype)
    b_buffer = np.empty(n_other * min(slab, A.shape[1]), dtype=dtype)
    for start in range(0, A.shape[1], slab):
        features = slice(start, start + slab)
        width = min(slab, A.shape[1] - start)
        a = _centred(A[:, features], center[features], scale, dtype, a_buffer[: len(A) * width].reshape(-1, width))
        if B is None and device is None:
            _add_upper_products(gram, a, edges)
        elif B is None:
            gram += (a, a)
        else:
            a_sq += _sq_norms(a)
            b_out = b_buffer[: n_other * width].reshape(-1, width)
            b = _centred(B[:, features], center[features], scale, dtype, b_out)
            b_sq += _sq_norms(b)
            gram += a @ b.T if device is None else (a, b)
    if B is None and device is None:
        for top, bottom in zip(edges[:-1], edges[1:]):
            gram[bottom:, top:bottom] = gram[top:bottom, bottom:].T
    gram = gram if device is None else gram.result()
    if B is None:
        # A's products with itself hold its squared norms, with no more error than the
        # products: the distances they give bound each point's own at exactly 0.
        a_sq = gram.diagonal().copy()
    return gram, a_sq, a_sq if B is None else b_sq


def _add_upper_products(gram, a, edges) -> None:
    """``gram += a @ a.T`` on the blocks of rows between ``edges``, at and above the diagonal.

    numpy's product of a buffer by itself (syrk) makes half the products but then
    copies them across the diagonal, and BLAS runs it below the speed of a general
    product: a diagonal block by itself and the rest of its block row by one general
    product make the same half faster.
    """
    for top, bottom in zip(edges[:-1], edges[1:]):
        block = a[top:bottom]
        gram[top:bottom, top:bottom] += np.dot(block, block.T)
        if bottom < len(a):
            gram[top:bottom, bottom:] += block @ a[bottom:].T


class _DeviceSum:
    """A float64 sum of products a @ b.T of slabs, multiplied and summed on a torch device."""

    def __init__(self, shape, device) -> None:
        import torch

        self._torch = torch
        self._sum = torch.zeros(shape, dtype=torch.float64, device=device)

    def __iadd__(self, slabs):
        torch = self._torch
        with _ieee_float32_matmuls, torch.no_grad():
            a = torch.from_numpy(slabs[0]).to(self._sum.device)
            b = a if slabs[1] is slabs[0] else torch.from_numpy(slabs[1]).to(self._sum.device)
            self._sum += a @ b.T
        return self

    def result(self) -> np.ndarray:
        return self._sum.cpu().numpy()


def _products_fit_at_once(n_rows: int) -> bool:
    """Whether the float64 products of ``n_rows`` rows by themselves fit one batch's budget."""
    return 8 * n_rows**2 <= _BATCH_BYTES


def _product_search(X, Y, rows, k, exclude_self, center, scale, measure, dtype, device=None, groups=None):
    """Neighbours of X[rows] from the products of :func:`_products` with all of Y.

    ``groups``, a pair of arrays (a code per row of X, a code per row of Y), leaves the
    rows of Y in each row's own group out of its neighbours.

    The products give every squared distance within a bound; the true k nearest all
    lie within twice it of the computed k-th (once for them, once for the k-th), and
    those points, measured exactly, give the answer. In float64 the bound is about
    D x 1e-16 of the squared norms, so every row is settled. In float32 slabs it is
    about 1e-4 of them: a row with more than 2k + 2 or ``_MEASURED_WINDOW`` points
    that near, whichever is more (ties, points nearer to each other than that to the
    centre), is left unsettled, for float64.
    A search of all of X against itself takes half the products, by symmetry.

    Returns the k nearest exact distances and indices of each row, and which rows are
    settled (the others' are not filled in).
    """
    unit_roundoff = 2.0**-24 if dtype == np.float32 else 2.0**-53
    symmetric = exclude_self and len(rows) == len(X) and _products_fit_at_once(len(X))
    # Products of data that hold a NaN or an infinity are refused just after.
    quiet = functools.partial(np.errstate, invalid="ignore", over="ignore")
    if symmetric:
        with quiet():
            gram, y_sq, _ = _products(X, None, center, scale, dtype, device)
        _refuse_non_finite_norms(X, Y, y_sq)
    # A chunk of rows holds its float64 squared distances, then a partitioned copy of
    # them, then their int64 order.
    chunk = max(1, _BATCH_BYTES // (24 * len(Y)))
    distances = np.empty((len(rows), k))
    indices = np.empty((len(rows), k), dtype=np.int64)
    settled = np.ones(len(rows), dtype=bool)
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        if symmetric:
            products, x_sq = gram[start : start + chunk], y_sq[block]
        else:
            with quiet():
                products, x_sq, y_sq = _products(X[block], Y, center, scale, dtype, device)
            _refuse_non_finite_norms(X, Y, x_sq, y_sq)
        # In place: each chunk's products are read once, and a temporary of the whole
        # chunk would take a third more than its budget.
        d2 = products
        d2 *= -2.0
        d2 += x_sq[:, None]
        d2 += y_sq
        if exclude_self:
            d2[np.arange(len(block)), block] = np.inf
        if groups is not None:
            d2[groups[0][block][:, None] == groups[1]] = np.inf
        # One selection gives the k-th distance from the products and the window of
        # every row with at most 2k + 2 points within the bound of it (nearly all).
        guess = min(len(Y), 2 * k + 2)
        nearest = _smallest(d2, sorted({k - 1, guess - 1}))
        kth = np.take_along_axis(d2, nearest[:, k - 1 : k], axis=1)[:, 0]
        n_terms = _product_terms(len(X) if symmetric else len(block) + len(Y), Y.shape[1], dtype)
        x_norm, y_norm = np.sqrt(x_sq), np.sqrt(y_sq)
        bound = _error_bound(x_norm, y_norm.max(), n_terms, unit_roundoff)
        limit = (kth + 2 * bound)[:, None]
        counts = np.sum(d2 <= limit, axis=1)
        wide = counts > 2 * k + 2
        everyone = np.arange(len(block))
        # All rows in one window as wide as the most any has, so that pairs found from
        # both ends are measured once; only each row's own are measured (the farther
        # points that a window holds lie beyond the exact k-th anyway). Rows with many
        # more then get windows of their own, so that they do not widen every row's.
        windows = [(everyone, d2, limit, counts[~wide].max() if not wide.all() else counts.max())]
        if dtype == np.float32:
            # Up to a few dozen candidates cost less to measure than float64 products,
            # which centre all of Y again for even one row.
            unsettled = counts > max(2 * k + 2, _MEASURED_WINDOW)
            settled[start + np.flatnonzero(unsettled)] = False
            windows = windows if not wide.all() else []
            wide &= ~unsettled
        if wide.any() and not (dtype == np.float64 and wide.all()):
            windows.append((np.flatnonzero(wide), d2[wide], limit[wide], counts[wide].max()))
        for group, group_d2, group_limit, width in windows:
            if group is everyone and width <= guess:
                window = nearest
            else:  # copied so that the full-width order is freed before re-measuring
                window = np.argpartition(group_d2, width - 1, axis=1)[:, :width].copy()
            window_d2 = np.take_along_axis(group_d2, window, axis=1)
            valid = window_d2 <= group_limit
            known = None
            if dtype == np.float64:
                known = _product_distances(window_d2, x_norm[group, None], y_norm[window], n_terms, scale)
            distances[start + group], indices[start + group] = _top_k(
                X, Y, block[group], window, k, exclude_self, measure, valid, known
            )
        del d2
    return distances, indices, settled


def _refuse_non_finite_norms(X, Y, *sq_norms) -> None:
    """:func:`_refuse_non_finite` where a squared norm from the products is not finite.

    The products' data are divided by a power of two that brings them within 1 (or
    are float32 values, whose float64 squares cannot overflow), so a norm is finite
    exactly where its row is: this is the wide data's finiteness check.
    """
    if not all(np.isfinite(norms).all() for norms in sq_norms):
        _refuse_non_finite(X, Y)


def _smallest(d2, kths) -> np.ndarray:
    """The columns of each row's ``kths[-1] + 1`` smallest values, partitioned at ``kths``.

    Rows are shared among the cores: numpy's partition runs on one.
    """
    width = kths[-1] + 1
    out = np.empty((len(d2), width), dtype=np.intp)

    def part(rows):
        out[rows] = np.argpartition(d2[rows], kths, axis=1)[:, :width]

    list(thread_pool(n_cores()).map(part, row_parts(len(d2))))
    return out


def _float64_search(X, Y, rows, k, exclude_self, center, scale, measure, device=None, groups=None):
    """Exact neighbours of X[rows] by float64 products with all of Y (rows left unproven)."""
    return _product_search(X, Y, rows, k, exclude_self, center, scale, measure, np.float64, device, groups)[:2]


def _float64_first(n_rows: int, k: int) -> bool:
    """Whether float64 products beat float32 slabs for k neighbours of ``n_rows`` rows by themselves."""
    return k * _ROWS_PER_NEIGHBOUR > n_rows or (n_rows < _FEW_ROWS and k >= _FEW_ROWS_NEIGHBOURS)


def _wide_search(X, Y, k, exclude_self, measure, device=None, groups=None):
    """Exact neighbours of all rows of data too wide for the float32 search's bound.

    ``groups``: see :func:`_product_search`.
    """
    rows = np.arange(len(X))
    by_itself = exclude_self and _products_fit_at_once(len(X))
    if device is None and by_itself and _float64_first(len(Y), k):
        # float32 values' float64 squares and products neither overflow nor leave the
        # normal numbers, so only float64 data need dividing by a power of two (a pass
        # over all the data to find it and one over each slab to apply it).
        center = _float64_center(Y)
        scale = 0 if X.dtype == np.float32 else _power_of_two_scale(center, X, Y)
        return _float64_search(X, Y, rows, k, exclude_self, center, scale, measure, groups=groups)
    center = _center(Y)
    scale = _power_of_two_scale(center, X, Y)
    distances, indices, settled = _product_search(
        X, Y, rows, k, exclude_self, center, scale, measure, np.float32, device, groups
    )
    rest = rows[~settled]
    if len(rest):
        distances[rest], indices[rest] = _float64_search(
            X, Y, rest, k, exclude_self, center, scale, measure, device, groups
        )
    return distances, indices


def _on_torch_device(X, Y, backend: str, device):
    """``measure`` and ``device`` of a search that runs in torch on a GPU, else None and None."""
    if backend == "torch":
        device = _torch_device(device)
        if device.type != "cpu":
            # Re-measuring the candidates in float64 is memory bound, and on the CPU
            # it took most of a GPU search's time. The products of wide data and of
            # the float64 scan run there too.
            return _torch_distances(X, Y, device), device
    return None, None


def _checked_points(X, Y):
    """X and Y (X itself where None) as float arrays in the same space, finite.

    Wide data (``_WIDE_FEATURES`` features or more) are shown finite later, by the
    norms their products take (:func:`_product_search`), which saves a pass over them.
    """
    X = check_array(X, dtype=float_dtype(X), input_name="X", ensure_all_finite=False)
    Y = X if Y is None else check_array(Y, dtype=float_dtype(Y), input_name="Y", ensure_all_finite=False)
    if Y.shape[1] != X.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but Y has {Y.shape[1]}; both must describe points in the same space."
        )
    if X.shape[1] < _WIDE_FEATURES:
        _refuse_non_finite(X, Y)
    return X, Y


def _refuse_non_finite(X, Y) -> None:
    """An error that locates the NaN or infinity in the first of X and Y that holds one."""
    check_finite(X, name="X")
    if Y is not X:
        check_finite(Y, name="Y")


def _finite(distances, indices):
    """The search's result, refused if a neighbour lies beyond float64's range."""
    if np.isinf(distances).any():
        raise ValueError(
            f"{int(np.isinf(distances).any(axis=1).sum())} points have neighbours farther than "
            "float64's largest number (about 1.8e308), so their distances cannot be measured; "
            "divide the data by a constant (a power of two changes no neighbour)."
        )
    return distances, indices


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
        for torch (faiss tiles its own products and gets 65,536 queries a batch). A
        search of ``X`` (2,048 rows or more) against itself with faiss on the CPU works
        in its own blocks of at most 1,024 x 1,024 products and ignores it. Beside the
        batch, whatever the backend: rows searched by products summed in float64 (data
        of 4,096 features or more, and rows the float32 search leaves unproven) take
        chunks of at most 256 MiB (24 bytes a pair), features cast a slab of 64 MiB at
        a time, and each re-measuring thread 6 MiB of buffers. Measured on the CPU:
        276 MiB above the data for one torch batch at 20,000 x 784, 294 MiB for a whole
        torch search at 50,000 x 64.
    device : str or int, default=None
        Torch device (``"cpu"``, ``"cuda:1"``) or GPU number. With ``"auto"``, a CPU
        device picks a CPU backend. faiss on the GPU returns at most 2,048 neighbours,
        and a search may ask for 2k + 1 candidates, so searches of k of about 1,024
        or more run in torch on the same GPU.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float64
        Euclidean distances, ascending, exact in float64: measured from the vectors,
        or taken from float64 products where those are proven right to 2**-33 of the
        distance (few points of 4,096 features or more searched against themselves,
        and rows left to the float64 scan); they agree to about 1e-14.
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
    exclude_self = Y is None
    X, Y = _checked_points(X, Y)
    available = len(Y) - exclude_self
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)  # faiss takes Python ints only
    if k > available:
        raise ValueError(f"cannot find k={k} neighbours among {available} other points; use a smaller k or more data.")
    backend = _resolve_backend(backend, device)
    # Two spare candidates prove almost every row right. Rows with ties around the
    # k-th distance are searched again with more, and the few still unproven (more
    # ties than that) are scanned in float64.
    n_cands = sorted({min(k + exclude_self + 2, len(Y)), min(k + exclude_self + max(k, 8), len(Y))})
    if backend == "faiss-gpu" and n_cands[-1] > _FAISS_GPU_MAX_K:
        backend = "torch"  # on the same GPU

    if batch_size is None:
        # faiss tiles its own matrix products, so a batch only bounds its output.
        batch_size = max(1, _BATCH_BYTES // (4 * len(Y))) if backend == "torch" else 65536
    elif batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    measure, gpu = _on_torch_device(X, Y, backend, device)
    if X.shape[1] >= _WIDE_FEATURES:
        return _finite(*_wide_search(X, Y, k, exclude_self, measure, gpu))
    # Centring changes no distance but shrinks |x|^2 and |y|^2, which is where the
    # float32 matrix-product trick loses its precision.
    center = _center(Y)
    # Dividing by a power of two changes no neighbour; without it, squared norms of
    # data near 1e19 overflow float32 and those near 1e-22 fall below its normal
    # numbers, and the error bound below no longer holds.
    scale = _power_of_two_scale(center, X, Y)
    Xc = _centred(X, center, scale, np.float32)
    Yc = Xc if exclude_self else _centred(Y, center, scale, np.float32)
    x_sq = _sq_norms(Xc)
    x_norm = np.sqrt(x_sq)
    y_norm_max = np.sqrt((x_sq if exclude_self else _sq_norms(Yc)).max())
    if backend == "torch":
        search = _torch_search(Yc, device)
    else:
        search = _faiss_search(Yc, backend == "faiss-gpu", device)

    symmetric = exclude_self and backend == "faiss" and len(X) >= _SYMMETRIC_MIN_ROWS
    distances = np.empty((len(X), k))
    indices = np.empty((len(X), k), dtype=np.int64)
    rows = np.arange(len(X))
    for n_cand in n_cands:
        if symmetric and len(rows) == len(X):
            # faiss' thread count honours OMP_NUM_THREADS and threadpoolctl limits.
            approx, candidates = symmetric_candidates(Xc, x_sq, n_cand, _faiss().omp_get_max_threads())
        else:
            queries = Xc if len(rows) == len(X) else Xc[rows]
            approx, candidates = _search(search, queries, n_cand, batch_size)
        dist, idx, settled = _certify(
            X, Y, rows, candidates, approx, x_norm[rows], y_norm_max, k, exclude_self, scale, measure
        )
        distances[rows[settled]], indices[rows[settled]] = dist[settled], idx[settled]
        rows = rows[~settled]
        if not len(rows):
            return _finite(distances, indices)
    distances[rows], indices[rows] = _float64_search(X, Y, rows, k, exclude_self, center, scale, measure, gpu)
    return _finite(distances, indices)


def closest_pair(X, groups, *, Y=None, Y_groups=None, backend: str = "auto") -> tuple[float, tuple[int, int]]:
    """The two nearest rows in different groups, exactly: of ``X``, or of ``X`` and ``Y``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points.
    groups : array-like of shape (n_samples,)
        A group (a label) per row of ``X``.
    Y : array-like of shape (n_points, n_features), default=None
        Points to pair with those of ``X``; ``None`` pairs the rows of ``X`` with each
        other.
    Y_groups : array-like of shape (n_points,), default=None
        A group per row of ``Y``, compared with ``groups`` by equality.
    backend : {"auto", "faiss", "faiss-gpu", "torch"}, default="auto"
        See :func:`kneighbors`.

    Returns
    -------
    distance : float
        Their Euclidean distance, exact in float64.
    pair : tuple of (int, int)
        Their rows: ``(i, j)`` of ``X``, ``i < j``, or row ``i`` of ``X`` and row ``j``
        of ``Y``; of pairs at the same distance, the first ``(i, j)`` in order.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [1.5], [4.0], [3.5]])
    >>> closest_pair(X, ["a", "a", "b", "b", "a"])
    (0.5, (1, 2))
    >>> closest_pair([[3.75]], ["b"], Y=X, Y_groups=["a", "a", "b", "b", "a"])
    (0.25, (0, 4))
    """
    by_itself = Y is None
    X, Y = _checked_points(X, Y)
    if by_itself and Y_groups is not None:
        raise ValueError("Y_groups was given without Y: pass Y too, or leave Y_groups out.")
    given = [("groups", groups, "X", len(X))] + ([] if by_itself else [("Y_groups", Y_groups, "Y", len(Y))])
    for name, values, of, n_rows in given:
        if values is None or np.shape(values) != (n_rows,):
            shape = None if values is None else np.shape(values)
            raise ValueError(f"{name} must hold one group per row of {of} ({n_rows}), got shape {shape}")
    x_groups, x_codes = np.unique(np.asarray(groups), return_inverse=True)
    x_codes = y_codes = x_codes.reshape(-1)
    if not by_itself:
        # X's groups coded as Y's where they are equal (as == finds them: 1 == 1.0 but
        # not "1"), and beyond Y's codes where Y has no such group.
        y_groups, y_codes = np.unique(np.asarray(Y_groups), return_inverse=True)
        code_of = {group: code for code, group in enumerate(y_groups.tolist())}
        recoded = [code_of.get(group, len(y_groups) + i) for i, group in enumerate(x_groups.tolist())]
        x_codes, y_codes = np.asarray(recoded, dtype=np.int64)[x_codes], y_codes.reshape(-1)
    # Rows of X in the one group that all of Y is in have no pair.
    rows = np.flatnonzero((x_codes != y_codes[0]) | (y_codes != y_codes[0]).any())
    if not len(rows):
        raise ValueError("groups must hold at least two different groups: there is no pair to find")
    backend = _resolve_backend(backend)
    one_product = X.shape[1] >= _WIDE_FEATURES and (not by_itself or _products_fit_at_once(len(X)))
    if X.shape[1] >= _WIDE_FEATURES and not (one_product and len(rows) == len(X)):
        # Wide data are shown finite by their products' norms, and no product here
        # takes them all: rows of X that have no pair, the rows of Y in X's only group.
        _refuse_non_finite(X, Y)
    if one_product:
        # One product of X with Y, with each row's own group masked out, serves every
        # group: a search per group would centre and cast Y's other rows again.
        Xs = X if by_itself or len(rows) == len(X) else X[rows]
        measure, device = _on_torch_device(Xs, Y, backend, None)
        found = _wide_search(Xs, Y, 1, by_itself, measure, device, groups=(x_codes[rows], y_codes))
        d, b = (column[:, 0] for column in _finite(*found))
        # float64 products give a distance right to 2**-33 of itself: rows that near
        # the nearest are measured, so that ties are ordered as measured distances are.
        near = np.flatnonzero(d <= d.min() * (1 + 2.0**-30))
        d, a, b = _exact_distances(Xs, Y, near, b[near, None], False, measure)[:, 0], rows[near], b[near]
    else:
        # Each group against the others (by itself: the groups after it, so that each
        # pair is searched once).
        found = []
        for code in np.unique(x_codes[rows]):
            queries = np.flatnonzero(x_codes == code)
            points = np.flatnonzero(y_codes > code if by_itself else y_codes != code)
            if len(points):
                dist, idx = kneighbors(X[queries], 1, Y=Y[points], backend=backend)
                found.append((queries, points[idx[:, 0]], dist[:, 0]))
        a, b, d = (np.concatenate(parts) for parts in zip(*found))
    if by_itself:
        a, b = np.minimum(a, b), np.maximum(a, b)
    first = np.lexsort((b, a, d))[0]
    return float(d[first]), (int(a[first]), int(b[first]))
