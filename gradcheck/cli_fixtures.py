"""``python -m gradcheck export …`` and ``python -m gradcheck compare REF CAND``.

export: compute a golden fixture with refnet (imported only here, when
exporting) and write ``OUT/NAME.npz`` + ``OUT/NAME.json``: from a seed
(``--cell``, sizes, ``--seed``), or from the user's own model and data with
``--from FILE.npz`` (an .npz of the model's parameters under PyTorch's
state_dict names or per-gate names, ``head.weight``/``head.bias`` and the
data ``x``, ``h0``, ``c0``, ``y``, ``loss_weights``, ``dout``, ``h_n``,
``c_n``, each bare or under its fixture key: ``refnet.fixtures.user_arrays``).  compare: compare a
candidate (a fixture, or an ``.npz`` of arrays under the fixture's keys)
with a reference fixture and print where it first diverges; NumPy only.

Exit status of ``compare``: 0 the candidate agrees; 1 it differs (or holds a
non-finite entry); 2 could not compare (a usage error, or a file that is
missing, truncated, corrupt, not what its sidecar says: the message names
the file); 3 inconclusive (both files load but share no result array, so
nothing was compared).  ``export``: 0, or 2 for a bad command line.
"""
import argparse
import inspect
import json
import os
import sys

from .compare import compare
from .fixture_io import load_npz, save_fixture

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
    p.add_argument("--cell", choices=sorted(cells),
                   help="the seeded model's cell (required without --from; with --from, checked against the file)")
    p.add_argument("--algorithm", required=True, choices=list(exporters))
    p.add_argument("--out", required=True, help="folder to write into (created if missing)")
    p.add_argument("--name", help="file stem (default: CELL_ALGORITHM, or FILE_ALGORITHM with --from)")
    p.add_argument("--from", dest="from_file", metavar="FILE.npz",
                   help="export from your own model and data instead of a seed (an .npz of the model's "
                        "weight_ih_l0 … or W_ii …, head.weight, head.bias, x, h0, c0, y, loss_weights, dout, "
                        "h_n, c_n; see refnet.fixtures.user_arrays)")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"),
                   help="with --from: an Elman RNN's nonlinearity (arrays do not record it; default tanh)")
    p.add_argument("--seed", type=int, default=None, help="seed of every random draw (default 0; not with --from)")
    p.add_argument("--dtype", choices=("float64", "float32"),
                   help="sets REFNET_DTYPE for the export (default: the environment's, else float64)")
    for flag, default, what in _SHAPES:
        p.add_argument(f"--{flag}", type=_positive_int, default=None,
                       help=f"{what} (default {default}; not with --from, where the arrays say it)")
    p.add_argument("--num-layers", type=_positive_int, default=None,
                   help="stacked layers (default 1; not with --from; algorithms that take them: "
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
    """``python -m gradcheck export --cell C --algorithm A --out DIR [...]``; returns the exit status.

    Computes the fixture with ``refnet.fixtures.EXPORTERS[A]`` (from a seed,
    or from the user's arrays with ``--from FILE.npz``), writes
    ``DIR/NAME.npz`` and ``DIR/NAME.json`` and prints the two paths.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``export``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 (:data:`EXIT_AGREE`) once both files are written.

    Raises
    ------
    SystemExit
        With status 2 (argparse's usage error) for a bad command line: an
        unknown cell or algorithm, ``--from`` together with ``--seed`` or a
        size flag, an option the algorithm does not take, a ``--from`` file
        that cannot be read or does not fit, or a ValueError/TypeError from
        the exporter; with status 0 for ``--help``.
    ImportError
        If refnet cannot be imported (it is imported here, not at module import).
    OSError
        If the output folder or files cannot be written.
    """
    from refnet.fixtures import ALL_CELLS, EXPORTERS

    parser = _export_parser(EXPORTERS, ALL_CELLS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    exporter = EXPORTERS[args.algorithm]
    shape_flags = {"seed": 0, "T": 5, "B": 2, "input_size": 3, "hidden_size": 4, "num_layers": 1}
    if args.from_file is not None:
        given = [f"--{k.replace('_', '-')}" for k in shape_flags if getattr(args, k) is not None]
        if given:
            parser.error(f"argument --from: the arrays fix the model and data; {', '.join(given)} cannot be "
                         "given with it")
        make = _from_file_maker(parser, args, exporter)
    else:
        if args.cell is None:
            parser.error("one of the arguments --cell or --from is required")
        if args.nonlinearity is not None:
            parser.error("argument --nonlinearity: only with --from (the seeded cells name theirs: --cell)")
        kwargs = {k: (default if getattr(args, k) is None else getattr(args, k))
                  for k, default in shape_flags.items()}
        if getattr(exporter, "static", False):      # a static problem (an RBP equilibrium) has no T
            if args.T is not None:
                parser.error(f"argument --T: {args.algorithm} fixtures are of a static problem, with no T")
            del kwargs["T"]
        if not exporter.layers:
            if kwargs["num_layers"] != 1:
                parser.error(f"argument --num-layers: {args.algorithm} fixtures have one layer, "
                             f"got {kwargs['num_layers']}")
            del kwargs["num_layers"]
        for option, (_, default, _) in exporter.options.items():
            value = getattr(args, option)
            kwargs[option] = default if value is None else value
        make = lambda: exporter.function(args.cell, **kwargs)  # noqa: E731
    saved = os.environ.get("REFNET_DTYPE")
    if args.dtype:
        os.environ["REFNET_DTYPE"] = args.dtype
    try:
        fixture = make()
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    finally:
        if saved is None:
            os.environ.pop("REFNET_DTYPE", None)
        else:
            os.environ["REFNET_DTYPE"] = saved
    if args.from_file is not None and args.cell is not None and \
            fixture.meta["cell"] != {"irnn": "elman_relu"}.get(args.cell, args.cell):
        parser.error(f"argument --cell: {args.cell} contradicts {args.from_file!r}, which holds a "
                     f"{fixture.meta['cell']} model")
    default_stem = (os.path.splitext(os.path.basename(args.from_file))[0] if args.from_file is not None
                    else args.cell)
    stem = os.path.join(args.out, args.name or f"{default_stem}_{args.algorithm}")
    for path in save_fixture(fixture, stem):
        print(path)
    return 0


def _from_file_maker(parser, args, exporter):
    """A zero-argument function exporting from the user's arrays in ``args.from_file`` (``--from``)."""
    from refnet.fixtures import user_arrays

    if exporter.from_user is None:
        parser.error(f"argument --from: {args.algorithm} fixtures cannot be made from your own arrays yet")
    try:
        arrays = load_npz(args.from_file)
        model, data = user_arrays(arrays)
    except (OSError, ValueError) as exc:       # FixtureError is a ValueError; it names the file
        parser.error(f"argument --from: {args.from_file!r}: {exc}")
    accepted = inspect.signature(exporter.from_user).parameters
    options = {}
    for option, (_, default, _) in exporter.options.items():
        value = getattr(args, option)
        if option in accepted:
            options[option] = default if value is None else value
        elif value is not None:
            parser.error(f"argument --{option.replace('_', '-')}: with --from the arrays fix it")
    unused = sorted(k for k in data if k not in accepted)
    if unused:
        parser.error(f"argument --from: {args.from_file!r} holds {unused}, which a {args.algorithm} fixture "
                     f"does not use (it takes {', '.join(k for k in accepted if k != 'model')})")
    return lambda: exporter.from_user(model, **data, **options, nonlinearity=args.nonlinearity)


def compare_main(argv=None):
    """``python -m gradcheck compare REF CAND [--json] [--rtol R] [--atol A]``; returns the exit status.

    Prints :func:`gradcheck.compare`'s table (or, with ``--json``, its
    ``to_dict()`` as one JSON object) on stdout; errors go to stderr.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``compare``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        :data:`EXIT_AGREE` (0) the candidate agrees; :data:`EXIT_DIFFER` (1) it
        differs or holds a non-finite entry; :data:`EXIT_COULD_NOT_COMPARE` (2)
        a file is missing, unreadable or inconsistent (the message names it);
        :data:`EXIT_INCONCLUSIVE` (3) nothing was compared.

    Raises
    ------
    SystemExit
        With status 2 (argparse's usage error) for a bad command line, such as
        a negative or non-numeric ``--rtol``/``--atol``; with status 0 for ``--help``.
        Errors while comparing are reported as exit status 2, not raised.
    """
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
    except (MemoryError, RecursionError, ArithmeticError, LookupError, AttributeError) as exc:
        # Not a named refusal (a bug in refnet, or a file kind not yet validated): still "could not
        # compare", never exit 1 ("differ"); the traceback stays visible for the report.
        import traceback
        traceback.print_exc(file=sys.stderr)
        print(f"{p.prog}: error: could not compare ({type(exc).__name__}: {exc}); please report this",
              file=sys.stderr)
        return EXIT_COULD_NOT_COMPARE
    print(json.dumps(report.to_dict()) if args.json else report.table())
    if report.verdict.is_inconclusive:
        print(f"{p.prog}: inconclusive: {report.reason}", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    return EXIT_AGREE if report.passed else EXIT_DIFFER


def main(argv=None):
    """Dispatch ``export …`` / ``compare …`` (what ``python -m gradcheck`` forwards here).

    Parameters
    ----------
    argv : list of str, optional
        The subcommand and its arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The subcommand's exit status, or 2 (with a usage line on stderr) when
        ``argv`` is empty or names no subcommand.

    Raises
    ------
    SystemExit
        As :func:`export_main` and :func:`compare_main` (argparse usage errors).
    ImportError
        As :func:`export_main`.
    OSError
        As :func:`export_main`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {"export": export_main, "compare": compare_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m gradcheck {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
