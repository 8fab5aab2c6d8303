"""Stop signals during training: Ctrl-C, SIGTERM and SIGHUP recorded, then acted on between steps."""

from __future__ import annotations

import signal


class _AgreedStop(KeyboardInterrupt):
    """A stop signal, acted on between steps (every rank after the same step, under MPI)."""


# the signals that stop training with the last completed epoch saved, and how each is named
STOP_SIGNALS = {signal.SIGINT: None, signal.SIGTERM: "SIGTERM"}
if hasattr(signal, "SIGHUP"):  # a closed terminal or ssh session (not on Windows)
    STOP_SIGNALS[signal.SIGHUP] = "SIGHUP"


class _StopSignals:
    """For the duration of :meth:`Trainer.fit`: Ctrl-C (SIGINT), SIGTERM and SIGHUP turned into a
    stop that keeps the completed epochs.

    SIGTERM is what ``kill``, ``docker stop`` and a batch system at a job's time limit send
    before a SIGKILL, SIGHUP what a closed terminal or ssh session sends; their default actions
    end the process at once, losing every epoch since the last checkpoint. The first of these
    signals only records itself in ``requested``; the trainer looks between steps (and after each
    compiled call), then rolls back to the last completed epoch and writes it. Nothing is raised
    inside a library call: an exception raised from a signal handler inside jax's compiler or its
    garbage-collection callback can be swallowed there, or leave the process to crash at exit.
    Under MPI the launcher forwards the signal to every rank, each at another point of its step;
    the ranks ask each other once per step (:meth:`Communicator.any`), so all of them stop after
    the same step. A second signal raises KeyboardInterrupt at once (under MPI the job is then
    aborted, keeping the last checkpoint written). A handler the program installed itself is left
    in place (so is SIGHUP ignored by ``nohup``), and outside the main thread, where no handler
    can be set, nothing changes."""

    _active: _StopSignals | None = None  # the one whose handlers are installed: nested uses share it

    def __init__(self, stop_at_exit: bool = True):
        self.requested = 0  # the number of the signal that asked for the stop
        self.handled = False  # the trainer acted on it (rolled back and saved)
        self.stop_at_exit = stop_at_exit  # a signal not acted on yet raises _AgreedStop on exit
        self._previous = {}
        self._outer = None

    @property
    def name(self) -> str | None:
        """How the stop is named: ``"SIGTERM"``, ``"SIGHUP"``, or None for Ctrl-C."""
        return STOP_SIGNALS.get(self.requested)

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> _StopSignals:
        """The signals recorded from now on; inside another ``_StopSignals`` (the CLI's, around
        the whole command), that one, so a signal during the set-up is seen by ``fit``."""
        if _StopSignals._active is not None:
            self._outer = _StopSignals._active
            return self._outer
        for sig in STOP_SIGNALS:
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            if signal.getsignal(sig) is not default:
                continue  # the program's own handler, or an ignored signal
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                break
        _StopSignals._active = self if self._previous else None
        return self

    def __exit__(self, *exc):
        if self._outer is not None:
            self._outer = None
            return False
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        _StopSignals._active = None
        if self.requested and not self.handled and exc[0] is None and self.stop_at_exit:
            self.handled = True  # came after the last check: fit saves and reports it as a stop
            raise _AgreedStop
        return False
