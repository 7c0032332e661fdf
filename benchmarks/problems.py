"""Registry of benchmark problems.

Every problem is a :class:`Problem`: a pandas DataFrame already in memory plus
a library-neutral description of the model (response, fixed columns,
intercept, random-effect terms, REML flag, family, nAGQ).  Each library adapter
(``bench_*.py``) translates that description into its own API.

Problems:

* every case of ``tests/golden/*.json`` (with its ``.csv``), the lme4
  reference fits used by the test suite;
* ``insteval_like``: lme4's InstEval (73,421 rows; crossed s x d x dept with
  2,972 x 1,128 x 14 levels), ``y ~ 1 + (1|s) + (1|d) + (1|dept)``, REML.
  The real data are taken from R (``data(InstEval, package="lme4")``) when
  Rscript and lme4 are available, otherwise from the copy shipped inside the
  ``mixedlm`` wheel, otherwise simulated with the same design;
* ``crossed_3000x1000``: simulated crossed random intercepts, 3,000 x 1,000
  levels, 60,000 rows, REML;
* ``large_slope_1m`` (opt-in, ``--large``): simulated 1,000,000 rows, 10,000
  groups, ``y ~ x1 + x2 + (1 + x1 | g)``, ML;
* the GLMM family problems (``family_problems()``, run with ``run.py
  --families``): Poisson with a log-exposure offset, with a correlated random
  slope, with crossed intercepts and a 100,000-row one; binomial with trials
  (lme4's cbpp, rebuilt from the golden Bernoulli copy, and a 5,000-row
  simulation); negative binomial (NB2); Gamma with a log link.  All simulated
  with fixed seeds except cbpp.

Data sets are built lazily (``problem.data``) and cached in memory, so that a
run restricted to some problems does not pay for the others.  Nothing large
is written into the repository; the InstEval export lives in /tmp.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GOLDEN_DIR = os.path.join(REPO, "tests", "golden")
TMP_DIR = os.environ.get("SKMLM_BENCH_TMP", "/tmp/skmlm_bench")


@dataclass
class RandomTerm:
    """One random-effect term ``(intercept + slopes | group)``."""

    group: str
    intercept: bool = True
    slopes: List[str] = field(default_factory=list)


@dataclass
class Problem:
    name: str
    y: str
    fixed: List[str]
    fit_intercept: bool
    random_terms: List[RandomTerm]
    reml: bool
    family: str = "gaussian"  # "gaussian" | "binomial" | "poisson" | "negative_binomial" | "gamma"
    nAGQ: int = 1
    link: Optional[str] = None  # None = the family's canonical link (log for negative_binomial and gamma)
    offset: Optional[str] = None  # column added to the linear predictor (e.g. log exposure)
    trials: Optional[str] = None  # binomial with trials: y is a proportion, this column the trials
    size: str = "small"  # "small" | "medium" | "large" (drives default reps)
    source: str = ""  # where the data come from
    reference_loglik: Optional[float] = None  # lme4 logLik stored with golden cases
    loader: Optional[Callable[[], pd.DataFrame]] = None
    _data: Optional[pd.DataFrame] = None

    # ------------------------------------------------------------------ data
    @property
    def data(self) -> pd.DataFrame:
        if self._data is None:
            self._data = self.loader()
        return self._data

    def drop_data(self) -> None:
        self._data = None

    # ------------------------------------------------------------ structure
    @property
    def group_columns(self) -> List[str]:
        """Distinct grouping columns, in first-appearance order."""
        out: List[str] = []
        for t in self.random_terms:
            if t.group not in out:
                out.append(t.group)
        return out

    def slopes_by_group(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for t in self.random_terms:
            out.setdefault(t.group, [])
            for s in t.slopes:
                if s not in out[t.group]:
                    out[t.group].append(s)
        return out

    @property
    def is_diagonal(self) -> bool:
        """True when some grouping column carries several terms (lme4 ``||``)."""
        groups = [t.group for t in self.random_terms]
        return len(groups) != len(set(groups))

    @property
    def n_rows(self) -> int:
        return len(self.data)

    def n_levels(self) -> Dict[str, int]:
        return {g: int(self.data[g].nunique()) for g in self.group_columns}

    def is_nested_or_single(self) -> bool:
        """One grouping factor, or all other factors nested in one outer factor."""
        return self.outer_factor() is not None

    def outer_factor(self) -> Optional[str]:
        gcols = self.group_columns
        if len(gcols) == 1:
            return gcols[0]
        df = self.data
        for outer in gcols:
            ok = True
            for inner in gcols:
                if inner == outer:
                    continue
                # inner nested in outer: every inner level maps to one outer level
                if df.groupby(inner, observed=True)[outer].nunique().max() > 1:
                    ok = False
                    break
            if ok:
                return outer
        return None

    # -------------------------------------------------------------- formula
    def lme4_formula(self) -> str:
        """lme4 / mixedlm formula; diagonal terms are written expanded,
        ``(1|g) + (0 + x|g)``, which is exactly what ``(x || g)`` means."""
        fixed = ["1" if self.fit_intercept else "0"] + list(self.fixed)
        bars = []
        for t in self.random_terms:
            lhs = ["1" if t.intercept else "0"] + list(t.slopes)
            bars.append("(" + " + ".join(lhs) + " | " + t.group + ")")
        return f"{self.y} ~ " + " + ".join(fixed + bars)

    def r_formula(self) -> str:
        """The formula for R (lme4, glmmTMB): the lme4 formula with ``+ offset(col)``."""
        f = self.lme4_formula()
        return f + f" + offset({self.offset})" if self.offset else f

    @property
    def is_family(self) -> bool:
        """A GLMM family problem (``run.py --families``): not gaussian and not a
        plain Bernoulli golden case."""
        return self.family in ("poisson", "negative_binomial", "gamma") or bool(self.trials or self.offset)

    @property
    def link_name(self) -> str:
        return self.link or {"binomial": "logit", "gaussian": "identity"}.get(self.family, "log")

    def describe(self) -> str:
        extra = ""
        if self.family != "gaussian":
            extra = f" {self.family}({self.link_name})"
            if self.offset:
                extra += f" offset={self.offset}"
            if self.trials:
                extra += f" trials={self.trials}"
            extra += f" nAGQ={self.nAGQ}"
        return self.lme4_formula() + (" [REML]" if self.reml else " [ML]") + extra


# ====================================================================== golden
def _golden_loader(csv_path: str, group_cols: List[str]) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        df = pd.read_csv(csv_path, dtype={g: str for g in group_cols})
        return df

    return load


def golden_problems() -> List[Problem]:
    out = []
    for jpath in sorted(glob.glob(os.path.join(GOLDEN_DIR, "*.json"))):
        with open(jpath) as fh:
            spec = json.load(fh)
        csv_path = jpath[:-5] + ".csv"
        # only model cases: skip helper files (e.g. *.at_theta.json) and cases
        # whose description is not the plain one (e.g. weighted fits)
        if not os.path.exists(csv_path) or not isinstance(spec, dict) or "random_terms" not in spec:
            continue
        if spec.get("weights"):
            continue
        terms = [
            RandomTerm(t["group"], bool(t.get("intercept", True)), list(t.get("slopes", [])))
            for t in spec["random_terms"]
        ]
        groups = list(dict.fromkeys(t.group for t in terms))
        out.append(
            Problem(
                name=spec.get("name", os.path.basename(jpath)[:-5]),
                y=spec.get("response", "y"),
                fixed=list(spec.get("fixed", [])),
                fit_intercept=bool(spec.get("fit_intercept", True)),
                random_terms=terms,
                reml=bool(spec.get("reml", False)),
                family=spec.get("family", "gaussian"),
                nAGQ=int(spec.get("nAGQ", 1) or 1),
                size="small",
                source="tests/golden (lme4 reference case: %s)" % spec.get("formula", ""),
                reference_loglik=spec.get("logLik"),
                loader=_golden_loader(csv_path, groups),
            )
        )
    return out


# =================================================================== simulated
def simulate_large_slope(n: int = 1_000_000, n_groups: int = 10_000, seed: int = 20240611) -> pd.DataFrame:
    """y = 1 + 0.5 x1 - 0.3 x2 + b0_g + b1_g x1 + e with corr(b0, b1) = 0.3."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    sd0, sd1, rho = 1.0, 0.5, 0.3
    cov = np.array([[sd0 ** 2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1 ** 2]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    y = 1.0 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + 1.0 * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": pd.Series(g).map("g{:05d}".format)})


def simulate_crossed(n: int = 60_000, n_a: int = 3000, n_b: int = 1000, seed: int = 1234) -> pd.DataFrame:
    """Crossed random intercepts: every row draws an A level and a B level."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, size=n)
    b = rng.integers(0, n_b, size=n)
    ua = rng.normal(0.0, 0.8, size=n_a)
    ub = rng.normal(0.0, 0.5, size=n_b)
    y = 3.0 + ua[a] + ub[b] + rng.normal(0.0, 1.0, size=n)
    return pd.DataFrame(
        {"y": y, "a": pd.Series(a).map("a{:04d}".format), "b": pd.Series(b).map("b{:04d}".format)}
    )


def simulate_insteval(seed: int = 73421) -> pd.DataFrame:
    """Same size/levels as lme4's InstEval: 73,421 rows, s x d x dept =
    2,972 x 1,128 x 14; lecturers (d) belong to one department each."""
    rng = np.random.default_rng(seed)
    n, ns, nd, ndept = 73_421, 2972, 1128, 14
    s = np.concatenate([np.arange(ns), rng.integers(0, ns, size=n - ns)])
    d = np.concatenate([np.arange(nd), rng.integers(0, nd, size=n - nd)])
    rng.shuffle(s)
    rng.shuffle(d)
    d_dept = np.concatenate([np.arange(ndept), rng.integers(0, ndept, size=nd - ndept)])
    dept = d_dept[d]
    us = rng.normal(0, 0.32, ns)
    ud = rng.normal(0, 0.52, nd)
    udept = rng.normal(0, 0.08, ndept)
    eta = 3.2 + us[s] + ud[d] + udept[dept] + rng.normal(0, 1.18, n)
    y = np.clip(np.rint(eta), 1, 5)
    return pd.DataFrame(
        {"y": y, "s": s.astype(str), "d": d.astype(str), "dept": dept.astype(str)}
    )


_INSTEVAL_SOURCE = {"value": None}


def load_insteval() -> pd.DataFrame:
    """Real InstEval (R/lme4, else the mixedlm wheel's copy), else simulated."""
    os.makedirs(TMP_DIR, exist_ok=True)
    csv = os.path.join(TMP_DIR, "InstEval.csv")
    if os.environ.get("SKMLM_BENCH_SIMULATE_INSTEVAL"):
        _INSTEVAL_SOURCE["value"] = "simulated (forced)"
        return simulate_insteval()
    if not os.path.exists(csv) and shutil.which("Rscript"):
        code = (
            'suppressMessages(library(lme4)); data(InstEval, package="lme4"); '
            f'write.csv(InstEval[, c("y","s","d","dept")], "{csv}", row.names=FALSE)'
        )
        try:
            subprocess.run(["Rscript", "-e", code], check=True, capture_output=True, timeout=120)
        except Exception:
            pass
    if os.path.exists(csv):
        _INSTEVAL_SOURCE["value"] = "lme4::InstEval exported via Rscript"
        df = pd.read_csv(csv, dtype={"s": str, "d": str, "dept": str})
        df["y"] = df["y"].astype(float)
        return df
    try:
        import importlib.util

        spec = importlib.util.find_spec("mixedlm")
        if spec is not None and spec.submodule_search_locations:
            gz = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "InstEval.csv.gz")
            if os.path.exists(gz):
                _INSTEVAL_SOURCE["value"] = "lme4 InstEval copy shipped in the mixedlm wheel"
                df = pd.read_csv(gz, usecols=["y", "s", "d", "dept"], dtype={"s": str, "d": str, "dept": str})
                df["y"] = df["y"].astype(float)
                return df
    except Exception:
        pass
    _INSTEVAL_SOURCE["value"] = "simulated (InstEval design)"
    return simulate_insteval()


def insteval_source() -> Optional[str]:
    return _INSTEVAL_SOURCE["value"]


def extra_problems() -> List[Problem]:
    return [
        Problem(
            name="insteval_like",
            y="y",
            fixed=[],
            fit_intercept=True,
            random_terms=[RandomTerm("s"), RandomTerm("d"), RandomTerm("dept")],
            reml=True,
            size="medium",
            source="lme4 InstEval (see problems.load_insteval)",
            loader=load_insteval,
        ),
        Problem(
            name="crossed_3000x1000",
            y="y",
            fixed=[],
            fit_intercept=True,
            random_terms=[RandomTerm("a"), RandomTerm("b")],
            reml=True,
            size="medium",
            source="simulated, seed 1234",
            loader=simulate_crossed,
        ),
        Problem(
            name="large_slope_1m",
            y="y",
            fixed=["x1", "x2"],
            fit_intercept=True,
            random_terms=[RandomTerm("g", True, ["x1"])],
            reml=False,
            size="large",
            source="simulated, seed 20240611",
            loader=simulate_large_slope,
        ),
    ]


# ============================================================ GLMM families
def load_cbpp_trials() -> pd.DataFrame:
    """lme4's cbpp (56 herd x period rows: incidence out of size), rebuilt by
    summing the Bernoulli copy in tests/golden/cbpp_binary_laplace.csv (842
    animals).  ``prop = incidence / size``; ``size`` is the trials column."""
    df = pd.read_csv(os.path.join(GOLDEN_DIR, "cbpp_binary_laplace.csv"), dtype={"g_herd": str})
    period = 1 + df["period2"] + 2 * df["period3"] + 3 * df["period4"]
    df = df.assign(period=period)
    agg = df.groupby(["g_herd", "period"], sort=False).agg(incidence=("y", "sum"), size=("y", "size")).reset_index()
    for k in (2, 3, 4):
        agg[f"period{k}"] = (agg["period"] == k).astype(float)
    agg["prop"] = agg["incidence"] / agg["size"]
    agg["size"] = agg["size"].astype(float)
    return agg[["prop", "size", "period2", "period3", "period4", "g_herd"]]


def _labels(codes: np.ndarray, prefix: str, width: int) -> pd.Series:
    return pd.Series(codes).map((prefix + "{:0%dd}" % width).format)


def simulate_poisson_offset(n: int = 2000, n_groups: int = 80, seed: int = 101) -> pd.DataFrame:
    """Counts over an exposure time t ~ U(0.5, 4): log mu = log t - 0.5 + 0.3 x1 - 0.2 x2 + b_g,
    sd(b) = 0.6; ``logt`` is the offset."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    logt = np.log(rng.uniform(0.5, 4.0, size=n))
    b = rng.normal(0.0, 0.6, size=n_groups)
    y = rng.poisson(np.exp(logt - 0.5 + 0.3 * x1 - 0.2 * x2 + b[g]))
    return pd.DataFrame({"y": y.astype(float), "x1": x1, "x2": x2, "logt": logt, "g": _labels(g, "g", 3)})


def simulate_poisson_slope(n: int = 2000, n_groups: int = 80, seed: int = 202) -> pd.DataFrame:
    """log mu = log t + 0.2 + 0.4 x + b0_g + b1_g x, sd(b0) = 0.5, sd(b1) = 0.3,
    corr(b0, b1) = 0.4; exposure t ~ U(0.5, 2), offset ``logt``."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x = rng.standard_normal(n)
    logt = np.log(rng.uniform(0.5, 2.0, size=n))
    sd0, sd1, rho = 0.5, 0.3, 0.4
    cov = np.array([[sd0 ** 2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1 ** 2]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    y = rng.poisson(np.exp(logt + 0.2 + 0.4 * x + b[g, 0] + b[g, 1] * x))
    return pd.DataFrame({"y": y.astype(float), "x": x, "logt": logt, "g": _labels(g, "g", 3)})


def simulate_poisson_crossed(n: int = 5000, n_a: int = 100, n_b: int = 50, seed: int = 303) -> pd.DataFrame:
    """Crossed random intercepts: log mu = 0.5 + 0.25 x + a_i + b_j, sd(a) = 0.5, sd(b) = 0.3."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, size=n)
    b = rng.integers(0, n_b, size=n)
    x = rng.standard_normal(n)
    ua = rng.normal(0.0, 0.5, size=n_a)
    ub = rng.normal(0.0, 0.3, size=n_b)
    y = rng.poisson(np.exp(0.5 + 0.25 * x + ua[a] + ub[b]))
    return pd.DataFrame({"y": y.astype(float), "x": x, "a": _labels(a, "a", 3), "b": _labels(b, "b", 3)})


def simulate_binomial_trials(n: int = 5000, n_groups: int = 250, seed: int = 404) -> pd.DataFrame:
    """k successes out of m ~ U{1..20} trials: logit p = -0.4 + 0.6 x + 0.3 z + b_g, sd(b) = 0.8,
    z a group-level covariate; ``prop = k / m``, trials column ``m``."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x = rng.standard_normal(n)
    zg = rng.standard_normal(n_groups)
    m = rng.integers(1, 21, size=n)
    b = rng.normal(0.0, 0.8, size=n_groups)
    p = 1.0 / (1.0 + np.exp(-(-0.4 + 0.6 * x + 0.3 * zg[g] + b[g])))
    k = rng.binomial(m, p)
    return pd.DataFrame({"prop": k / m, "m": m.astype(float), "x": x, "z": zg[g], "g": _labels(g, "g", 3)})


def simulate_negbin(n: int = 2000, n_groups: int = 80, seed: int = 505) -> pd.DataFrame:
    """NB2 counts, Var = mu + mu^2 / theta with theta = 2: log mu = 1 + 0.4 x1 - 0.3 x2 + b_g, sd(b) = 0.5."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    b = rng.normal(0.0, 0.5, size=n_groups)
    mu = np.exp(1.0 + 0.4 * x1 - 0.3 * x2 + b[g])
    theta = 2.0
    y = rng.negative_binomial(theta, theta / (theta + mu))
    return pd.DataFrame({"y": y.astype(float), "x1": x1, "x2": x2, "g": _labels(g, "g", 3)})


def simulate_gamma(n: int = 1000, n_groups: int = 50, seed: int = 606) -> pd.DataFrame:
    """Gamma, log link, shape 4 (phi = Var / mu^2 = 0.25): log mu = 1 + 0.5 x + b_g, sd(b) = 0.4."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x = rng.standard_normal(n)
    b = rng.normal(0.0, 0.4, size=n_groups)
    mu = np.exp(1.0 + 0.5 * x + b[g])
    shape = 4.0
    y = rng.gamma(shape, mu / shape)
    return pd.DataFrame({"y": y, "x": x, "g": _labels(g, "g", 2)})


def simulate_poisson_large(n: int = 100_000, n_groups: int = 1000, seed: int = 707) -> pd.DataFrame:
    """log mu = 0.3 + 0.2 x1 - 0.1 x2 + b_g, sd(b) = 0.5, 1,000 groups."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    b = rng.normal(0.0, 0.5, size=n_groups)
    y = rng.poisson(np.exp(0.3 + 0.2 * x1 - 0.1 * x2 + b[g]))
    return pd.DataFrame({"y": y.astype(float), "x1": x1, "x2": x2, "g": _labels(g, "g", 4)})


def family_problems() -> List[Problem]:
    """GLMM family problems (all ML, Laplace)."""
    ri = [RandomTerm("g")]
    return [
        Problem(name="poisson_offset_ri", y="y", fixed=["x1", "x2"], fit_intercept=True, random_terms=ri,
                reml=False, family="poisson", offset="logt", source="simulated, seed 101",
                loader=simulate_poisson_offset),
        Problem(name="poisson_slope_offset", y="y", fixed=["x"], fit_intercept=True,
                random_terms=[RandomTerm("g", True, ["x"])], reml=False, family="poisson", offset="logt",
                source="simulated, seed 202", loader=simulate_poisson_slope),
        Problem(name="poisson_crossed", y="y", fixed=["x"], fit_intercept=True,
                random_terms=[RandomTerm("a"), RandomTerm("b")], reml=False, family="poisson",
                source="simulated, seed 303 (100 x 50 crossed levels)", loader=simulate_poisson_crossed),
        Problem(name="cbpp_trials", y="prop", fixed=["period2", "period3", "period4"], fit_intercept=True,
                random_terms=[RandomTerm("g_herd")], reml=False, family="binomial", trials="size",
                source="lme4 cbpp (incidence / size), summed from tests/golden/cbpp_binary_laplace.csv",
                loader=load_cbpp_trials),
        Problem(name="binomial_trials_5k", y="prop", fixed=["x", "z"], fit_intercept=True, random_terms=ri,
                reml=False, family="binomial", trials="m", source="simulated, seed 404 (250 groups)",
                loader=simulate_binomial_trials),
        Problem(name="negbin_ri", y="y", fixed=["x1", "x2"], fit_intercept=True, random_terms=ri, reml=False,
                family="negative_binomial", source="simulated, seed 505 (NB2, theta 2)", loader=simulate_negbin),
        Problem(name="gamma_log_ri", y="y", fixed=["x"], fit_intercept=True, random_terms=ri, reml=False,
                family="gamma", link="log", source="simulated, seed 606 (shape 4)", loader=simulate_gamma),
        Problem(name="poisson_large_100k", y="y", fixed=["x1", "x2"], fit_intercept=True, random_terms=ri,
                reml=False, family="poisson", size="medium", source="simulated, seed 707 (1,000 groups)",
                loader=simulate_poisson_large),
    ]



# ============================================================ issue 16: the shapes
def _codes(rng, n, n_levels):
    """Each level at least once, the rest drawn uniformly, shuffled."""
    codes = np.concatenate([np.arange(n_levels), rng.integers(0, n_levels, size=n - n_levels)])
    rng.shuffle(codes)
    return codes


def simulate_crossed_shape(n: int, n_a: int, n_b: int, seed: int) -> pd.DataFrame:
    """Crossed random intercepts, users x items: every row draws an A and a B level."""
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, n, n_a), _codes(rng, n, n_b)
    y = 3.0 + rng.normal(0, 0.8, n_a)[a] + rng.normal(0, 0.5, n_b)[b] + rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"y": y, "a": _labels(a, "a", 5), "b": _labels(b, "b", 5)})


def simulate_nested_shape(n: int, n_outer: int, n_inner: int, seed: int) -> pd.DataFrame:
    """(1 | outer) + (1 | outer:inner): inner levels spread evenly over the outer ones."""
    rng = np.random.default_rng(seed)
    inner = _codes(rng, n, n_inner)
    outer = np.arange(n_inner) % n_outer  # the outer level of each inner one
    x1 = rng.standard_normal(n)
    y = (1.0 + 0.4 * x1 + rng.normal(0, 0.7, n_outer)[outer[inner]] + rng.normal(0, 0.5, n_inner)[inner]
         + rng.normal(0.0, 1.0, n))
    return pd.DataFrame({"y": y, "x1": x1, "outer": _labels(outer[inner], "o", 5), "inner": _labels(inner, "i", 6)})


def simulate_slopes_shape(n: int, sizes, seed: int) -> pd.DataFrame:
    """y = 1 + 0.5 x1 + sum over the factors of (b0 + b1 x1) + e, one column per factor
    (``f0``, ``f1``, ...) with ``sizes`` levels, correlated intercept and slope (0.3)."""
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(n)
    y = 1.0 + 0.5 * x1 + rng.normal(0.0, 1.0, n)
    cols = {}
    cov = np.array([[1.0, 0.15], [0.15, 0.25]])
    for k, m in enumerate(sizes):
        g = _codes(rng, n, m)
        b = rng.multivariate_normal([0.0, 0.0], cov, size=m)
        y = y + b[g, 0] + b[g, 1] * x1
        cols[f"f{k}"] = _labels(g, f"f{k}_", 5)
    return pd.DataFrame({"y": y, "x1": x1, **cols})


def simulate_logit_slope_shape(n: int, n_groups: int, seed: int) -> pd.DataFrame:
    """Bernoulli y with logit p = -0.5 + 0.5 x1 - 0.3 x2 + b0_g + b1_g x1, sd(b0) = 1,
    sd(b1) = 0.5, corr(b0, b1) = 0.3."""
    rng = np.random.default_rng(seed)
    g = _codes(rng, n, n_groups)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n)
    cov = np.array([[1.0, 0.15], [0.15, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    eta = -0.5 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": _labels(g, "g", 5)})


def simulate_wide_slope(n: int, n_groups: int, n_fixed: int, seed: int) -> pd.DataFrame:
    """The memory shapes: y = 1 + 0.5 x1 - 0.3 x2 + 0.1 (x3 + ... + x_p) + b0_g + b1_g x1 + e,
    ``n_fixed`` standard normal columns, corr(b0, b1) = 0.3, integer group ids (labels of
    this many rows as Python strings would be most of the memory)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, size=n)
    cov = np.array([[1.0, 0.15], [0.15, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    cols = {f"x{k + 1}": rng.standard_normal(n) for k in range(n_fixed)}
    y = 1.0 + 0.5 * cols["x1"] + b[g, 0] + b[g, 1] * cols["x1"] + rng.standard_normal(n)
    if n_fixed > 1:
        y -= 0.3 * cols["x2"]
    for k in range(2, n_fixed):
        y += 0.1 * cols[f"x{k + 1}"]
    return pd.DataFrame({"y": y, **cols, "g": g})


def shape_problems() -> List[Problem]:
    """The shapes of issue 16 (``run.py --shapes``): large crossed, mid-size structured,
    large nested. All ML (gpboost fits ML only), simulated with fixed seeds."""
    ri = lambda *gs: [RandomTerm(g) for g in gs]  # noqa: E731
    slope = lambda *gs: [RandomTerm(g, True, ["x1"]) for g in gs]  # noqa: E731
    sim = "simulated, seed {}"
    return [
        Problem(name="crossed_200k_5000x5000", y="y", fixed=[], fit_intercept=True, random_terms=ri("a", "b"),
                reml=False, size="large", source=sim.format(1601),
                loader=lambda: simulate_crossed_shape(200_000, 5000, 5000, 1601)),
        Problem(name="crossed_1m_20000x20000", y="y", fixed=[], fit_intercept=True, random_terms=ri("a", "b"),
                reml=False, size="large", source=sim.format(1602),
                loader=lambda: simulate_crossed_shape(1_000_000, 20_000, 20_000, 1602)),
        Problem(name="nested_30k_130x2400", y="y", fixed=["x1"], fit_intercept=True,
                random_terms=ri("outer", "inner"), reml=False, size="medium", source=sim.format(1603),
                loader=lambda: simulate_nested_shape(30_000, 130, 2400, 1603)),
        Problem(name="slope_60x4k", y="y", fixed=["x1"], fit_intercept=True, random_terms=slope("f0"),
                reml=False, size="medium", source=sim.format(1604),
                loader=lambda: simulate_slopes_shape(240_000, [60], 1604)),
        Problem(name="two_slopes_7k_1700x60", y="y", fixed=["x1"], fit_intercept=True,
                random_terms=slope("f0", "f1"), reml=False, size="medium", source=sim.format(1605),
                loader=lambda: simulate_slopes_shape(7_000, [1700, 60], 1605)),
        Problem(name="crossed_3500_150x20", y="y", fixed=[], fit_intercept=True, random_terms=ri("a", "b"),
                reml=False, size="small", source=sim.format(1606),
                loader=lambda: simulate_crossed_shape(3_500, 150, 20, 1606)),
        Problem(name="logit_slope_1m_10k", y="y", fixed=["x1", "x2"], fit_intercept=True, random_terms=slope("g"),
                reml=False, family="binomial", size="large", source=sim.format(1608),
                loader=lambda: simulate_logit_slope_shape(1_000_000, 10_000, 1608)),
        Problem(name="nested_1m_2000x40000", y="y", fixed=["x1"], fit_intercept=True,
                random_terms=ri("outer", "inner"), reml=False, size="large", source=sim.format(1607),
                loader=lambda: simulate_nested_shape(1_000_000, 2000, 40_000, 1607)),
        # memory: the statistics formed from many rows (python benchmarks/peak_memory.py)
        Problem(name="slope_10m_100k", y="y", fixed=["x1", "x2"], fit_intercept=True,
                random_terms=[RandomTerm("g", True, ["x1"])], reml=False, size="large", source=sim.format(1608),
                loader=lambda: simulate_wide_slope(10_000_000, 100_000, 2, 1608)),
        Problem(name="fixed50_1m", y="y", fixed=[f"x{k + 1}" for k in range(50)], fit_intercept=True,
                random_terms=[RandomTerm("g", True, ["x1"])], reml=False, size="large", source=sim.format(1609),
                loader=lambda: simulate_wide_slope(1_000_000, 10_000, 50, 1609)),
    ]


def all_problems() -> List[Problem]:
    return golden_problems() + extra_problems()


def get_problems(names: Optional[List[str]] = None, large: bool = False, families: bool = False,
                 shapes: bool = False) -> List[Problem]:
    """The default set (gaussian and Bernoulli problems; with ``families`` the
    GLMM family problems instead, with ``shapes`` issue 16's shapes), or the named
    problems from any set."""
    probs = family_problems() if families else shape_problems() if shapes else all_problems()
    if names:
        by_name = {p.name: p for p in all_problems() + family_problems() + shape_problems()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SystemExit(f"unknown problem(s): {missing}; known: {sorted(by_name)}")
        return [by_name[n] for n in names]
    return [p for p in probs if large or shapes or p.size != "large"]


if __name__ == "__main__":
    for p in all_problems() + family_problems() + shape_problems():
        print(f"{p.name:28s} {p.size:7s} {p.describe()}")
