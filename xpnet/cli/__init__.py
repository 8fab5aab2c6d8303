"""The ``xpnet`` command: ``train``, ``eval``, ``predict``, ``info``, ``export`` and ``bench``.

``xpnet train`` with no arguments trains the default MLP on the bundled digits on the CPU.
``--backend`` does what ``XPNET_BACKEND`` does (likewise ``--device``, ``--dtype``).
Exit status: 0 on success, 1 on an xpnet error (bad data, diverging loss...), 2 on bad
arguments, 130 when training was interrupted with Ctrl-C, 143 when by SIGTERM and 129 when by
SIGHUP (in each case the last completed epoch's checkpoint is saved), 141 (quietly) when the output went into a pipe
whose reader stopped reading (``| head``).

The package: :mod:`~xpnet.cli.argtypes` (flag types over :mod:`xpnet.checks`),
:mod:`~xpnet.cli.parser` (``build_parser``), one module per command (``train``, ``evaluate``,
``predict``, ``info``, ``export``; ``bench`` is dispatched to :mod:`xpnet.bench` unparsed), and
:mod:`~xpnet.cli.output` (exit statuses, printing).
"""

from __future__ import annotations

import importlib
import os
import sys

from ..errors import XPNetError
from .evaluate import cmd_eval
from .export import cmd_export
from .info import cmd_info
from .output import (  # noqa: F401 (the exit statuses are part of this module's API)
    EXIT_CLOSED_PIPE,
    EXIT_ERROR,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    say,
)
from .parser import build_parser
from .predict import PREDICT_TEST_SAMPLES, cmd_predict  # noqa: F401 (PREDICT_TEST_SAMPLES: API)
from .sequence import cmd_generate
from .train import cmd_train, usage_problem

__all__ = ["main", "build_parser", "COMMANDS", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "EXIT_HANGUP", "EXIT_CLOSED_PIPE", "PREDICT_TEST_SAMPLES"]

COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "generate": cmd_generate, "info": cmd_info,
            "export": cmd_export}


def cmd_bench(argv: list[str]) -> int:
    try:  # import_module looks in sys.modules first (and so honours a test's stand-in)
        bench = importlib.import_module("xpnet.bench")
    except ImportError as e:
        if getattr(e, "name", None) not in ("xpnet.bench", None):
            raise
        print(
            "xpnet: error: the benchmark module (xpnet.bench) is not available in this installation "
            f"({e}); update xpnet",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return int(bench.main(argv) or 0)


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``xpnet predict ... | head``), so that
    a BrokenPipeError comes from our own output and not from something else (a socket, a file)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no descriptor: the usual cause
        return True


def _end_on_closed_pipe() -> int:
    """End quietly, as command-line tools do when their reader stops: no message, exit 141. stdout
    is pointed at devnull so that Python's last flush of what is still buffered stays quiet too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stdout without a descriptor
        pass
    return EXIT_CLOSED_PIPE


def main(argv: list[str] | None = None) -> int:
    """The ``xpnet`` command; returns its exit status. Output into a pipe whose reader has gone
    (``| head``) ends every command quietly with :data:`EXIT_CLOSED_PIPE`."""
    try:
        return _main(argv)
    except BrokenPipeError:  # --help, --version or bench output; the commands' own: see _run
        return _end_on_closed_pipe()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        if e.code:  # under mpiexec the other ranks would wait for this one for ever: end the job
            from ..parallel import abort_launched

            abort_launched(int(e.code))
        return int(e.code or 0)
    if args.version:
        from .. import __version__

        say(f"xpnet {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    problem = usage_problem(args) if args.command == "train" else None
    if problem:
        from ..parallel import abort_launched

        print(f"usage: xpnet train [options] (see xpnet train --help)\nxpnet train: error: {problem}",
              file=sys.stderr)
        abort_launched(EXIT_USAGE)
        return EXIT_USAGE
    return _run(args)


def _run(args) -> int:
    """The command's exit status; every error a sentence on stderr, never a traceback (unless
    XPNET_DEBUG=1)."""
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError as e:
        if _reader_gone():
            return _end_on_closed_pipe()
        print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except XPNetError as e:
        print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"xpnet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the last resort: a sentence, not a traceback (XPNET_DEBUG=1 shows it)
        if os.environ.get("XPNET_DEBUG") == "1":
            raise
        if isinstance(e, MemoryError):  # the machine's limits, not a bug
            print(f"xpnet {args.command}: error: out of memory ({e}); use a smaller model, batch or "
                  f"dataset", file=sys.stderr)
        elif isinstance(e, OSError):
            print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        else:
            print(
                f"xpnet {args.command}: internal error: {type(e).__name__}: {e} (please report; "
                f"XPNET_DEBUG=1 shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_ERROR
