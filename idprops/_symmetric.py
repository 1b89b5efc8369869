"""Float32 nearest candidates of every row of X among the rows of X, half the products.

A search of X against itself computes every distance twice, once from each end. Here
the rows are cut into blocks and each pair of blocks (I, J), I <= J, is multiplied
once: the product's rows feed the heaps of I's rows, and its columns feed the heaps
of J's rows. Reading a column needs no transposed copy (numpy's transpose costs more
than the product at D = 64): a column's values are compared with its row's current
worst candidate and only the few below it are gathered and pushed.

Threads work on disjoint pairs of blocks (a round-robin schedule), so no two threads
ever touch the same heap and no lock is needed.
"""

from __future__ import annotations

import threading

import numpy as np

from ._threads import single_threaded_native, thread_pool

__all__ = ["symmetric_candidates"]

# Rows per block: a 1024 x 1024 float32 product (4 MiB) stays in a core's share of the
# cache for the two passes that read it (benchmarks/TUNING.md has the figures behind
# this module's choices).
_BLOCK = 1024


def _round_robin(n_blocks: int) -> list[list[tuple[int, int]]]:
    """Rounds of disjoint off-diagonal block pairs covering every pair once (circle method)."""
    m = n_blocks + n_blocks % 2
    seats = list(range(m))
    rounds = []
    for _ in range(m - 1):
        pairs = [(seats[i], seats[m - 1 - i]) for i in range(m // 2)]
        rounds.append([(min(p), max(p)) for p in pairs if max(p) < n_blocks])
        seats = [seats[0], seats[-1], *seats[1:-1]]
    return rounds


def _augment(X, sq, left: bool) -> np.ndarray:
    """[-2x, |x|^2, 1] (left) or [x, 1, |x|^2] (right): their product is |x - y|^2."""
    out = np.empty((len(X), X.shape[1] + 2), dtype=np.float32)
    np.multiply(X, -2 if left else 1, out=out[:, :-2])
    out[:, -2], out[:, -1] = (sq, 1) if left else (1, sq)
    return out


def symmetric_candidates(X: np.ndarray, sq_norms: np.ndarray, n_cand: int, n_threads: int):
    """The n_cand float32-nearest rows of X to every row of X, the row itself included.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32, C-contiguous
        Points, best centred (the product trick loses precision with large norms).
    sq_norms : ndarray of shape (n,)
        Squared norms of the rows (rounded to float32 here).
    n_cand : int
        Candidates per row, at most n.
    n_threads : int
        Worker threads; BLAS and OpenMP run single-threaded inside each.

    Returns
    -------
    sq_distances : ndarray of shape (n, n_cand), float32
        Squared distances as ``|x|^2 + |y|^2 - 2 x.y`` in float32, in no particular
        order: sorting them (faiss' reorder) costs a visible share of a small search,
        and the caller re-ranks them exactly anyway.
    indices : ndarray of shape (n, n_cand), int64
    """
    import faiss

    n = len(X)
    block = min(_BLOCK, max(128, -(-n // 8)))
    starts = range(0, n, block)
    sq = sq_norms.astype(np.float32)
    # Heaps of nothing but the largest float are valid max-heaps. faiss' heapify writes
    # the same, far more slowly here than on its own: its OpenMP threads, woken after
    # numpy's, are the likely cause.
    dist = np.full((n, n_cand), np.finfo(np.float32).max, dtype=np.float32)
    idx = np.full((n, n_cand), -1, dtype=np.int64)
    heaps = faiss.float_maxheap_array_t()
    heaps.k, heaps.nh = n_cand, n
    heaps.val, heaps.ids = faiss.swig_ptr(dist), faiss.swig_ptr(idx)
    worst = dist[:, 0]  # a max-heap keeps its largest value first
    local = threading.local()

    def pair(blocks):
        i, j = starts[blocks[0]], starts[blocks[1]]
        rows, cols = slice(i, i + block), slice(j, j + block)
        ni, nj = min(block, n - i), min(block, n - j)
        if not hasattr(local, "product"):
            local.product = np.empty(block * block, dtype=np.float32)
            local.below = np.empty(block * block, dtype=bool)
        product = local.product[: ni * nj].reshape(ni, nj)
        np.matmul(_augment(X[rows], sq[rows], True), _augment(X[cols], sq[cols], False).T, out=product)
        heaps.addn(nj, faiss.swig_ptr(product), j, i, ni)
        if i == j:
            return
        below = local.below[: ni * nj].reshape(ni, nj)
        # A contiguous copy of the heads: comparing through the strided view is slower.
        np.less(product, worst[cols].copy()[None, :], out=below)
        hits = np.flatnonzero(below.reshape(-1))
        if not len(hits):
            return
        # Push each column's hits as one row of a padded (nj, width) array.
        r, c = np.divmod(hits, nj)
        # Block columns fit int16, whose stable sort is a radix sort.
        order = np.argsort(c.astype(np.int16), kind="stable")
        r, c, values = r[order], c[order], product.reshape(-1)[hits[order]]
        counts = np.bincount(c, minlength=nj)
        width = int(counts.max())
        rank = np.arange(len(c)) - (np.cumsum(counts) - counts)[c]
        pad_values = np.full((nj, width), np.inf, dtype=np.float32)
        pad_ids = np.full((nj, width), -1, dtype=np.int64)
        pad_values[c, rank], pad_ids[c, rank] = values, r + i
        heaps.addn_with_ids(width, faiss.swig_ptr(pad_values), faiss.swig_ptr(pad_ids), width, j, nj)

    # Diagonal blocks first: every heap then holds candidates and a useful worst value
    # before the column filters start reading it.
    rounds = [[(b, b) for b in range(len(starts))], *_round_robin(len(starts))]
    with single_threaded_native():
        for pairs in rounds:
            list(thread_pool(n_threads).map(pair, pairs))
    return dist, idx
