"""Fill of a sparse Cholesky factorisation of ``Lambda' Z'Z Lambda + I`` for randomly
crossed factors (issue 16: why there is no sparse route for them).

    python benchmarks/sparse_fill.py [n n_a n_b [window]]     (default 200000 5000 5000)

Factorises the whole matrix of the two crossed intercepts with a fill-reducing
ordering, by SuperLU (scipy, MMD on A'+A, no pivoting) and by qdldl (AMD; if
installed), and prints the nonzeros of the factor, the log-determinant and the time.

With ``window``, the crossing is partial (users x items with locality): a row of level
``a`` draws its ``b`` level within ``window`` levels of ``a * n_b / n_a`` (cyclically),
instead of anywhere.
"""

import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

n, na, nb = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (200_000, 5000, 5000)
window = int(sys.argv[4]) if len(sys.argv) > 4 else None
rng = np.random.default_rng(16)
a = rng.integers(0, na, n)
if window is None:
    b = rng.integers(0, nb, n)
else:
    b = (a * nb // na + rng.integers(-window, window + 1, n)) % nb
rows = np.arange(n)
Z = sp.hstack([sp.csr_matrix((np.ones(n), (rows, a)), (n, na)), sp.csr_matrix((np.ones(n), (rows, b)), (n, nb))])
lam = sp.diags(np.r_[np.full(na, 0.8), np.full(nb, 0.5)])
M = (lam @ (Z.T @ Z) @ lam + sp.identity(na + nb)).tocsc()
print(f"order {na + nb}, nonzeros of M {M.nnz:,}; a dense Cholesky of the second block holds {nb * (nb + 1) // 2:,}")
t = time.perf_counter()
lu = spl.splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0, options=dict(SymmetricMode=True))
print(f"SuperLU: {time.perf_counter() - t:.1f} s, nonzeros of L {lu.L.nnz:,}, logdet {np.log(lu.U.diagonal()).sum():.6f}")
try:
    import qdldl
except ImportError:
    sys.exit("qdldl not installed: pip install qdldl for its figures")
t = time.perf_counter()
F = qdldl.Solver(sp.triu(M, format="csc"))
L, D, _ = F.factors()
print(f"qdldl:   {time.perf_counter() - t:.1f} s, nonzeros of L {L.nnz:,}, logdet {np.log(D).sum():.6f}")
t = time.perf_counter()
F.update(sp.triu(M, format="csc"))
print(f"qdldl numeric refactorisation (symbolic analysis reused): {time.perf_counter() - t:.1f} s")
