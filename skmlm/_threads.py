"""One BLAS thread for the optimiser loop.

One evaluation of the objective makes many BLAS and LAPACK calls, most on small
matrices. Multi-threaded OpenBLAS hands each to its thread pool, and on a busy machine
the hand-off costs far more than the arithmetic: measured here with the other core
busy, a 3 x 3 triangular solve took ~10 us on one thread and ~0.5 ms on two, and even
a 1,142 x 1,142 Cholesky factorisation was 5 times slower on two threads than on one.
So the optimiser runs on one BLAS thread; the cross-products, formed once, keep all.
"""

from threadpoolctl import ThreadpoolController

_controller = None


def single_blas_thread():
    """A context manager limiting every loaded BLAS library to one thread."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
