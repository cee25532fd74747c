"""``python -m gradcheck``: run refnet's verification matrix and print a row per check.

Each row's verdict is ``pass``, ``FAIL`` or ``INCONCLUSIVE`` (with its
reason).  Exit status: 0 when every row passes; 1 when a row fails, or is
inconclusive (unless ``--allow-inconclusive``: inconclusive is never a
pass by default); 2 for a usage error.  Two subcommands handle golden
fixtures (gradcheck/cli_fixtures.py): ``python -m gradcheck export …`` writes
one, ``python -m gradcheck compare REF CAND`` compares two.
"""
import argparse
import json
import os
import sys


def _parser():
    p = argparse.ArgumentParser(prog="python -m gradcheck", description=__doc__)
    p.add_argument("--json", action="store_true", help="one JSON object per check, one per line")
    p.add_argument("--backend", choices=("numpy", "cupy", "strict"),
                   help="sets REFNET_BACKEND for this run (default: the environment's, else numpy; "
                        "strict is the device double of refnet._strict)")
    p.add_argument("--dtype", choices=("float64", "float32"),
                   help="sets REFNET_DTYPE for this run (default: the environment's, else float64)")
    p.add_argument("--cell", action="append", help="only this cell (repeatable)")
    p.add_argument("--algorithm", action="append", help="only algorithms starting with this (repeatable)")
    p.add_argument("--allow-inconclusive", action="store_true",
                   help="exit 0 when no row fails even if some are inconclusive (default: exit 1)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["export"], ["compare"]):
        from .cli_fixtures import main as fixtures_main   # export imports refnet; compare is NumPy only
        return fixtures_main(argv)
    args = _parser().parse_args(argv)
    saved = {k: os.environ.get(k) for k in ("REFNET_BACKEND", "REFNET_DTYPE")}
    try:
        if args.backend:
            os.environ["REFNET_BACKEND"] = args.backend
        if args.dtype:
            os.environ["REFNET_DTYPE"] = args.dtype
        return _run_matrix(args)
    finally:  # an in-process caller gets its environment back
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_matrix(args):
    from refnet.backend import backend_name, get_dtype, get_xp
    from .matrix import checks, run_check

    get_xp()  # fail here, with the variable named, if the backend is unusable
    selected = [c for c in checks()
                if (not args.cell or c.cell in args.cell)
                and (not args.algorithm or any(c.algorithm.startswith(a) for a in args.algorithm))]
    if not selected:
        print("no check matches the --cell/--algorithm filters", file=sys.stderr)
        return 2
    wc = max(len(c.cell) for c in selected)
    wa = max(len(c.algorithm) for c in selected)
    wr = max(len(c.relation) for c in selected)
    if not args.json:
        print(f"refnet gradcheck matrix: backend {backend_name()}, dtype {get_dtype()}")
        print(f"{'cell':<{wc}} {'algorithm':<{wa}} {'relation':<{wr}} {'max rel err':>11} "
              f"{'tolerance':>9} {'result':>12} {'seconds':>7}")
    counts = {"pass": 0, "fail": 0, "inconclusive": 0}
    for check in selected:
        row = run_check(check)
        counts[row.verdict.status] += 1
        if args.json:
            print(json.dumps({"cell": row.cell, "algorithm": row.algorithm, "relation": row.relation,
                              "max_rel_error": row.max_rel_error, "tolerance": row.tolerance,
                              "passed": row.passed, "verdict": row.verdict.status, "reason": row.verdict.reason,
                              "seconds": round(row.seconds, 4), "detail": row.detail,
                              "backend": backend_name(), "dtype": str(get_dtype())}), flush=True)
        else:
            err = "-" if row.max_rel_error is None else f"{row.max_rel_error:.2e}"
            print(f"{row.cell:<{wc}} {row.algorithm:<{wa}} {row.relation:<{wr}} {err:>11} "
                  f"{row.tolerance:>9.1e} {row.verdict.label:>12} {row.seconds:7.3f}"
                  + ("" if row.passed else f"   {row.detail}"), flush=True)
    if not args.json:
        print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['inconclusive']} inconclusive"
              + (" (allowed)" if counts["inconclusive"] and args.allow_inconclusive else ""))
    if counts["fail"] or (counts["inconclusive"] and not args.allow_inconclusive):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
