"""``python -m tests.mutation``: apply each slip in a temporary copy, run the matrix, score."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .slips import SLIPS, priority

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900     # the whole matrix takes under a minute idle; a mutant that hangs is killed

# Runs in the copy: the matrix's own rows, the file's rows first, stopping at the first failure.
DRIVER = r"""
import json, sys
root, first_prefixes = sys.argv[1], tuple(json.loads(sys.argv[2]))
import gradcheck, refnet
assert refnet.__file__.startswith(root) and gradcheck.__file__.startswith(root), (refnet.__file__, root)
from gradcheck.matrix import checks, run_check
rows = checks()
first = [c for c in rows if c.cell.startswith(first_prefixes) or c.algorithm.startswith(first_prefixes)]
chosen = {id(c) for c in first}
order = first + [c for c in rows if id(c) not in chosen]
for n, check in enumerate(order, 1):
    row = run_check(check)
    # Row.passed is the verdict's own: a PASS (with or without a reason), never an inconclusive one
    if not row.passed:
        print(json.dumps({"killed": True, "by": f"{row.cell} {row.algorithm}: {row.relation}",
                          "detail": " ".join(str(row.detail).split())[:160], "rows_run": n, "rows": len(order)}))
        sys.exit(0)
print(json.dumps({"killed": False, "by": None, "detail": "", "rows_run": len(order), "rows": len(order)}))
"""


def _copy_tree(dest, root=ROOT):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("refnet", "gradcheck"):
        shutil.copytree(root / package, dest / package, ignore=ignore)


def _run_matrix(tree, prefixes, numba_cache):
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(numba_cache),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    for name in ("REFNET_BACKEND", "REFNET_DTYPE", "REFNET_NUMBA"):
        env.pop(name, None)
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", DRIVER, str(tree), json.dumps(list(prefixes))], cwd=tree,
                              env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"killed": True, "by": f"timeout after {TIMEOUT_S} s", "detail": "", "seconds": TIMEOUT_S}
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"killed": True, "by": "crash", "detail": last[:160], "seconds": seconds}
    return dict(json.loads(lines[-1]), seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("--only", action="append", default=[],
                        help="only slips whose path or description contains this (repeatable)")
    parser.add_argument("--json", help="write one JSON line per slip to this file")
    parser.add_argument("--list", action="store_true", help="list the slips and exit")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose refnet/ and gradcheck/ are copied and mutated (default: this one)")
    args = parser.parse_args(argv)
    slips = [s for s in SLIPS if not args.only or any(o in s.path or o in s.what for o in args.only)]
    if args.list:
        for k, s in enumerate(slips, 1):
            print(f"{k:3d}  {s.path:<32} {s.what}")
        return 0
    try:
        os.nice(19)          # slow and long: never compete with interactive work
    except OSError:
        pass
    results = []
    with tempfile.TemporaryDirectory(prefix="refnet-mutation-") as tmp:
        tree, cache = Path(tmp) / "tree", Path(tmp) / "numba-cache"
        _copy_tree(tree, args.root)
        baseline = _run_matrix(tree, (), cache)
        print(f"baseline (no slip): {baseline['rows_run'] if not baseline['killed'] else '-'} rows, "
              f"{'FAILS: ' + str(baseline['by']) + ' ' + baseline['detail'] if baseline['killed'] else 'all pass'}, "
              f"{baseline['seconds']:.0f} s", flush=True)
        if baseline["killed"]:
            print("the unmutated matrix does not pass: no score")
            return 2
        for k, slip in enumerate(slips, 1):
            target = tree / slip.path
            original = target.read_text()
            if original.count(slip.search) != 1:
                raise SystemExit(f"slip {k} ({slip.what}): its search text occurs {original.count(slip.search)} "
                                 f"times in {slip.path}; run tests/test_mutation_slips.py")
            target.write_text(original.replace(slip.search, slip.replace))
            try:
                # A mutated kernel must be compiled afresh: numba's cache is keyed on the file's stamp.
                own_cache = Path(tmp) / f"numba-cache-{k}" if "/kernels/" in slip.path else cache
                result = _run_matrix(tree, priority(slip.path), own_cache)
            finally:
                target.write_text(original)
            result.update(path=slip.path, what=slip.what)
            results.append(result)
            mark = "killed  " if result["killed"] else "SURVIVED"
            print(f"{k:3d}/{len(slips)} {mark} {slip.path:<32} {slip.what:<62} "
                  f"{result['seconds']:5.0f} s  {result['by'] or ''} {result['detail']}", flush=True)
    killed = sum(r["killed"] for r in results)
    score = 100.0 * killed / max(len(results), 1)
    print(f"\nkilled {killed} of {len(results)} slips by the matrix alone: {score:.1f} %")
    for r in results:
        if not r["killed"]:
            print(f"  survived: {r['path']}: {r['what']}")
    if args.json:
        with open(args.json, "w") as out:
            for r in results:
                out.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
