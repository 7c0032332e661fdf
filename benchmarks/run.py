"""Side-by-side benchmark runner.

    python benchmarks/run.py [--problems a,b] [--libraries skmlm,lme4,...]
                             [--reps N] [--large] [--out benchmarks/results.csv]
    python benchmarks/run.py --families [...]   # the GLMM family problems

With ``--families`` the problems are the GLMM family ones (Poisson, binomial
with trials, negative binomial, Gamma; ``problems.family_problems()``), the
libraries also include glmmTMB, the CSV gains a ``dispersion`` column (NB2
theta, Gamma phi) and the default output is ``results_families.csv`` /
``.md``.

Fits every problem with every library in one run, timing the fit only (data
already in memory; for lme4 the timing is taken inside R), and writes

* a CSV (``--out``): problem, library, median_seconds, loglik,
  loglik_minus_best, ratio_to_skmlm, reps, status, note;
* a markdown table next to it (``results.md`` for ``results.csv``).

``loglik_minus_best`` is the library's log-likelihood minus the best one any
library reached on that problem (0 = best; negative = a worse optimum).
``ratio_to_skmlm`` is the library's median time divided by skmlm's (> 1: the
library is slower than skmlm).  A library that cannot fit a problem gets
status "n/a" with the reason; an unexpected exception is recorded as
"error" and the run goes on.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

THREAD_VARS = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS"]


def _early_threads(argv):
    """Apply --threads before numpy & co. are imported (BLAS pools start at import)."""
    threads = "1"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif a.startswith("--threads="):
            threads = a.split("=", 1)[1]
    if threads != "0":
        for v in THREAD_VARS:
            os.environ[v] = threads
    return threads


THREADS = _early_threads(sys.argv[1:])

import problems as problems_mod  # noqa: E402
from common import NotApplicable  # noqa: E402

LIBRARIES = ["skmlm", "lme4", "mixedlm", "statsmodels", "gpboost"]
# --families: glmmTMB is the reference for negative binomial and Gamma
FAMILY_LIBRARIES = ["skmlm", "lme4", "glmmTMB", "mixedlm", "statsmodels", "gpboost"]
# --shapes: issue 16's shapes, with the floor (one pass forming the statistics) in the same run
SHAPE_LIBRARIES = ["floor", "skmlm", "gpboost", "mixedlm", "statsmodels", "lme4"]
# gpboost_accurate: gpboost's iterative fit set to reach the best logLik to 1e-6 (bench_gpboost_accurate.py)
KNOWN_LIBRARIES = FAMILY_LIBRARIES + ["floor", "gpboost_accurate"]


def load_adapter(name):
    import importlib

    return importlib.import_module(f"bench_{name.lower()}")


def fmt_seconds(s):
    if s is None:
        return ""
    if s < 1:
        return f"{s * 1000:.1f} ms"
    return f"{s:.2f} s"


def fmt_ratio(r):
    return "" if r is None else f"{r:.2f}"


def fmt_delta(d):
    if d is None:
        return ""
    if abs(d) < 5e-7:
        return "0"
    return f"{d:.2e}" if abs(d) < 1e-2 else f"{d:.3f}"


def skmlm_digest():
    """Short hash of the skmlm sources that were benchmarked (the package moves fast)."""
    import glob
    import hashlib

    import skmlm

    root = os.path.dirname(skmlm.__file__)
    h = hashlib.sha1()
    for f in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        h.update(os.path.relpath(f, root).encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:10]


def versions(libs):
    out = {}
    for lib in libs:
        try:
            if lib in ("lme4", "glmmTMB"):
                import subprocess

                r = subprocess.run(
                    ["Rscript", "-e", f'cat(R.version$major, R.version$minor, as.character(packageVersion("{lib}")))'],
                    capture_output=True, text=True, timeout=60,
                )
                maj, minr, v = r.stdout.split()
                out[lib] = f"{lib} {v} (R {maj}.{minr})"
            else:
                from importlib.metadata import version

                out[lib] = f"{lib} {version(lib)}"
                if lib == "skmlm":
                    out[lib] += f" (source digest {skmlm_digest()})"
        except Exception:
            out[lib] = lib
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="", help="comma-separated problem names (default: all but large)")
    ap.add_argument("--libraries", default="",
                    help=f"comma-separated libraries (default: {','.join(LIBRARIES)}; "
                         f"with --families: {','.join(FAMILY_LIBRARIES)})")
    ap.add_argument("--reps", type=int, default=7,
                    help="timed repetitions for small problems (medium and large: min(3, N))")
    ap.add_argument("--large", action="store_true", help="include the 1M-row problem large_slope_1m")
    ap.add_argument("--budget", type=float, default=90.0,
                    help="stop repeating a fit once this many seconds were spent on it")
    ap.add_argument("--families", action="store_true",
                    help="the GLMM family problems (Poisson, binomial with trials, NB2, Gamma) "
                         "instead of the gaussian/Bernoulli ones; default output results_families.csv")
    ap.add_argument("--shapes", action="store_true",
                    help="issue 16's shapes (large crossed, mid-size structured, large nested), with the floor; "
                         "default output results_shapes.csv")
    ap.add_argument("--out", default=None,
                    help="CSV path (default benchmarks/results.csv, with --families results_families.csv)")
    ap.add_argument("--threads", default="1",
                    help="threads for BLAS/OpenMP/Rayon in every library (default 1; 0 = library defaults)")
    ap.add_argument("--list", action="store_true", help="list the problems and exit")
    args = ap.parse_args(argv)

    if args.out is None:
        args.out = os.path.join(HERE, "results_families.csv" if args.families else
                                "results_shapes.csv" if args.shapes else "results.csv")
    names = [n for n in args.problems.split(",") if n]
    probs = problems_mod.get_problems(names or None, large=args.large, families=args.families, shapes=args.shapes)
    if args.list:
        for p in probs:
            print(f"{p.name:28s} {p.size:7s} {p.describe()}")
        return 0
    libs = [lib for lib in args.libraries.split(",") if lib] or (
        FAMILY_LIBRARIES if args.families else SHAPE_LIBRARIES if args.shapes else LIBRARIES)
    unknown = [lib for lib in libs if lib not in KNOWN_LIBRARIES]
    if unknown:
        ap.error(f"unknown libraries {unknown}; known: {KNOWN_LIBRARIES}")
    with_dispersion = args.families or any(p.family in ("negative_binomial", "gamma") for p in probs)

    adapters = {}
    for lib in libs:
        try:
            ad = load_adapter(lib)
            adapters[lib] = (ad, ad.available(), None if ad.available() else ad.unavailable_reason())
        except Exception as e:  # adapter import itself failed
            adapters[lib] = (None, False, f"adapter failed to load: {e}")

    rows = []
    t_start = time.time()
    load_start = os.getloadavg()[0]
    for p in probs:
        t_prob = time.time()
        try:
            n_rows = p.n_rows
        except Exception as e:
            print(f"!! {p.name}: cannot build data: {e}", flush=True)
            continue
        print(f"== {p.name} ({n_rows:,} rows) {p.describe()}", flush=True)
        for lib in libs:
            ad, ok, reason = adapters[lib]
            row = dict(problem=p.name, library=lib, n_rows=n_rows, median_seconds=None, min_seconds=None, loglik=None,
                       reps=0, status="ok", note="", dispersion=None)
            if not ok:
                row.update(status="n/a", note=reason)
            else:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r = ad.fit(p, reps=args.reps, budget=args.budget)
                    row.update(median_seconds=r["seconds"], min_seconds=r.get("min_seconds"), loglik=r["loglik"], reps=r.get("reps", 0),
                               note=r.get("note", ""), dispersion=r.get("dispersion"))
                except NotApplicable as e:
                    row.update(status="n/a", note=str(e))
                except Exception as e:
                    row.update(status="error", note=f"{type(e).__name__}: {str(e)[:200]}")
                    traceback.print_exc(limit=3)
            rows.append(row)
            if row["status"] == "ok":
                disp = "" if row["dispersion"] is None else f"  dispersion={row['dispersion']:.6g}"
                print(f"   {lib:12s} {fmt_seconds(row['median_seconds']):>10s}  logLik={row['loglik']:.6f}"
                      f"  reps={row['reps']}{disp} {row['note']}", flush=True)
            else:
                print(f"   {lib:12s} {row['status']}: {row['note']}", flush=True)
        if p.name == "insteval_like" and problems_mod.insteval_source():
            p.source = problems_mod.insteval_source()
        if p.size != "small":
            p.drop_data()
        print(f"   ({time.time() - t_prob:.1f} s)", flush=True)

    # derived columns
    by_prob = {}
    for r in rows:
        by_prob.setdefault(r["problem"], []).append(r)
    for prob, rs in by_prob.items():
        lls = [r["loglik"] for r in rs if r["status"] == "ok" and r["loglik"] == r["loglik"]]  # not the floor's NaN
        best = max(lls) if lls else None
        sk = next((r for r in rs if r["library"] == "skmlm" and r["status"] == "ok"), None)
        for r in rs:
            r["loglik_minus_best"] = (r["loglik"] - best) if (r["status"] == "ok" and best is not None) else None
            r["ratio_to_skmlm"] = (r["median_seconds"] / sk["median_seconds"]
                                   if (r["status"] == "ok" and sk and sk["median_seconds"] > 0) else None)

    fields = ["problem", "library", "n_rows", "median_seconds", "min_seconds", "loglik", "loglik_minus_best",
              "ratio_to_skmlm", "reps", "status", "note"] + (["dispersion"] if with_dispersion else [])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("n/a" if r[k] is None and k in ("median_seconds", "loglik", "loglik_minus_best")
                            and r["status"] != "ok" else ("" if r[k] is None else r[k])) for k in fields})

    md_path = os.path.splitext(args.out)[0] + ".md"
    cmd = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = (load_start, os.getloadavg()[0])
    write_markdown(md_path, rows, probs, libs, cmd.strip(), versions([lib for lib in libs if adapters[lib][1]]),
                   time.time() - t_start, load)
    print(f"\nwrote {args.out} and {md_path} ({time.time() - t_start:.0f} s)")
    return 0


def write_markdown(path, rows, probs, libs, cmd, vers, elapsed, load=(None, None)):
    by = {(r["problem"], r["library"]): r for r in rows}
    lines = []
    lines.append(f"Command: `{cmd}`  ")
    lines.append(f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
                 f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
                 f"threads per library {THREADS if THREADS != '0' else 'library default'}; "
                 f"total wall time {elapsed:.0f} s; 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end  ")
    lines.append("Versions: " + ", ".join(vers.get(lib, lib) for lib in libs if lib in vers))
    lines.append("")
    lines.append("**Median fit time** (ratio to skmlm in parentheses: > 1 means slower than skmlm; "
                 "n/a = the library cannot fit that model, reasons below)")
    lines.append("")
    head = ["problem", "rows"] + libs
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    shown = []
    for p in probs:
        rs = [by.get((p.name, lib)) for lib in libs]
        if all(r is None for r in rs):
            continue
        shown.append((p, rs))
        n_rows = next((r["n_rows"] for r in rs if r), "")
        cells = [p.name, f"{n_rows:,}"]
        for lib, r in zip(libs, rs):
            if r is None or r["status"] != "ok":
                cells.append("n/a" if r is None or r["status"] == "n/a" else "error")
                continue
            c = fmt_seconds(r["median_seconds"])
            if lib != "skmlm" and r["ratio_to_skmlm"] is not None:
                c += f" ({fmt_ratio(r['ratio_to_skmlm'])})"
            cells.append(c)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("**logLik minus the best logLik** reached by any library on the problem "
                 "(0 = best to 5e-7; negative = a worse optimum). "
                 "REML fits report the REML log-likelihood, as lme4's `logLik()`; GLMMs the Laplace "
                 "(or nAGQ) approximation of the full log-likelihood, constants included.")
    lines.append("")
    head = ["problem", "best logLik"] + libs
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for p, rs in shown:
        lls = [r["loglik"] for r in rs if r and r["status"] == "ok" and r["loglik"] == r["loglik"]]
        cells = [p.name, f"{max(lls):.6f}" if lls else ""]
        for r in rs:
            if r is None or r["status"] != "ok":
                cells.append("n/a" if r is None or r["status"] == "n/a" else "error")
            else:
                cells.append(fmt_delta(r["loglik_minus_best"]) + (" †" if r["note"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Data and references (\"reached by\": libraries within 5e-7 of the best logLik):")
    lines.append("")
    for p in probs:
        ok = [r for r in rows if r["problem"] == p.name and r["status"] == "ok"]
        if ok:
            best = max(r["loglik"] for r in ok if r["loglik"] == r["loglik"])
            who = ", ".join(r["library"] for r in ok if r["loglik"] >= best - 5e-7)
            ref = f"; lme4 golden reference {p.reference_loglik:.6f}" if p.reference_loglik is not None else ""
            lines.append(f"- `{p.name}`: best {best:.6f}, reached by {who}{ref}; data: {p.source}")
    disp = [r for r in rows if r.get("dispersion") is not None]
    if disp:
        lines.append("")
        lines.append("Dispersion estimates (negative binomial: NB2 theta, Var = mu + mu^2 / theta; "
                     "Gamma: phi, Var = phi mu^2):")
        lines.append("")
        for p in probs:
            ds = [r for r in disp if r["problem"] == p.name]
            if ds:
                lines.append(f"- `{p.name}`: " + ", ".join(f"{r['library']} {r['dispersion']:.6g}" for r in ds))
    notes = [r for r in rows if r["note"] and r["status"] == "ok"]
    if notes:
        lines.append("")
        lines.append("† Notes on fits:")
        lines.append("")
        for r in notes:
            lines.append(f"- {r['problem']} / {r['library']}: {r['note']}")
    na = {}
    for r in rows:
        if r["status"] != "ok":
            na.setdefault((r["library"], r["status"], r["note"]), []).append(r["problem"])
    if na:
        lines.append("")
        lines.append("Not fitted (n/a) or failed (error):")
        lines.append("")
        for (lib, status, note), probs_ in na.items():
            lines.append(f"- {lib}, {status}: {note} ({', '.join(probs_)})")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
