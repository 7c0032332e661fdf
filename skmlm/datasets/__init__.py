"""Small bundled data sets with loaders.

* ``load_sleepstudy``: reaction times of 18 subjects over 10 days of sleep deprivation
  (Belenky et al. 2003; lme4's ``sleepstudy``).
* ``load_cbpp``: contagious bovine pleuropneumonia in 15 herds over 4 periods, one row
  per animal (lme4's ``cbpp`` expanded to binary outcomes).
* ``load_ess``: 29 countries x 200 people, simulated (not survey data) to the shape of the
  European Social Survey extract used in multilevel seminars: life satisfaction, years of
  education, age, gender, income decile, a binary "happy", GNI per capita (see
  ``tests/golden/make_reference.R`` and ``skmlm/datasets/_make_ess.py`` for how it was made).
* ``make_store_sales``: simulated weekly sales of stores (a random intercept and price
  slope per store, a region, a smooth temperature effect, a binary "sold out"), for the
  machine-learning workflow of ``docs/ml_workflow.md``.
"""

from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["load_sleepstudy", "load_cbpp", "load_ess", "make_store_sales"]


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
    """ESS-like data, simulated: 29 countries x 200 people.

    Columns: ``stflife`` (life satisfaction 0-10), ``eduyrs`` (years of education),
    ``gnipc1000`` (the country's GNI per capita in 1000s: constant within a country),
    ``cntry`` (country code), ``agea`` (age), ``gndr`` ("F"/"M"), ``hinctnta`` (household
    income decile 1-10), ``happy`` (1/0, a binary outcome for logistic models). No row
    is a real respondent: ``tests/golden/make_reference.R`` simulated the first four
    columns, ``skmlm/datasets/_make_ess.py`` the rest.

    Returns
    -------
    DataFrame of 5,800 rows (29 countries x 200 people).
    """
    return _read("ess.csv", {"cntry": str})


def make_store_sales(n_stores=500, n_weeks=12, random_state=0):
    """Simulated weekly sales of ``n_stores`` stores over ``n_weeks`` weeks.

    Stores are numbered from 308 (integer ids, as often in a warehouse's tables) and lie
    in one of four regions. Sales fall with the price, by a slope that differs between
    stores, and rise and fall smoothly with the temperature::

        sales = 20 + region + 3 sin(temp / 6) - 1.5 price + u0 + u1 (price - 3) + e
        u0 ~ N(0, 2^2), u1 ~ N(0, 1), e ~ N(0, 1.5^2)

    ``sold_out`` is 1 with probability ``expit(-0.3 + 0.8 (price - 3) + 0.06 (temp - 12) + v0)``,
    ``v0 ~ N(0, 1.5^2)`` per store.

    Parameters
    ----------
    n_stores : int, default=500
    n_weeks : int, default=12
    random_state : int, default=0
        Seed of numpy's random generator.

    Returns
    -------
    DataFrame of ``n_stores * n_weeks`` rows: ``store`` (int), ``region`` (str),
    ``price``, ``temp`` (degrees Celsius), ``sales``, ``sold_out`` (0/1).
    """
    rng = np.random.default_rng(random_state)
    s = np.repeat(np.arange(n_stores), n_weeks)
    n = len(s)
    regions = np.array(["east", "north", "south", "west"])
    region = rng.integers(0, 4, n_stores)
    price = rng.uniform(1.0, 5.0, n)
    temp = rng.uniform(-5.0, 30.0, n)
    u0, u1, v0 = rng.normal(0, 2.0, n_stores), rng.normal(0, 1.0, n_stores), rng.normal(0, 1.5, n_stores)
    region_effect = np.array([0.0, -1.0, 1.5, 0.5])[region]
    sales = (20 + region_effect[s] + 3 * np.sin(temp / 6) - 1.5 * price + u0[s] + u1[s] * (price - 3)
             + rng.normal(0, 1.5, n))
    eta = -0.3 + 0.8 * (price - 3) + 0.06 * (temp - 12) + v0[s]
    sold_out = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"store": 308 + s, "region": regions[region][s], "price": price, "temp": temp,
                         "sales": sales, "sold_out": sold_out})
