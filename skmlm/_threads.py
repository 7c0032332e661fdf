"""One BLAS thread for the optimiser loop.

One evaluation of the objective makes many BLAS and LAPACK calls, most on small
matrices. Multi-threaded OpenBLAS hands each to its thread pool, and on a busy machine
the hand-off costs far more than the arithmetic: measured here with the other core
busy, a 3 x 3 triangular solve took ~10 us on one thread and ~0.5 ms on two, and even
a 1,142 x 1,142 Cholesky factorisation was 5 times slower on two threads than on one.
So the optimiser runs on one BLAS thread; the cross-products, formed once, keep all.
"""

from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_blas = None


@contextmanager
def single_blas_thread():
    """A context limiting every loaded BLAS library to one thread for its duration.

    threadpoolctl's own ``limit`` costs three times as much; where a library already
    runs one thread (as in the benchmarks), nothing is set.
    """
    global _blas
    if _blas is None:
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    saved = [(lib, lib.get_num_threads()) for lib in _blas]
    for lib, n in saved:
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in saved:
            if n != 1:
                lib.set_num_threads(n)
