"""Instructions per fit of skmlm, load-independently: callgrind, phase by phase.

Run under callgrind (one process for all the problems; ``callgrind_control -d`` dumps
the counts of each phase to its own file, so imports and data loading are counted
apart)::

    OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/%p.out \\
        python benchmarks/instructions.py --fits 2 --out /tmp/cg/main.csv [--families] [--problems a,b] [--library gpboost]

For each problem of ``run.py``'s set: load the data and build the fit (``bench_skmlm.build``),
one warm-up fit, then ``--fits`` fits; the instructions per fit are the last phase's count
divided by ``--fits`` (the same as a run of N + 1 fits minus one of 1 fit). Which skmlm is
counted is whatever ``import skmlm`` finds (set ``PYTHONPATH``). ``--library gpboost`` counts
GPBoost's fit of the same problems instead (``bench_gpboost.build``: its inputs prepared outside
the counted fits, as in the timed run), for a load-independent comparison on small problems. The CSV has problem,
instructions per fit and the log-likelihood. Two such CSVs side by side, as markdown::

    python benchmarks/instructions.py --compare before.csv after.csv
"""

import argparse
import csv
import glob
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import problems as problems_mod  # noqa: E402


def dump(label):
    """Ask callgrind to write the counts since the last dump; return the new count."""
    pid = os.getpid()
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True)


def last_count(outfile):
    files = sorted(glob.glob(outfile + ".*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    with open(files[-1]) as fh:
        for line in fh:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no count in {files[-1]}")


def compare(before, after):
    """A markdown table of two runs' instructions per fit and log-likelihoods."""
    def read(path):
        with open(path) as fh:
            return {r["problem"]: r for r in csv.DictReader(fh)}

    a, b = read(before), read(after)
    lines = ["| problem | instructions per fit, before | after | after / before | logLik before | logLik after |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in a:
        if name not in b:
            continue
        ia, ib = int(a[name]["instructions_per_fit"]), int(b[name]["instructions_per_fit"])
        lines.append(f"| {name} | {ia / 1e6:.2f}M | {ib / 1e6:.2f}M | {ib / ia:.3f} | "
                     f"{float(a[name]['loglik']):.10f} | {float(b[name]['loglik']):.10f} |")
    return "\n".join(lines)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        print(compare(sys.argv[2], sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fits", type=int, default=2)
    ap.add_argument("--families", action="store_true")
    ap.add_argument("--problems", default="")
    ap.add_argument("--skip", default="", help="comma-separated problems to leave out")
    ap.add_argument("--cg-out", default="/tmp/cg/%p.out", help="the --callgrind-out-file given to valgrind")
    ap.add_argument("--out", required=True)
    ap.add_argument("--library", default="skmlm", choices=["skmlm", "gpboost"])
    args = ap.parse_args()
    outfile = args.cg_out.replace("%p", str(os.getpid()))
    names = [n for n in args.problems.split(",") if n]
    skip = set(n for n in args.skip.split(",") if n)
    probs = [p for p in problems_mod.get_problems(names or None, families=args.families) if p.name not in skip]
    if args.library == "gpboost":
        import bench_gpboost as adapter
    else:
        import skmlm

        import bench_skmlm as adapter

        print(f"skmlm from {os.path.dirname(skmlm.__file__)}", flush=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["problem", "instructions_per_fit", "loglik"])
        for p in probs:
            if p.name == "insteval_like" and problems_mod.insteval_source():
                p.source = problems_mod.insteval_source()
            try:
                fit_once = adapter.build(p)
            except Exception as err:
                print(f"{p.name}: not built ({type(err).__name__}: {err})", flush=True)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = fit_once()
                dump(f"{p.name}-warm")
                for _ in range(args.fits):
                    m = fit_once()
                dump(f"{p.name}-fits")
            per_fit = last_count(outfile) / args.fits
            loglik = adapter.log_likelihood(p, m, fit_once)[0] if args.library == "gpboost" else m.log_likelihood_
            w.writerow([p.name, int(per_fit), repr(float(loglik))])
            fh.flush()
            print(f"{p.name}: {per_fit / 1e6:.1f}M instructions per fit, logLik {loglik!r}", flush=True)
            p.drop_data()


if __name__ == "__main__":
    main()
