"""``python -m gradcheck export …`` and ``python -m gradcheck compare REF CAND``.

export: compute a golden fixture with refnet (imported only here, when
exporting) and write ``OUT/NAME.npz`` + ``OUT/NAME.json``.  compare: compare a
candidate (a fixture, or an ``.npz`` of arrays under the fixture's keys)
with a reference fixture and print where it first diverges; NumPy only.

Exit status of ``compare``: 0 the candidate agrees; 1 it differs (or holds a
non-finite entry); 2 could not compare (a usage error, or a file that is
missing, truncated, corrupt, not what its sidecar says: the message names
the file); 3 inconclusive (both files load but share no result array, so
nothing was compared).  ``export``: 0, or 2 for a bad command line.
"""
import argparse
import json
import os
import sys

from .compare import compare
from .fixture_io import save_fixture

__all__ = ["export_main", "compare_main", "main", "EXIT_AGREE", "EXIT_DIFFER", "EXIT_COULD_NOT_COMPARE",
           "EXIT_INCONCLUSIVE"]

EXIT_AGREE, EXIT_DIFFER, EXIT_COULD_NOT_COMPARE, EXIT_INCONCLUSIVE = 0, 1, 2, 3

_SHAPES = (("T", 5, "time steps"), ("B", 2, "batch size"), ("input-size", 3, "input width"),
           ("hidden-size", 4, "hidden units H"))


def _positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _non_negative_float(text):
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _export_parser(exporters, cells):
    p = argparse.ArgumentParser(prog="python -m gradcheck export",
                                description="Write a golden fixture (NAME.npz + NAME.json) computed by refnet.")
    p.add_argument("--cell", required=True, choices=sorted(cells))
    p.add_argument("--algorithm", required=True, choices=list(exporters))
    p.add_argument("--out", required=True, help="folder to write into (created if missing)")
    p.add_argument("--name", help="file stem (default: CELL_ALGORITHM)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"),
                   help="sets REFNET_DTYPE for the export (default: the environment's, else float64)")
    for flag, default, what in _SHAPES:
        p.add_argument(f"--{flag}", type=_positive_int, default=default, help=f"{what} (default {default})")
    p.add_argument("--num-layers", type=_positive_int, default=1,
                   help="stacked layers (default 1; algorithms that take them: "
                        f"{', '.join(n for n, e in exporters.items() if e.layers)})")
    seen = set()
    for name, exporter in exporters.items():
        for option, (kind, default, what) in exporter.options.items():
            if option not in seen:
                seen.add(option)
                p.add_argument(f"--{option.replace('_', '-')}", type=kind, default=None,
                               help=f"{what} ({name}; default {default})")
    return p


def export_main(argv=None):
    """``python -m gradcheck export --cell C --algorithm A --out DIR [...]``; returns the exit status."""
    from refnet.fixtures import CELLS, EXPORTERS

    parser = _export_parser(EXPORTERS, CELLS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    exporter = EXPORTERS[args.algorithm]
    kwargs = {"seed": args.seed, "T": args.T, "B": args.B, "input_size": args.input_size,
              "hidden_size": args.hidden_size}
    if exporter.layers:
        kwargs["num_layers"] = args.num_layers
    elif args.num_layers != 1:
        parser.error(f"argument --num-layers: {args.algorithm} fixtures have one layer, got {args.num_layers}")
    for option, (_, default, _) in exporter.options.items():
        value = getattr(args, option)
        kwargs[option] = default if value is None else value
    saved = os.environ.get("REFNET_DTYPE")
    if args.dtype:
        os.environ["REFNET_DTYPE"] = args.dtype
    try:
        fixture = exporter.function(args.cell, **kwargs)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    finally:
        if saved is None:
            os.environ.pop("REFNET_DTYPE", None)
        else:
            os.environ["REFNET_DTYPE"] = saved
    stem = os.path.join(args.out, args.name or f"{args.cell}_{args.algorithm}")
    for path in save_fixture(fixture, stem):
        print(path)
    return 0


def compare_main(argv=None):
    """``python -m gradcheck compare REF CAND [--json] [--rtol R] [--atol A]``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m gradcheck compare",
                                description="Compare a candidate with a reference fixture; say where it "
                                            "first diverges.  Exit status: 0 agree, 1 differ, 2 could not "
                                            "compare (usage, unreadable or inconsistent file), 3 inconclusive "
                                            "(no result array in common).")
    p.add_argument("reference", help="the reference fixture (NAME, NAME.npz or NAME.json)")
    p.add_argument("candidate", help="a fixture, or an .npz of arrays under the fixture's keys")
    p.add_argument("--rtol", type=_non_negative_float,
                   help="override the dtype's default (gradcheck.COMPARE_TOLERANCES)")
    p.add_argument("--atol", type=_non_negative_float, help="override the dtype's default")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = compare(args.reference, args.candidate, rtol=args.rtol, atol=args.atol)
    except (OSError, ValueError, TypeError) as exc:      # FixtureError is a ValueError
        print(f"{p.prog}: error: could not compare: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_COMPARE
    print(json.dumps(report.to_dict()) if args.json else report.table())
    if report.verdict.is_inconclusive:
        print(f"{p.prog}: inconclusive: {report.reason}", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    return EXIT_AGREE if report.passed else EXIT_DIFFER


def main(argv=None):
    """Dispatch ``export …`` / ``compare …`` (what ``python -m gradcheck`` forwards here)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {"export": export_main, "compare": compare_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m gradcheck {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
