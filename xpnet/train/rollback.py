"""The last completed epoch, kept on the device: what a diverged or interrupted epoch is rolled
back to (no host copy, no serialisation)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np


@dataclass
class Snapshot:
    epoch: int
    records: int
    params: dict
    state: dict
    opt_step: int
    opt_slots: dict
    loader_rng: dict
    layer_rngs: list
    best: tuple


def _rng_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(getattr(layer, "rng", None), np.random.Generator)]


def take(trainer) -> Snapshot:
    """Copies of everything the trainer's current epoch leaves (the step's own copies: a compiled
    step donates its inputs, so the snapshot never shares an array, or a dict, with it)."""
    m, o, cp = trainer.model, trainer.optimizer, trainer.step.copy
    return Snapshot(
        trainer.epoch, len(trainer.history.records), cp(dict(m.params.items())), cp(dict(m.state.items())),
        o.state["step"], {s: cp(o.state[s]) for s in o.slots}, copy.deepcopy(trainer.loader.rng_state),
        [copy.deepcopy(layer.rng.bit_generator.state) for layer in _rng_layers(m)], trainer.early.best,
    )


def restore(trainer, snap: Snapshot) -> None:
    """Put the model, optimizer, shuffles, history and early stopping back to ``snap`` (copies:
    the snapshot stays usable)."""
    m, o, cp = trainer.model, trainer.optimizer, trainer.step.copy
    m.params.update(cp(snap.params))
    m.state.update(cp(snap.state))
    o.state["step"] = snap.opt_step
    for s, slot in snap.opt_slots.items():
        o.state[s] = cp(slot)
    trainer.loader.rng_state = copy.deepcopy(snap.loader_rng)
    for layer, state in zip(_rng_layers(m), snap.layer_rngs):
        layer.rng.bit_generator.state = copy.deepcopy(state)
    del trainer.history.records[snap.records:]
    trainer.epoch, trainer.early.best = snap.epoch, snap.best
