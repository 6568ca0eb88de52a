"""The `lpm` command: simulate a cohort, or run the notebooks and build the book."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from lpmlib.params import ParameterError, load_params, parse_override


def _simulate(args: argparse.Namespace) -> None:
    from lpmlib.simulate import SimulationConfig, simulate_cohort, write_simulated_cohort

    try:
        config = SimulationConfig(n_patients=args.n_patients, seed=args.seed, nonlinearity=args.nonlinearity)
    except ValueError as error:  # an invalid value, named by the config
        raise ParameterError(str(error)) from error
    folder = write_simulated_cohort(simulate_cohort(config), args.out)
    settings = f"seed {args.seed}, nonlinearity {args.nonlinearity:g}"
    print(f"simulated {args.n_patients} patients ({settings}) into {folder}")


def _run(args: argparse.Namespace) -> None:
    from lpmlib.runner import run

    overrides = dict(parse_override(item) for item in args.param)
    params = load_params(args.params, overrides)
    project = Path(args.project).resolve()
    run(params, project, notebooks=args.notebooks, book=not args.no_book, with_deps=args.with_deps)


DEBUG_HELP = "on an error, print the full traceback instead of the one-paragraph message"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpm", description=__doc__)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    debug = argparse.ArgumentParser(add_help=False)  # --debug after the command too
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser(
        "simulate", parents=[debug], help="write a simulated cohort with planted truth"
    )
    simulate.add_argument("--out", default="data/simulated", help="cohort folder to write")
    simulate.add_argument("--n-patients", type=int, default=160)
    simulate.add_argument("--seed", type=int, default=42)
    simulate.add_argument(
        "--nonlinearity",
        type=float,
        default=0.0,
        help="0: the original flow; 2-3: saturating links, driver-pair interactions",
    )
    simulate.set_defaults(handler=_simulate)

    run = commands.add_parser(
        "run", parents=[debug], help="execute the notebooks with papermill, then build the book"
    )
    run.add_argument("--params", help="YAML file of run parameters")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one parameter (repeatable)",
    )
    run.add_argument("--notebooks", nargs="+", metavar="NN", help="only these notebooks, by number prefix")
    run.add_argument("--no-book", action="store_true", help="execute the notebooks but skip the book build")
    run.add_argument(
        "--with-deps", action="store_true", help="also run the chapters that write what the chosen ones read"
    )
    run.add_argument("--project", default=".", help="project folder (holds notebooks/ and _toc.yml)")
    run.set_defaults(handler=_run)
    return parser


def is_user_error(error: Exception) -> bool:
    """Whether the error is one of the project's (`runner.USER_ERRORS`), whose message names what is wrong
    and what to do."""
    from lpmlib.runner import USER_ERRORS

    return isinstance(error, USER_ERRORS)


def report(error: Exception) -> None:
    """Print an error for the terminal: one of the project's by its message alone, any other in one line;
    then its notes (such as where the last good book is)."""
    if is_user_error(error):
        print(f"lpm: error: {error}", file=sys.stderr)
    else:
        message = " ".join(str(error).split())
        print(
            f"lpm: error: {type(error).__name__}: {message} (run with --debug for the traceback)",
            file=sys.stderr,
        )
    for note in getattr(error, "__notes__", []):
        print(note, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command; on an error, exit with 2 for the project's errors and 1 for any other, printing
    the full traceback only with --debug."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        else:
            report(error)
        return 2 if is_user_error(error) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
