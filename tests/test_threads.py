"""idprops._threads: the native libraries' thread limits shared by concurrent searches."""

import threading

from threadpoolctl import threadpool_info

from idprops._threads import row_parts, single_threaded_native


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_searches_in_two_threads_share_the_limits_and_the_last_restores_them():
    before = _blas_threads()
    a_inside, b_inside, a_may_leave, a_left = (threading.Event() for _ in range(4))
    seen = {}

    def a():
        with single_threaded_native():
            a_inside.set()
            # A process-wide lock held for the whole search made b wait for a here.
            seen["together"] = b_inside.wait(timeout=10)
            a_may_leave.wait(timeout=10)
        a_left.set()

    def b():
        a_inside.wait(timeout=10)
        with single_threaded_native():
            b_inside.set()
            seen["inside"] = _blas_threads()
            a_may_leave.set()
            a_left.wait(timeout=10)
            # a has left: the limits stay while b runs.
            seen["after_a"] = _blas_threads()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen["together"]
    assert set(seen["inside"]) <= {1} and set(seen["after_a"]) <= {1}
    assert _blas_threads() == before


def test_row_parts_cover_the_rows_once_in_order():
    for n in (0, 1, 2, 7, 1000):
        parts = row_parts(n)
        assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
