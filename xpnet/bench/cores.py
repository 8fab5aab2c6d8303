"""Holding a measurement to the cores it claims, and showing how many it used.

A thread count is a request: XLA's CPU runtime, for one, runs work on a second core even with
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``. Only an affinity mask
holds a process to ``n`` cores, so every measurement here runs pinned: a child process pinned
before it starts (:func:`children_pinned`, so the threads a library starts at import inherit
the mask) or, in the running process, every thread pinned and restored after (:func:`pinned`).
CPU seconds per wall second (:class:`CpuClock`) over the timed part show what was used: at
most the number of cores the process is held to.

Linux only (``os.sched_setaffinity``); elsewhere nothing is pinned and the notes say so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time

CAN_PIN = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def parse_cpus(text: str) -> tuple[int, ...]:
    """``"0,2"`` or ``"0-3"`` as a sorted tuple of core ids; ``ValueError`` on anything else."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"expected core ids like 0,1 or 0-3, got {text!r}")
        out.update(range(int(lo), int(hi or lo) + 1))
    if not out:
        raise ValueError(f"expected core ids like 0,1 or 0-3, got {text!r}")
    return tuple(sorted(out))


def allowed() -> tuple[int, ...]:
    """The cores this process may run on."""
    if not CAN_PIN:
        return tuple(range(os.cpu_count() or 1))
    return tuple(sorted(os.sched_getaffinity(0)))


def choose(n: int, cpus: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """``n`` cores to pin to: ``cpus`` when given (checked against the allowed ones), else the
    last ``n`` allowed (core 0 takes most of the machine's interrupts)."""
    ok = allowed()
    if cpus is not None:
        bad = [c for c in cpus if c not in ok]
        if bad:
            raise ValueError(f"core(s) {bad} not available to this process (allowed: {list(ok)})")
        if len(cpus) != n:
            raise ValueError(f"{len(cpus)} core(s) given for {n} thread(s); give one core a thread")
        return tuple(cpus)
    if n > len(ok):
        raise ValueError(f"{n} thread(s) asked for, but this process may use only {len(ok)} core(s)")
    return ok[-n:]


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def pin_all(cpus) -> None:
    """Pin every thread of this process (and the threads they start from now on) to ``cpus``.
    ``sched_setaffinity(0, ...)`` alone sets the calling thread only."""
    for tid in _threads():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(cpus):
    """Every thread of this process held to ``cpus`` inside the block; the mask the process had
    is given back to every thread after it. No-op where affinity cannot be set."""
    if not CAN_PIN or cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    pin_all(cpus)
    try:
        yield
    finally:
        pin_all(before)


@contextlib.contextmanager
def children_pinned(cpus):
    """Processes started inside the block begin pinned to ``cpus``, before they run anything (a
    child inherits the mask of the thread that starts it; this thread gets its own back after).
    No ``preexec_fn``: that forces a plain fork, which jax warns about in a threaded process."""
    if not CAN_PIN or cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, tuple(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def held_to() -> int:
    """How many cores this process may run on now."""
    return len(allowed())


class CpuClock:
    """Wall and CPU seconds (user + system, every thread of this process) of a timed part."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    @contextlib.contextmanager
    def timing(self):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield self
        finally:
            self.cpu += time.process_time() - c0
            self.wall += time.perf_counter() - w0

    @property
    def ratio(self) -> float | None:
        """CPU seconds per wall second: 1.0 is one busy core, above 1.0 parallel work."""
        return self.cpu / self.wall if self.wall > 0 else None


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have been waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
