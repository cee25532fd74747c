"""``python -m refnet.bench <case> [--json] [--repeats N] [--quick]``.

Prints a case's table, or with ``--json`` one JSON object per line.  Exit
status 2 for a bad command line (an unknown case lists the valid ones), 1 if
the case refused to report (:class:`~refnet.bench.report.BenchmarkError`).
"""
import argparse
import json
import sys

from . import ernn, fastweights, gpu, online, rbp
from .report import BenchmarkError

__all__ = ["CASES", "main"]

CASES = {
    "bptt": gpu.bptt_with_gpu,      # bptt.run, and the GPU rows where a GPU is here
    "fastweights": fastweights.run,
    "online": online.run,
    "ernn": ernn.run,
    "rbp": rbp.run,
    "gpu": gpu.run,
}


def _positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _parser():
    parser = argparse.ArgumentParser(prog="python -m refnet.bench",
                                     description="Benchmarks of refnet against peer implementations.")
    parser.add_argument("case", nargs="?", help=f"the benchmark to run, one of: {', '.join(CASES)}")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                        help="timed repeats per measurement (default: the case's own; fewer if "
                             "the case's time budget runs out, as its output says)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests (seconds)")
    return parser


def main(argv=None):
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.case not in CASES:
        given = "missing" if args.case is None else f"unknown case {args.case!r}"
        parser.error(f"argument case: {given}; valid cases are: {', '.join(CASES)}")
    try:
        report = CASES[args.case](repeats=args.repeats, quick=args.quick)
    except BenchmarkError as exc:
        print(f"{parser.prog} {args.case}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for row in report.rows:
            print(json.dumps(row))
    else:
        print(report.table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
