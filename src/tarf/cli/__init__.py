"""The ``tarf`` command line.

One module per theme, each adding its commands to the parser (``add_parsers``) and
holding their functions: ``run`` (demo, unlearn, train, eval, speed), ``info`` (classes,
methods, report), ``bench`` (bench), ``user_model`` (unlearn-model, eval-model) and
``analyze`` (analyze ..., audit). Their options are defined once, in ``options``. A
command prints what the library returns (tables and text come from ``tarf.report`` and
``tarf.audit``); a user error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from tarf import __version__
from tarf.cli import analyze, bench, gpucheck, info, run, user_model
from tarf.cli.common import CLIError
from tarf.cli.options import HelpFormatter
from tarf.data.core import DataError

__all__ = ["CLIError", "build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """argparse's parser with its errors in one line, like every other tarf error (the
    full usage is one ``--help`` away rather than above the message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        what = "commands" if self._subparsers is not None else "options"
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the {what})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tarf",
        description="Concept-level machine unlearning under label-domain mismatch (TARF and "
        "baselines).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tarf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, info, bench, user_model, analyze, gpucheck):
        module.add_parsers(sub)
    return parser


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` ends a run as Ctrl-C does: workers stopped, state kept


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so the hint is its --help, not tarf's
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `tarf ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit's flush
        return 0
    except KeyboardInterrupt:
        print("interrupted; finished results and cached models are kept", file=sys.stderr)
        return 130
    except (CLIError, DataError, ValueError, FileNotFoundError) as e:
        print(f"tarf: error: {e}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
