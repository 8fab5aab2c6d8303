"""Building a workload's contenders and timing them interleaved, with the CPU seconds each used."""

from __future__ import annotations

import gc
import importlib.util
import statistics

from .contenders import (
    NOT_AVAILABLE,
    Contender,
    NumpyBuffers,
    NumpyTextbook,
    TorchNative,
    Unavailable,
    XPNet,
    XPNetCompiled,
    XPNetOpsInlined,
)
from .cores import CpuClock
from .gpu import CudaTimer
from .loops import loop_contenders
from .workloads import Workload

# backends that are for correctness, not speed: a few steps are timed and scaled to the epoch
SLOW_BACKENDS = {"dask": 8, "array_api_strict": 60, "jax": 60}
# workloads that also time the README's loop (a shuffle each epoch, a gather each batch)
LOOP_WORKLOADS = ("W1", "W3")


def _built(out: list, errors: dict, key: str, make) -> None:
    try:
        out.append(make())
    except Unavailable as e:
        errors[key] = f"{NOT_AVAILABLE}: {e}"
    except Exception as e:
        errors[key] = f"{type(e).__name__}: {e}"


def contenders_for(w: Workload, X, T, backends, gpu, errors: dict, loops: bool = False) -> list[Contender]:
    """The contenders of workload ``w``; ``gpu``: a dict of GPU makers (:func:`gpu_makers`),
    or a false value for the CPU table; ``loops``: add the README-loop contenders
    (:mod:`xpnet.bench.loops`). A contender that cannot be built is left out and its
    error kept in ``errors`` under ``"<workload> <contender>"``."""
    out: list[Contender] = []
    if w.kind != "mlp" and not gpu:  # W4, W5: their own networks and contenders
        return network_contenders(w, X, T, backends, errors)
    if gpu:
        for name, make in gpu.items():
            _built(out, errors, f"{w.name} {name}", lambda make=make: make(w, X, T))
        return out
    out += [NumpyTextbook(w, X, T), NumpyBuffers(w, X, T)]
    if "numpy" in backends:
        out.append(XPNetOpsInlined(w, X, T))
    for name in backends:
        _built(out, errors, f"{w.name} xpnet[{name}]", lambda name=name: XPNet(w, X, T, name))
    if "jax" in backends:
        for epoch in (False, True):
            _built(out, errors, f"{w.name} xpnet[jax] compiled {'epoch' if epoch else 'step'}",
                   lambda epoch=epoch: XPNetCompiled(w, X, T, "jax", epoch=epoch))
    if importlib.util.find_spec("torch") is not None:
        out.append(TorchNative(w, X, T))
    if loops:
        out += loop_contenders(w, X, T, backends, errors)
    return out


def network_contenders(w: Workload, X, T, backends, errors: dict) -> list[Contender]:
    """W4's or W5's CPU contenders (``CONTENDERS`` of :mod:`.convnet` / :mod:`.lstm`): numpy
    textbook, torch native, xpnet eager on numpy and torch, xpnet[jax] compiled. One that
    cannot be built is left out with its reason ("not available: ..." where a module or
    library is absent)."""
    if w.kind == "cnn":
        from .convnet import CONTENDERS
    else:
        from .lstm import CONTENDERS
    textbook, torch_cls, xpnet_cls, (compiled_name, compiled_cls, epoch) = CONTENDERS
    out: list[Contender] = [textbook(w, X, T)]
    have = {name: importlib.util.find_spec(name) is not None for name in ("torch", "jax")}
    if have["torch"]:
        _built(out, errors, f"{w.name} torch native", lambda: torch_cls(w, X, T))
    else:
        errors[f"{w.name} torch native"] = f"{NOT_AVAILABLE}: torch is not installed"
    for name in backends:
        if name in ("numpy", "torch"):  # the others are correctness backends; jax's row is compiled
            _built(out, errors, f"{w.name} xpnet[{name}]", lambda name=name: xpnet_cls(w, X, T, name))
    if "jax" in backends:
        _built(out, errors, f"{w.name} {compiled_name}", lambda: compiled_cls(w, X, T, "jax", epoch=epoch))
    elif not have["jax"]:
        errors[f"{w.name} {compiled_name}"] = f"{NOT_AVAILABLE}: jax is not installed"
    return out


def _timer(c: Contender):
    if c.kind == "cuda":
        return CudaTimer(c.lib).run
    return lambda c, start, k, nb: c.run(start, k, nb)


def measure(w: Workload, contenders: list[Contender], repeats: int, warmup: int = 3,
            errors: dict | None = None) -> dict:
    """Interleaved timing: for each repeat, every contender runs the timed steps in turn.

    Each row also gets the CPU seconds per wall second of its timed runs (``cpu_per_wall``:
    every thread of the process, user + system): at most the cores the process is held to.

    A contender whose step fails (a GPU kernel that cannot load, out of memory...) is
    dropped with its error kept in ``errors`` under ``"<workload> <contender>"``; the others
    go on.
    """
    nb = w.steps_per_epoch
    errors = {} if errors is None else errors
    k_of = {c.name: min(w.timed_steps, SLOW_BACKENDS.get(c.backend, w.timed_steps)) for c in contenders}
    timers = {c.name: _timer(c) for c in contenders}
    clocks = {c.name: CpuClock() for c in contenders}
    alive = list(contenders)

    def timed(c, start, k, clock=None):
        try:
            if clock is None:
                return timers[c.name](c, start, k, nb)
            with clock.timing():
                return timers[c.name](c, start, k, nb)
        except Exception as e:
            errors[f"{w.name} {c.name}"] = f"{type(e).__name__}: {e}"
            alive.remove(c)
            return None

    for c in list(alive):  # warm-up: caches, lazy imports, kernels, compiles
        timed(c, 0, k_of[c.name] if c.warm_whole else min(warmup, nb))
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for c in list(alive if r % 2 == 0 else alive[::-1]):
                k = k_of[c.name]
                t = timed(c, (r * k) % nb, k, clocks[c.name])
                if t is not None:
                    samples[c.name].append(t * nb / k)
    finally:
        if gc_was:
            gc.enable()
    return {c.name: {"epoch_s": statistics.median(samples[c.name]), "samples_s": samples[c.name],
                     "steps_timed": k_of[c.name], "steps_per_epoch": nb,
                     "cpu_s": clocks[c.name].cpu, "wall_s": clocks[c.name].wall,
                     "cpu_per_wall": clocks[c.name].ratio} for c in alive}
