"""One BLAS thread for the optimiser loop.

One evaluation of the objective makes many BLAS and LAPACK calls, most on small
matrices. Multi-threaded OpenBLAS hands each to its thread pool, and on a busy machine
the hand-off costs far more than the arithmetic: measured here with the other core
busy, a 3 x 3 triangular solve took ~10 us on one thread and ~0.5 ms on two, and even
a 1,142 x 1,142 Cholesky factorisation was 5 times slower on two threads than on one.
So the optimiser runs on one BLAS thread; the cross-products, formed once, keep all,
as does work inside the loop large enough to split by hand (:func:`outer_threads`).
"""

from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_blas = None
_outer = None  # the thread count single_blas_thread found, while it is in force


@contextmanager
def single_blas_thread():
    """A context limiting every loaded BLAS library to one thread for its duration.

    threadpoolctl's own ``limit`` costs three times as much; where a library already
    runs one thread (as in the benchmarks), nothing is set.
    """
    global _blas, _outer
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    saved = [(lib, lib.get_num_threads()) for lib in _blas]
    outer = _outer
    if outer is None:  # the outermost context: what the user's settings allow
        _outer = max([n for _, n in saved], default=1)
    for lib, n in saved:
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        _outer = outer
        for lib, n in saved:
            if n != 1:
                lib.set_num_threads(n)


def outer_threads():
    """Threads a single large operation inside :func:`single_blas_thread` may use: the BLAS
    thread count in force before it (the user's ``OPENBLAS_NUM_THREADS`` and the like);
    outside it, the current one."""
    if _outer is not None:
        return _outer
    global _blas
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return max([lib.get_num_threads() for lib in _blas], default=1)
