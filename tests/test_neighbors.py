import multiprocessing
import os

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from idprops._threads import n_cores
from idprops.neighbors import available_backends, kneighbors

BACKENDS = [b for b in ("faiss", "faiss-gpu", "torch") if b in available_backends()]


def brute_force(X, k, Y=None):
    """Reference: all pairwise distances in float64, ties broken by index."""
    self_query = Y is None
    Y = X if self_query else Y
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    if self_query:
        np.fill_diagonal(D, np.inf)
    idx = np.array([np.lexsort((np.arange(len(Y)), row))[:k] for row in D])
    return np.take_along_axis(D, idx, axis=1), idx


def assert_same_neighbours(X, k, Y=None, **kwargs):
    dist, idx = kneighbors(X, k, Y=Y, **kwargs)
    ref_dist, ref_idx = brute_force(X, k, Y)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)
    ref_points = X if Y is None else Y
    # With ties, another neighbour at exactly the same distance is equally right:
    # check that every index is distinct, is not the query and lies at that distance.
    own = np.linalg.norm(ref_points[idx].astype(np.float64) - X[:, None, :].astype(np.float64), axis=2)
    np.testing.assert_allclose(own, dist, rtol=1e-12, atol=0)
    assert all(len(set(row)) == k for row in idx)
    if Y is None:
        assert not np.any(idx == np.arange(len(X))[:, None])
    return dist, idx, ref_idx


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_data_matches_brute_force(backend, dtype, rng):
    X = rng.standard_normal((300, 17)).astype(dtype)
    _, idx, ref_idx = assert_same_neighbours(X, 7, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)  # no ties in continuous data


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_found_from_both_ends_are_measured_once(backend, rng, monkeypatch):
    # With 128 features or more, a pair that is each end's candidate is measured in
    # float64 once and its distance copied to the other end.
    import idprops.neighbors as nb

    measured = []
    real = nb._numpy_distances
    monkeypatch.setattr(
        nb, "_numpy_distances", lambda X, Y, rows, cols: measured.append(len(rows)) or real(X, Y, rows, cols)
    )
    # A 3-D subspace: there most neighbours are mutual (not so among Gaussian points
    # in 200 dimensions, where a few hubs are everyone's neighbour).
    X = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 200))
    X[150] = X[20]  # a duplicate pair: distance 0 from both ends, not only from itself
    _, idx, ref_idx = assert_same_neighbours(X, 7, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    # 300 rows with 7 + 1 + 2 candidates each: 2,700 pairs besides the rows themselves
    # (1,734 of them measured here).
    assert sum(measured) < 0.7 * 2700


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_on_a_grid(backend):
    g = np.arange(6.0)
    X = np.array(np.meshgrid(g, g, g)).reshape(3, -1).T  # many equal distances
    dist, idx, ref_idx = assert_same_neighbours(X, 6, backend=backend)
    assert dist[0, 0] == 1.0
    np.testing.assert_array_equal(idx, ref_idx)  # ties ordered by index, as promised


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_at_the_kth_distance_are_searched_again_with_more_candidates(backend, monkeypatch):
    # An inner grid point has six neighbours at distance 1: with k = 4 the two spare
    # candidates of the first search are tied with the 4th, so those rows cannot be
    # proven right from it; the wider second search (which reaches sqrt(2)) can.
    import idprops.neighbors as nb

    searched = []
    real, real_symmetric = nb._search, nb.symmetric_candidates
    monkeypatch.setattr(nb, "_search", lambda search, X, *a: searched.append(len(X)) or real(search, X, *a))
    monkeypatch.setattr(nb, "symmetric_candidates", lambda X, *a: searched.append(len(X)) or real_symmetric(X, *a))
    monkeypatch.setattr(nb, "_float64_search", lambda *a: pytest.fail("float64 scan used"))
    g = np.arange(6.0)
    X = np.array(np.meshgrid(g, g, g)).reshape(3, -1).T
    _, idx, ref_idx = assert_same_neighbours(X, 4, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    inner = np.all((X > 0) & (X < 5), axis=1).sum()
    assert searched[0] == len(X) and inner <= searched[1] < len(X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_ties_than_candidates_take_the_float64_path(backend, monkeypatch):
    # On a 3-D grid an inner point's 7th neighbour ties with eleven others at sqrt(2):
    # more than the float32 search's spare candidates, so no row can be proven right
    # from them and the float64 scan must settle it.
    import idprops.neighbors as nb

    calls = []
    real = nb._float64_search
    monkeypatch.setattr(nb, "_float64_search", lambda *a: calls.append(len(a[2])) or real(*a))
    g = np.arange(6.0)
    X = np.array(np.meshgrid(g, g, g)).reshape(3, -1).T
    _, idx, ref_idx = assert_same_neighbours(X, 7, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    assert calls and calls[0] > 0


@pytest.mark.skipif("faiss" not in BACKENDS, reason="the symmetric search uses faiss' heaps")
@pytest.mark.parametrize("n_threads", [1, 3])
def test_symmetric_blocks_match_brute_force(monkeypatch, rng, n_threads):
    # 11 blocks of 40 rows and a last one of 17: an odd count (a bye in every round of
    # the schedule), a short block, and heaps that are not full after the diagonal.
    import faiss

    import idprops._symmetric as sym
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_SYMMETRIC_MIN_ROWS", 0)
    monkeypatch.setattr(sym, "_BLOCK", 40)
    monkeypatch.setattr(faiss, "omp_get_max_threads", lambda: n_threads)
    calls = []
    real = nb.symmetric_candidates
    monkeypatch.setattr(nb, "symmetric_candidates", lambda X, *a: calls.append(len(X)) or real(X, *a))
    X = rng.standard_normal((457, 9))
    _, idx, ref_idx = assert_same_neighbours(X, 45, backend="faiss")
    assert calls == [457]
    np.testing.assert_array_equal(idx, ref_idx)
    X32 = X.astype(np.float32)
    approx, candidates = sym.symmetric_candidates(X32, np.einsum("ij,ij->i", X32, X32), 45, n_threads)
    # The candidates come in no particular order; each row's own is the nearest.
    order = np.argsort(approx, axis=1, kind="stable")
    approx, candidates = np.take_along_axis(approx, order, 1), np.take_along_axis(candidates, order, 1)
    np.testing.assert_array_equal(candidates[:, 0], np.arange(len(X)))
    ref_dist, ref_candidates = brute_force(X, 44)
    np.testing.assert_array_equal(np.sort(candidates[:, 1:], axis=1), np.sort(ref_candidates, axis=1))
    np.testing.assert_allclose(np.sqrt(np.maximum(approx[:, 1:], 0)), ref_dist, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.filterwarnings("ignore:.*fork:DeprecationWarning")
def test_a_forked_child_searches_with_threads_of_its_own(rng):
    # The search keeps its worker threads between calls; a forked child inherits the
    # pools without their threads and would wait on them forever.
    X = rng.standard_normal((3000, 8))
    expected = kneighbors(X, 5)  # the parent's pools now exist
    with multiprocessing.get_context("fork").Pool(1) as pool:
        dist, idx = pool.apply_async(kneighbors, (X, 5)).get(timeout=120)
    np.testing.assert_array_equal(idx, expected[1])
    np.testing.assert_array_equal(dist, expected[0])


@pytest.mark.skipif("faiss" not in BACKENDS, reason="the symmetric search uses faiss' heaps")
def test_symmetric_search_gives_back_the_thread_limits_it_found(monkeypatch, rng):
    # The search runs BLAS and OpenMP single-threaded inside its own threads, through
    # a controller made once: whatever limits are in force before must be after.
    from threadpoolctl import threadpool_info, threadpool_limits

    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_SYMMETRIC_MIN_ROWS", 0)
    X = rng.standard_normal((300, 4))

    def limits():
        return [lib["num_threads"] for lib in threadpool_info()]

    before = limits()
    kneighbors(X, 3)
    assert limits() == before
    with threadpool_limits(3):  # not the machine's default, so not what was first seen
        three = limits()
        kneighbors(X, 3)
        assert limits() == three
    assert limits() == before


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 12])
def test_round_robin_pairs_every_block_once_in_disjoint_rounds(n_blocks):
    from idprops._symmetric import _round_robin

    rounds = _round_robin(n_blocks)
    pairs = [p for r in rounds for p in r]
    assert sorted(pairs) == [(i, j) for i in range(n_blocks) for j in range(i + 1, n_blocks)]
    for r in rounds:
        blocks = [b for p in r for b in p]
        assert len(blocks) == len(set(blocks))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.bool_, np.float16])
def test_small_dtypes_are_searched_in_float32_exactly(dtype, rng):
    from idprops.neighbors import float_dtype

    # float16 activations once became float64: over 3x their memory for nothing.
    X = rng.integers(0, 2 if dtype is np.bool_ else 100, (400, 12)).astype(dtype)
    if dtype is np.float16:
        X = (X / 7).astype(dtype)
    assert float_dtype(X) is np.float32
    dist, idx = kneighbors(X, 5, Y=X[:300])
    ref_dist, ref_idx = kneighbors(X.astype(np.float64), 5, Y=X[:300].astype(np.float64))
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


def test_no_float32_error_bound_from_2_to_the_24_features():
    from idprops.neighbors import _error_bound

    # (D + 2) u >= 1: the bound's formula turns negative and would prove every row.
    bound = _error_bound(np.array([1.0, 2.0]), 1.0, 2**24, 2.0**-24)
    np.testing.assert_array_equal(bound, [np.inf, np.inf])
    assert np.all(_error_bound(np.array([1.0, 2.0]), 1.0, 2**24 - 3, 2.0**-24) > 0)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_overlapping_torch_searches_keep_the_callers_matmul_precision(rng):
    import threading

    import torch

    import idprops.neighbors as nb

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        # Search A starts, B starts, A ends, B ends: each once saved the setting it
        # found and restored it, so B put back A's "highest" for good.
        nb._ieee_float32_matmuls.__enter__()
        nb._ieee_float32_matmuls.__enter__()
        assert torch.get_float32_matmul_precision() == "highest"
        nb._ieee_float32_matmuls.__exit__(None, None, None)
        assert torch.get_float32_matmul_precision() == "highest"  # B still searching
        nb._ieee_float32_matmuls.__exit__(None, None, None)
        assert torch.get_float32_matmul_precision() == "high"
        X = rng.standard_normal((200, 8)).astype(np.float32)
        threads = [
            threading.Thread(target=lambda: [kneighbors(X, 3, backend="torch", device="cpu") for _ in range(20)])
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_wide_integers_stay_float64():
    from idprops.neighbors import float_dtype

    # 2**24 + 1 has no float32; int32 and int64 are not narrowed.
    assert float_dtype(np.array([[2**24 + 1]], dtype=np.int32)) == [np.float64, np.float32]
    assert float_dtype([[1, 2]]) == [np.float64, np.float32]


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_duplicates_are_neighbours_at_zero(backend, rng):
    X = rng.standard_normal((200, 5))
    X = np.vstack([X, X[:20]])  # rows 200..219 repeat rows 0..19
    dist, idx, _ = assert_same_neighbours(X, 4, backend=backend)
    assert np.all(dist[:20, 0] == 0) and np.all(idx[:20, 0] == np.arange(200, 220))
    assert np.all(idx[200:, 0] == np.arange(20))


@pytest.mark.parametrize("backend", BACKENDS)
def test_separate_queries(backend, rng):
    X = rng.standard_normal((50, 8))
    Y = rng.standard_normal((400, 8))
    _, idx, ref_idx = assert_same_neighbours(X, 5, Y=Y, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_batches_give_the_same_answer(backend, rng):
    X = rng.standard_normal((257, 6))
    full = kneighbors(X, 3, backend=backend)
    batched = kneighbors(X, 3, backend=backend, batch_size=10)
    np.testing.assert_array_equal(full[1], batched[1])
    np.testing.assert_array_equal(full[0], batched[0])


def _rows_per_pass(monkeypatch):
    """Lists that fill with the rows of each float32 search and those of the float64 scan."""
    import idprops.neighbors as nb

    searched, scanned = [], []
    real, real_scan = nb._search, nb._float64_search
    monkeypatch.setattr(nb, "_search", lambda search, X, *a: searched.append(len(X)) or real(search, X, *a))
    monkeypatch.setattr(nb, "_float64_search", lambda *a: scanned.extend(a[2]) or real_scan(*a))
    return searched, scanned


@pytest.mark.parametrize("backend", BACKENDS)
def test_far_outliers_do_not_stop_other_rows_being_proven(backend, rng, monkeypatch):
    # The float32 error grows with the norms involved. Three points 1,000 times farther
    # out than the rest must not give every row the outliers' error bound: a point
    # within a row's k-th distance r has a norm of at most |x| + r. (The outliers' own
    # rows may need the float64 scan.)
    searched, scanned = _rows_per_pass(monkeypatch)
    X = rng.standard_normal((300, 20))
    X[:3] *= 1e3
    _, idx, ref_idx = assert_same_neighbours(X, 5, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    assert searched[0] == 300 and all(n <= 3 for n in searched[1:])
    assert set(scanned) <= {0, 1, 2}


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_corrupted_sample_does_not_send_every_row_to_the_float64_scan(backend, rng, monkeypatch):
    # The mean would move 300 towards a row at 1e6 and leave no row provable in
    # float32; the search's centre is a median, which stays with the other rows.
    searched, scanned = _rows_per_pass(monkeypatch)
    X = rng.standard_normal((3000, 20))
    X[0] = 1e6
    _, idx, ref_idx = assert_same_neighbours(X, 5, backend=backend)
    np.testing.assert_array_equal(idx, ref_idx)
    assert all(n <= 1 for n in searched[1:]) and set(scanned) <= {0}


def test_float64_products_centre_only_data_with_an_offset(rng):
    # A median of a few rows centres the float64 products where it shrinks the norms;
    # data around the origin (N(0, 1), sparse activations) are only cast, one pass less.
    import idprops.neighbors as nb

    X = rng.standard_normal((720, 300)).astype(np.float32)
    assert not nb._float64_center(X).any()
    assert not nb._float64_center(np.maximum(X - 0.5, 0)).any()
    shifted = X + 100
    center = nb._float64_center(shifted)
    assert np.all(np.abs(center - 100) < 2)
    np.testing.assert_array_equal(center, np.median(shifted[::80], axis=0))  # 9 rows: the median is one


def test_float64_products_are_taken_first_for_many_neighbours_of_few_rows():
    # The crossovers measured in benchmarks/TUNING.md: from k = 3 below 1,500 rows,
    # from k > n / 150 above.
    import idprops.neighbors as nb

    assert [nb._float64_first(720, k) for k in (1, 2, 3, 20)] == [False, False, True, True]
    assert [nb._float64_first(200, k) for k in (1, 2)] == [False, True]
    assert [nb._float64_first(2000, k) for k in (3, 13, 14)] == [False, False, True]


def test_float32_data_are_centred_in_float64_for_the_float64_scan():
    # The scan's error bound assumes float64 rounding of the centred data.
    from idprops.neighbors import _centred

    A, center = np.float32([[0.1, 3000.7]]), np.float32([1234.5678, 0.3])
    np.testing.assert_array_equal(
        _centred(A, center, 1, np.float64), (A.astype(np.float64) - center.astype(np.float64)) / 2
    )


def test_two_tiny_clusters_far_apart_are_settled_by_the_float64_scan(rng, monkeypatch):
    # Half the points on each side, so the centre (a median) lies 1e10 from one of the
    # clusters, whose points are 1e-10 apart: float32 cannot prove any of them, and each
    # of their rows reaches the scan with its whole cluster in its window.
    import idprops.neighbors as nb

    scanned = []
    real = nb._float64_search
    monkeypatch.setattr(nb, "_float64_search", lambda *a: scanned.append(len(a[2])) or real(*a))
    X = rng.standard_normal((400, 5)) * 1e-10
    X[200:] += 1e10
    _, idx, ref_idx = assert_same_neighbours(X, 6)
    np.testing.assert_array_equal(idx, ref_idx)
    assert scanned and scanned[0] >= 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_points_far_from_origin_keep_their_distances(backend, rng):
    # The float32 matrix-product trick returns 0 for such pairs; re-ranking must not.
    X = 1000.0 + rng.standard_normal((100, 30)) * 1e-3
    dist, _ = kneighbors(X.astype(np.float32), 2, backend=backend)
    assert np.all(dist > 0)
    ref, _ = brute_force(X.astype(np.float32), 2)
    np.testing.assert_allclose(dist, ref, rtol=1e-12)


# Unscaled, float32 squared norms overflow near 1e19 and leave the normal numbers near
# 1e-22, and float64 squares do so near 1e+-154: each of these once gave wrong
# neighbours without a warning.
SCALES = [1e-300, 1e-160, 1e-22, 1e19, 1e160, 1e300]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", SCALES)
# Squares that overflow are measured again; the first try must not warn the user.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_neighbours_do_not_depend_on_the_scale_of_the_data(backend, scale, rng):
    X = rng.standard_normal((300, 6))
    Y = rng.standard_normal((80, 6))
    for queries, points, k in [(X, None, 5), (Y, X, 3)]:
        ref_dist, ref_idx = brute_force(queries, k, points)
        dist, idx = kneighbors(queries * scale, k, Y=None if points is None else points * scale, backend=backend)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(dist, ref_dist * scale, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_far_nearer_or_farther_than_the_spread_keep_exact_distances(backend, rng):
    # Squared differences of 1e-200 underflow to 0 and those of 1e200 overflow, where
    # the rest of the data would be measured as it is; so would the rest beside one
    # point at 1e200, in the units that point sets.
    X = np.array([[1e-200, 0.0], [2e-200, 0.0], [5.0, 5.0]])
    dist, idx = kneighbors(X, 1, backend=backend)
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 0])
    np.testing.assert_allclose(dist[:, 0], [1e-200, 1e-200, np.hypot(5.0, 5.0)], rtol=1e-15)
    X = rng.standard_normal((60, 3))
    ref_dist, ref_idx = brute_force(X[1:], 3)
    X[0] = 1e200
    dist, idx = kneighbors(X, 3, backend=backend)
    np.testing.assert_array_equal(idx[1:] - 1, ref_idx)
    np.testing.assert_allclose(dist[1:], ref_dist, rtol=1e-14)
    np.testing.assert_allclose(dist[0], 1e200 * np.sqrt(3), rtol=1e-14)


@pytest.mark.skipif("faiss" not in BACKENDS, reason="the symmetric search uses faiss' heaps")
@pytest.mark.parametrize(
    "scale", [2.0**e for e in (-1000, -530, -75, 63, 530, 1000)], ids=lambda s: f"2^{np.log2(s):.0f}"
)
def test_symmetric_search_and_float64_scan_do_not_depend_on_the_scale(scale, monkeypatch):
    # k = 7 on a grid: more ties than spare candidates, so the float64 scan runs too.
    # Powers of two keep the grid's ties exact.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_SYMMETRIC_MIN_ROWS", 0)
    g = np.arange(6.0)
    X = np.array(np.meshgrid(g, g, g)).reshape(3, -1).T
    ref_dist, ref_idx = brute_force(X, 7)
    dist, idx = kneighbors(X * scale, 7, backend="faiss")
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist * scale, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [2.0**-140, 2.0**-60, 2.0**60, 2.0**120], ids=lambda s: f"2^{np.log2(s):.0f}")
def test_float64_products_of_float32_data_need_no_scale(scale, monkeypatch, rng):
    # The float64 route leaves float32 data undivided: their squares and products stay
    # within float64's normal numbers even at float32's extremes (2**-140 is subnormal).
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    X = (rng.standard_normal((60, 40)) * scale).astype(np.float32)
    X[30:35] = X[29]  # duplicates: ties ordered by index
    ref_dist, ref_idx = brute_force(X.astype(np.float64), 8)
    dist, idx = kneighbors(X, 8)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)


def test_backends_agree(rng):
    X = rng.standard_normal((500, 20))
    results = [kneighbors(X, 10, backend=b) for b in BACKENDS]
    for dist, idx in results[1:]:
        np.testing.assert_array_equal(idx, results[0][1])
        np.testing.assert_array_equal(dist, results[0][0])


def test_auto_picks_an_available_backend(rng):
    X = rng.standard_normal((40, 3))
    np.testing.assert_array_equal(kneighbors(X, 2)[1], brute_force(X, 2)[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 10}, "k=10 neighbours among 9"),
        ({"k": 0}, "positive integer"),
        ({"k": 2, "backend": "annoy"}, "backend must be one of"),
        ({"k": 2, "Y": np.zeros((5, 4))}, "X has 3 features but Y has 4"),
        ({"k": 2, "batch_size": 0}, "batch_size must be positive"),
    ],
)
def test_bad_arguments(kwargs, message):
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match=message):
        kneighbors(X, **kwargs)


def test_nan_is_rejected():
    X = np.ones((5, 2))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kneighbors(X, 1)


@pytest.mark.parametrize("route", ["float32", "float64", "by group"])
@pytest.mark.parametrize("where", ["X", "Y"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_wide_data_are_shown_finite_by_their_products(route, where, value, monkeypatch, rng):
    # Wide data skip the finiteness pass of narrow ones: the squared norms their
    # products take tell, and the error locates the value all the same. closest_pair
    # checks rows that no product takes (a group with no pair) itself.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    monkeypatch.setattr(nb, "_float64_first", lambda n_rows, k: route == "float64")
    if route == "by group":
        monkeypatch.setattr(nb, "_products_fit_at_once", lambda n_rows: False)
    X, Y = rng.standard_normal((60, 40)), rng.standard_normal((50, 40))
    (X if where == "X" else Y)[7, 3] = value
    kind = "NaN" if np.isnan(value) else "infinity"
    message = rf"Input {where} contains {kind} in 1 of {60 if where == 'X' else 50} samples \(the first: sample 7, feature 3\)"
    with pytest.raises(ValueError, match=message):
        kneighbors(X, 3, Y=Y)
    if where == "X":
        with pytest.raises(ValueError, match=message):
            kneighbors(X, 3)
        with pytest.raises(ValueError, match=message):
            nb.closest_pair(X, np.arange(60) % 3)
    groups, y_groups = np.zeros(60), np.arange(50) % 2  # all of X in one of Y's groups
    with pytest.raises(ValueError, match=message):
        nb.closest_pair(X, groups, Y=Y, Y_groups=np.where(np.arange(50) == 7, 0, y_groups))


@pytest.mark.skipif("faiss-gpu" in BACKENDS, reason="faiss GPU support is present")
def test_unavailable_backend_says_how_to_install():
    with pytest.raises(ValueError, match="idprops\\[gpu\\]"):
        kneighbors(np.zeros((3, 2)), 1, backend="faiss-gpu")


def _cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_torch_on_cuda_matches_brute_force(rng):
    X = rng.standard_normal((2000, 64)).astype(np.float32)
    _, idx, ref_idx = assert_same_neighbours(X, 10, backend="torch", device="cuda")
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
@pytest.mark.parametrize("separate_y", [False, True])
def test_torch_re_measuring_equals_numpys(separate_y, rng):
    # On a GPU the candidates are re-measured there; the same code runs on the CPU.
    import idprops.neighbors as nb

    X = np.asfortranarray(rng.standard_normal((500, 33)))
    Y = rng.standard_normal((400, 33)).astype(np.float32) if separate_y else X
    Y.flags.writeable = False
    rows, cols = rng.integers(0, len(X), 2700), rng.integers(0, len(Y), 2700)
    measured = nb._torch_distances(X, Y, "cpu")(rows, cols)
    np.testing.assert_allclose(measured, nb._numpy_distances(X, Y, rows, cols), rtol=1e-14)
    ref = np.linalg.norm(Y[cols].astype(np.float64) - X[rows], axis=1)
    np.testing.assert_allclose(measured, ref, rtol=1e-14)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
@pytest.mark.parametrize("case", ["random", "grid", "duplicates", "separate", "wide", "flipped", 1e-300, 1e300])
def test_search_re_measured_by_torch_matches_brute_force(case, monkeypatch, rng):
    # The whole search (both passes, the float64 scan, pairs re-measured at extreme
    # scales, pairs measured once from two ends) with the torch re-measuring that a GPU uses, here run on the CPU.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_numpy_distances", lambda X, Y, rows, c: nb._torch_distances(X, Y, "cpu")(rows, c))
    X, Y = rng.standard_normal((300, 6)), None
    if case == "grid":
        X = np.indices((6, 6, 6)).reshape(3, -1).T.astype(float)
    elif case == "duplicates":
        X = np.vstack([X, X[:20]])
    elif case == "separate":
        X, Y = X[:50], rng.standard_normal((400, 6))
    elif case == "wide":  # pairs found from both ends are measured once
        X = X[:, :3] @ rng.standard_normal((3, 200))
    elif case == "flipped":  # negative strides, which torch.from_numpy refuses
        X = np.flip(X, 0)
    if isinstance(case, float):  # brute force in float64 would overflow or underflow
        ref_dist, ref_idx = brute_force(X, 5)
        dist, idx = kneighbors(X * case, 5, backend="torch")
        np.testing.assert_allclose(dist, ref_dist * case, rtol=1e-12, atol=0)
    else:
        _, idx, ref_idx = assert_same_neighbours(X, 5, Y=Y, backend="torch")
    np.testing.assert_array_equal(idx, ref_idx)  # ties too: by index, as promised


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_torch_search_under_the_newer_precision_api(rng):
    import torch

    # Once fp32_precision is set, torch.get_float32_matmul_precision() raises: the
    # search once failed on every call for users of the API torch now recommends.
    matmuls = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
    if not hasattr(matmuls[0], "fp32_precision"):
        pytest.skip("this torch has only the older API")
    try:
        matmuls[0].fp32_precision, matmuls[1].fp32_precision = "tf32", "bf16"
        assert_same_neighbours(rng.standard_normal((200, 8)), 4, backend="torch")
        assert (matmuls[0].fp32_precision, matmuls[1].fp32_precision) == ("tf32", "bf16")
        # Inherited settings stay inherited, not pinned: from the generic setting, from
        # CUDA's (exposed as cudnn's), and in torch's default state.
        matmuls[0].fp32_precision = matmuls[1].fp32_precision = "none"
        for parent, before, after in [
            (torch.backends, "tf32", "ieee"),
            (torch.backends.cudnn, "tf32", "ieee"),
            (torch.backends, "none", "tf32"),
        ]:
            parent.fp32_precision = before
            kneighbors(rng.standard_normal((50, 3)), 2, backend="torch")
            parent.fp32_precision = after
            assert matmuls[0].fp32_precision == after
            torch.backends.fp32_precision = torch.backends.cudnn.fp32_precision = "none"
    finally:
        torch.backends.fp32_precision = torch.backends.cudnn.fp32_precision = "none"
        # "none" (the default) makes the older API readable again for other tests.
        matmuls[0].fp32_precision = matmuls[1].fp32_precision = "none"


def test_devices_name_gpus_for_faiss_and_cpu_picks_a_cpu_backend(monkeypatch):
    import idprops.neighbors as nb

    assert [nb._gpu_number(d) for d in (None, 2, "cuda", "cuda:3")] == [0, 2, 0, 3]
    with pytest.raises(ValueError, match="not a GPU"):
        nb._gpu_number("cpu")
    monkeypatch.setattr(nb, "_cuda_available", lambda: True)
    monkeypatch.setattr(nb, "_faiss_gpu_available", lambda: True)
    assert nb._resolve_backend("auto", "cuda:1") == "faiss-gpu"
    assert nb._resolve_backend("auto", "cpu") in ("faiss", "torch")


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_more_neighbours_than_faiss_gpu_returns_run_in_torch(monkeypatch, rng):
    import idprops.neighbors as nb

    # faiss' GPU search stops at 2,048 per query; CPU faiss has no GPU resources, so
    # this search fails unless it runs in torch.
    monkeypatch.setattr(nb, "_resolve_backend", lambda backend, device: "faiss-gpu")
    X = rng.standard_normal((2300, 3))
    dist, idx = kneighbors(X, 1100)
    ref_dist, _ = brute_force(X, 1100)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_torch_on_cuda_re_measures_there(monkeypatch, rng):
    import idprops.neighbors as nb

    used = []
    real = nb._torch_distances
    monkeypatch.setattr(nb, "_torch_distances", lambda *a: used.append(str(a[2])) or real(*a))
    X = rng.standard_normal((600, 20))
    Y = rng.standard_normal((700, 20))
    assert_same_neighbours(X, 5, Y=Y, backend="torch", device="cuda")
    assert used == ["cuda"]


@pytest.mark.parametrize("route", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", ["gaussian", "activation", "grid", "duplicates", "separate", "float64", "far"])
def test_wide_data_search_by_products_over_slabs_matches_brute_force(case, route, monkeypatch, rng):
    # Few points of many features: products summed over slabs of features. In float32,
    # windows re-measured exactly and the rows the slabs leave unproven in float64; in
    # float64 (few rows for k), distances from the products but where they are too
    # near the others to order (ties, duplicates). Run here from 16 features in slabs of 8.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    monkeypatch.setattr(nb, "_SLAB_FEATURES", 8)
    monkeypatch.setattr(nb, "_float64_first", lambda n_rows, k: route is np.float64)
    scans = []
    real = nb._product_search
    monkeypatch.setattr(nb, "_product_search", lambda *a: scans.append(a[8]) or real(*a))
    X, Y = rng.standard_normal((300, 40)).astype(np.float32), None
    if case == "activation":
        X = np.maximum(rng.standard_normal((300, 4)) @ rng.standard_normal((4, 40)) - 0.5, 0)
    elif case == "grid":
        X = np.indices((6, 6, 6)).reshape(3, -1).T.astype(float) @ np.eye(3, 40)
    elif case == "duplicates":
        X = np.vstack([X, X[:20], X[:5]])
    elif case == "separate":
        X, Y = X[:50], rng.standard_normal((400, 40))
    elif case == "float64":
        X = X.astype(np.float64)
    elif case == "far":  # a pair far nearer than its distance to the centre: float64 decides
        X = np.vstack([X, X[0] * 1e4, X[0] * 1e4 + 1e-2])
    _, idx, ref_idx = assert_same_neighbours(X, 5, Y=Y)
    np.testing.assert_array_equal(idx, ref_idx)
    # Against other points the float64 products would be made by chunks: float32 first.
    assert scans[0] is (np.float32 if case == "separate" else route)
    if case == "far":
        assert np.float64 in scans


def test_few_rows_per_neighbour_take_distances_from_float64_products(monkeypatch, rng):
    # With few rows per neighbour (_float64_first), float64 products cost less than
    # measuring every row's k neighbours: their distances are kept where proven within
    # 2**-33, and only ties (a duplicate here) are measured from the vectors.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    scans, measured = [], []
    real_search, real_measure = nb._product_search, nb._numpy_distances
    monkeypatch.setattr(nb, "_product_search", lambda *a: scans.append(a[8]) or real_search(*a))
    monkeypatch.setattr(
        nb, "_numpy_distances", lambda X, Y, rows, cols: measured.append(len(rows)) or real_measure(X, Y, rows, cols)
    )
    X = rng.standard_normal((200, 40))
    _, idx, ref_idx = assert_same_neighbours(X, 5)  # 200 < 5 x 150
    np.testing.assert_array_equal(idx, ref_idx)
    assert scans == [np.float64] and measured == []
    X[10] = X[3]
    _, idx, ref_idx = assert_same_neighbours(X, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    assert 0 < sum(measured) < 50
    scans.clear()
    kneighbors(X, 1)  # 200 rows for one neighbour: float32 slabs and measuring
    assert scans[0] is np.float32


def test_wide_search_casts_features_a_slab_at_a_time(monkeypatch, rng):
    # No float64 (or float32) copy of all features: at most a slab of them at once.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_SLAB_BYTES", 200 * 8 * 64)
    monkeypatch.setattr(nb, "_float64_first", lambda n_rows, k: False)  # float32 slabs first
    casts = []
    real = nb._centred

    def centred(A, *args):
        out = real(A, *args)
        casts.append((A.shape[1], out.dtype, out.nbytes))
        return out

    monkeypatch.setattr(nb, "_centred", centred)
    X = rng.standard_normal((100, 5000)).astype(np.float32)
    # 75 near-duplicates that the float32 slabs cannot tell apart, more than a row's
    # window is measured for (_MEASURED_WINDOW): float64 decides.
    X[20:95] = X[19] + 1e-3 * rng.standard_normal((75, 5000))
    _, idx, ref_idx = assert_same_neighbours(X, 3)
    np.testing.assert_array_equal(idx, ref_idx)
    assert {dtype for _, dtype, _ in casts} == {np.dtype(np.float32), np.dtype(np.float64)}
    assert max(width for width, dtype, _ in casts if dtype == np.float32) == nb._SLAB_FEATURES
    assert max(size for _, dtype, size in casts if dtype == np.float64) <= nb._SLAB_BYTES


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_spanning_float64s_range_are_searched(backend, rng):
    # Two clusters at -1.7e308 and 1.7e308: their difference overflows float64, but
    # each point's neighbours lie in its own cluster (this raised OverflowError).
    base = rng.standard_normal((20, 3))
    X = np.vstack([base * 1e300 + [1.7e308, 0, 0], base * 1e300 - [1.7e308, 0, 0]])
    ref_dist, ref_idx = brute_force(base, 4)
    dist, idx = kneighbors(X, 4, backend=backend)
    np.testing.assert_array_equal(idx[:20], ref_idx)
    np.testing.assert_array_equal(idx[20:], ref_idx + 20)
    np.testing.assert_allclose(dist[:20], ref_dist * 1e300, rtol=1e-6)  # 1.7e308 + 1e300 rounds


@pytest.mark.parametrize("backend", BACKENDS)
def test_neighbours_beyond_float64s_range_are_refused_clearly(backend, rng):
    X = rng.uniform(-1, 1, (30, 4)) * 1.7e308
    with pytest.raises(ValueError, match="farther than float64's largest number.*divide the data"):
        kneighbors(X, 2, backend=backend)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float64_scan_and_wide_search_keep_to_the_batch_budget(dtype, monkeypatch, rng):
    # The float64 scan held a chunk's distances, a temporary of them, a partitioned
    # copy and their order at once: about twice its budget.
    import tracemalloc

    import idprops.neighbors as nb

    budget = 2**22
    monkeypatch.setattr(nb, "_BATCH_BYTES", budget)
    X = rng.standard_normal((3000, 12))
    center, scale = nb._center(X), nb._power_of_two_scale(nb._center(X), X)
    rows = np.arange(len(X))
    tracemalloc.start()
    try:
        nb._product_search(X, X, rows, 5, True, center, scale, None, dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Beside the budget: the answer (n x k distances and indices), the re-measuring
    # threads' buffers (3 of _RERANK_BYTES each) and small arrays.
    assert peak <= budget + 3000 * 5 * 16 + 3 * nb._RERANK_BYTES * n_cores() + 2**20


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_on_a_torch_device_equal_numpys(dtype, rng):
    # On a GPU the slabs' products are multiplied and summed there; the same code runs
    # here on torch's CPU device. Float32 slabs: the same float32 products, summed in
    # float64 in the same order (torch's and numpy's float32 products differ in their
    # rounding); float64: equal to rounding.
    import torch

    import idprops.neighbors as nb

    A, B = rng.standard_normal((50, 3000)).astype(np.float32), rng.standard_normal((40, 3000)).astype(np.float32)
    center = np.zeros(3000, dtype=np.float32)
    for other in (None, B):
        ref = nb._products(A, other, center, 0, dtype)
        got = nb._products(A, other, center, 0, dtype, torch.device("cpu"))
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got[0], ref[0], rtol=rtol, atol=1e-3)
        # Squared norms: the products' diagonal for A by itself, float64 sums otherwise.
        np.testing.assert_allclose(got[1], ref[1], rtol=rtol if other is None else 1e-15)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
def test_wide_search_with_products_on_a_torch_device_matches_brute_force(monkeypatch, rng):
    import torch

    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    monkeypatch.setattr(nb, "_SLAB_FEATURES", 8)
    X = rng.standard_normal((200, 40))
    X[100:110] = X[99] + 1e-6 * rng.standard_normal((10, 40))  # rows for the float64 products
    dist, idx = nb._wide_search(X, X, 5, True, None, torch.device("cpu"))
    ref_dist, ref_idx = brute_force(X, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def brute_force_closest_pair(X, groups):
    """Reference: every pair of different groups in float64, the first (distance, i, j)."""
    D = cdist(X.astype(np.float64), X.astype(np.float64))
    i, j = np.nonzero(np.triu(np.asarray(groups)[:, None] != np.asarray(groups)[None, :], 1))
    first = np.lexsort((j, i, D[i, j]))[0]
    return D[i[first], j[first]], (i[first], j[first])


@pytest.mark.parametrize("route", ["by group", "wide float32", "wide float64"])
@pytest.mark.parametrize("case", ["random", "grid", "duplicates", "float32"])
def test_closest_pair_matches_brute_force(route, case, monkeypatch, rng):
    # The grid's many equal distances check the order of ties across rows and groups;
    # the wide routes take one product of X by itself, with each row's group masked.
    import idprops.neighbors as nb

    if route != "by group":
        monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
        monkeypatch.setattr(nb, "_SLAB_FEATURES", 8)
        monkeypatch.setattr(nb, "_float64_first", lambda n_rows, k: route == "wide float64")
        # The products of X by itself fit at once but are read in chunks of 55 rows.
        monkeypatch.setattr(nb, "_BATCH_BYTES", 200_000)
    if case == "grid":
        X = rng.integers(0, 3, (150, 20)).astype(float)
    else:
        X = rng.standard_normal((150, 20))
    if case == "duplicates":
        X[100:] = X[:50]  # identical rows in the same group, and in others
    if case == "float32":
        X = (X + 100).astype(np.float32)
    groups = rng.choice(["cat", "dog", "emu"], len(X))
    distance, pair = nb.closest_pair(X, groups)
    ref_distance, ref_pair = brute_force_closest_pair(X, groups)
    assert pair == ref_pair
    assert distance == pytest.approx(ref_distance, rel=1e-12, abs=0)


def test_closest_pair_routes_give_the_same_bits(monkeypatch, rng):
    # Exactly the same distance, not just a close one: K_F's value must not depend on
    # which search found it.
    import idprops.neighbors as nb

    monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
    X = rng.random((120, 40)).astype(np.float32)
    groups = np.arange(120) % 4
    with monkeypatch.context() as m:
        m.setattr(nb, "_products_fit_at_once", lambda n_rows: False)  # a search per group
        by_group = nb.closest_pair(X, groups)
    for float64_first in (False, True):
        monkeypatch.setattr(nb, "_float64_first", lambda n_rows, k, first=float64_first: first)
        assert nb.closest_pair(X, groups) == by_group


@pytest.mark.parametrize(
    "groups, match",
    [(np.zeros(5), "at least two different groups"), (np.arange(4), "one group per row")],
)
def test_closest_pair_refuses_what_has_no_answer(groups, match):
    from idprops.neighbors import closest_pair

    with pytest.raises(ValueError, match=match):
        closest_pair(np.arange(10.0).reshape(5, 2), groups)


@pytest.mark.parametrize("route", ["by group", "wide"])
@pytest.mark.parametrize("case", ["random", "grid", "unseen group", "one group in Y"])
def test_closest_pair_of_X_and_Y_matches_brute_force(route, case, monkeypatch, rng):
    import idprops.neighbors as nb

    if route == "wide":
        monkeypatch.setattr(nb, "_WIDE_FEATURES", 16)
        monkeypatch.setattr(nb, "_SLAB_FEATURES", 8)
        monkeypatch.setattr(nb, "_BATCH_BYTES", 100_000)  # queries in chunks of 34
    if case == "grid":
        X, Y = (rng.integers(0, 3, (n, 20)).astype(float) for n in (90, 120))
    else:
        X, Y = rng.standard_normal((90, 20)), rng.standard_normal((120, 20))
    groups, Y_groups = rng.choice([1, 2, 3], len(X)), rng.choice([1.0, 2.0, 3.0], len(Y))
    if case == "unseen group":
        groups[:30] = 7  # every row of Y is in another group than these
    if case == "one group in Y":
        Y_groups[:] = 2  # X's rows of group 2 have no pair
    D = cdist(X, Y)
    D[groups[:, None] == Y_groups[None, :]] = np.inf
    i, j = np.nonzero(np.isfinite(D))
    first = np.lexsort((j, i, D[i, j]))[0]
    distance, pair = nb.closest_pair(X, groups, Y=Y, Y_groups=Y_groups)
    assert pair == (i[first], j[first])
    assert distance == pytest.approx(D[i[first], j[first]], rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"Y_groups": [0, 1]}, "Y_groups was given without Y"),
        ({"Y": np.zeros((2, 2))}, "Y_groups must hold one group per row of Y"),
        ({"Y": np.zeros((2, 3)), "Y_groups": [0, 1]}, "X has 2 features but Y has 3"),
        ({"Y": np.zeros((2, 2)), "Y_groups": [0, 0]}, "at least two different groups"),
    ],
)
def test_closest_pair_with_Y_refuses_what_has_no_answer(kwargs, match):
    from idprops.neighbors import closest_pair

    with pytest.raises(ValueError, match=match):
        closest_pair(np.ones((3, 2)), [0, 0, 0], **kwargs)
