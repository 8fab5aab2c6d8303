"""A trainer as one rank of a data-parallel job (see :mod:`xpnet.parallel`): the ranks agree on
the run, rank 0's weights are broadcast, each rank trains on its slice of every global batch and
evaluates its shard of the data; one allreduce of the gradients per step."""

from __future__ import annotations

import numpy as np

from ..backend import backend_name, from_host_like, to_numpy
from ..errors import ConfigError


def join(trainer, comm, compile) -> None:
    """Make ``trainer`` one of ``comm.size`` ranks: the global batch split evenly, the ranks'
    runs compared (model, optimizer, data, options) before anything else goes between them, then
    rank 0's weights and optimizer state broadcast."""
    b, n = trainer.loader.batch_size, comm.size
    if b % n:
        lower, higher = b - b % n, b - b % n + n
        raise ConfigError(
            f"the batch size is the global batch, split evenly over the {n} MPI ranks, but {b} is not a "
            f"multiple of {n}; use --batch-size {lower or higher}" + (f" or {higher}" if lower else "")
        )
    m, o = trainer.model, trainer.optimizer
    comm.agree(run_description(trainer, compile))
    for arrays in (m.params, m.state, *(o.state[s] for s in o.slots)):
        comm.broadcast_(arrays)
    trainer.comm = comm


def run_description(trainer, compile) -> dict:
    """What every rank of a data-parallel job must share, checked before the first
    collective (a difference would train on a mix, or hang): the model, the optimizer and
    its state's step, the data (shapes and checksums), the batch size, seed and options."""
    from ..parallel import fingerprint

    m, o = trainer.model, trainer.optimizer
    ref = next(iter(m.params.values()))
    data = (("training features", trainer.x_train), ("training labels", trainer.t_train),
            ("test features", trainer.x_test), ("test labels", trainer.t_test))
    return {"backend": backend_name(ref), "dtype": str(ref.dtype), "model": m.describe(),
            "loss": type(m.loss_layer).__name__, "optimizer": (type(o).__name__, o.config()),
            "optimizer step": int(o.state["step"]), "batch size": trainer.loader.batch_size, "seed": trainer.seed,
            "compile": compile, "dataset": trainer.meta.get("dataset"), "patience": trainer.early.patience,
            "save_every": trainer.save_every, **{what: fingerprint(a) for what, a in data}}


def train_epoch(trainer):
    """This rank's part of an epoch: its slice of each global batch (see
    :func:`~xpnet.parallel.shards`); returns its samples' loss sum over the training set's
    size (the ranks' values add up to the epoch's mean loss). Each slice's gradient comes from
    the step (one compiled call on jax), the update after the allreduce."""
    from ..parallel import batch_rows, draw_without_rows, shards

    model, update, step, loader = trainer.model, trainer.update, trainer.step, trainer.loader
    xp, n, b, total = loader.xp, loader.num_samples, loader.batch_size, None
    idx_all = from_host_like(loader.order().astype(np.int64), trainer.x_train)
    trainer.step_losses = []
    for start, (lo, hi, share) in zip(range(0, n, b), shards(n, b, trainer.comm.rank, trainer.comm.size)):
        rows = (lo - start, hi - start, min(b, n - start))  # this rank's rows of the global batch
        if hi == lo:  # a last global batch smaller than the ranks: nothing to add here
            draw_without_rows(model, trainer.x_train[0:1, ...], rows[2])
            update(model.params, None, 0.0)
            trainer.stop_check()
            continue
        idx = idx_all[lo:hi]
        with batch_rows(model, *rows):
            loss, grads = step.gradient(xp.take(trainer.x_train, idx, axis=0), xp.take(trainer.t_train, idx, axis=0))
        update(model.params, grads, share)
        trainer.stop_check()
        trainer.step_losses.append(loss)
        total = loss * (hi - lo) if total is None else total + loss * (hi - lo)
    if model.state:  # running statistics gathered from this rank's slices: the ranks' mean
        trainer.comm.average_(model.state)
    return None if total is None else total / n


def metrics(trainer, train_loss) -> np.ndarray:
    """The epoch's metrics over the whole training and test sets: each rank evaluates its
    contiguous shard, and one small allreduce adds the shards' sample-weighted means."""
    from .history import evaluate

    rank, size = trainer.comm.rank, trainer.comm.size
    local = [0.0 if train_loss is None else float(to_numpy(train_loss))]
    sets = [(trainer.x_train, trainer.t_train, (1,))]
    if trainer.x_test is not None:
        sets.append((trainer.x_test, trainer.t_test, (0, 1)))
    for x, t, keep in sets:
        n = x.shape[0]
        lo, hi = rank * n // size, (rank + 1) * n // size
        means = trainer.step.evaluate(evaluate, x[lo:hi, ...], t[lo:hi, ...]) if hi > lo else (0.0, 0.0)
        local += [float(to_numpy(means[i])) * (hi - lo) / n if hi > lo else 0.0 for i in keep]
    return trainer.comm.sum(local)
