"""Small bundled data sets with loaders.

* ``load_sleepstudy``: reaction times of 18 subjects over 10 days of sleep deprivation
  (Belenky et al. 2003; lme4's ``sleepstudy``).
* ``load_cbpp``: contagious bovine pleuropneumonia in 15 herds over 4 periods, one row
  per animal (lme4's ``cbpp`` expanded to binary outcomes).
* ``load_ess``: 29 countries x 200 people, simulated to the shape of the European Social
  Survey extract used in multilevel seminars: life satisfaction, years of education,
  GNI per capita (see ``tests/golden/make_reference.R`` for how it was made).
"""

from importlib import resources

import pandas as pd

__all__ = ["load_sleepstudy", "load_cbpp", "load_ess"]


def _read(name, dtypes):
    with resources.files(__name__).joinpath(name).open("r") as fh:
        return pd.read_csv(fh, dtype=dtypes)


def load_sleepstudy():
    """lme4's sleepstudy: ``Reaction`` (ms), ``Days`` (0-9), ``Subject`` (18 levels).

    Returns
    -------
    DataFrame of 180 rows.
    """
    return _read("sleepstudy.csv", {"Subject": str})


def load_cbpp():
    """lme4's cbpp, one row per animal: ``y`` (1 = new case), ``period`` ("1"-"4"), ``herd``.

    Returns
    -------
    DataFrame of 842 rows.
    """
    return _read("cbpp_binary.csv", {"period": str, "herd": str})


def load_ess():
    """ESS-like data: ``stflife`` (0-10), ``eduyrs``, ``gnipc1000`` (GNI per capita, 1000s), ``cntry``.

    Returns
    -------
    DataFrame of 5,800 rows (29 countries x 200 people).
    """
    return _read("ess.csv", {"cntry": str})
