"""On random designs, skmlm's optimum is at least as good as a brute-force multi-start search.

A fast sample of tools/check_optimum.py (which runs any range of seeds).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from check_optimum import check  # noqa: E402


@pytest.mark.parametrize("seed", range(8))
def test_no_worse_than_brute_force(seed):
    gap, _ = check(seed)
    if gap is None:
        pytest.skip("a factor with one level")
    assert gap <= 1e-6
