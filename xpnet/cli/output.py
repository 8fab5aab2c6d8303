"""What every command shares: its exit statuses and how it prints a line."""

from __future__ import annotations

import sys

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
EXIT_HANGUP = 129
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head`, the reader gone


def signal_status(name: str | None) -> int:
    """The exit status of a run stopped by the signal ``name`` (None: Ctrl-C)."""
    return {"SIGTERM": EXIT_TERMINATED, "SIGHUP": EXIT_HANGUP}.get(name, EXIT_INTERRUPTED)


def interrupted_status(history) -> int:
    return signal_status(history.signal)


def say(text: str = "") -> None:
    """Print a line of the command's output at once."""
    try:
        print(text, flush=True)
    except UnicodeEncodeError:  # e.g. a path of non-UTF-8 bytes on a UTF-8 terminal
        enc = sys.stdout.encoding or "utf-8"
        print(text.encode(enc, "backslashreplace").decode(enc), flush=True)
