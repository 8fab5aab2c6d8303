"""The trainer: epochs of shuffled minibatches through one step, with small parts around it
(placement, checkpoints, rollback, stop signals, early stopping, progress, sharding)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import checkpoint as ckpt
from ..backend import device_context, to_numpy
from ..checks import optional_size_arg, size_arg
from ..compile import make_step
from ..data import Loader
from ..errors import ConfigError, NonFiniteError
from ..lm import perplexity
from ..model import Sequential, check_trainable
from ..optimizers import Optimizer
from ..outputs import Output, _same_file, claim_output
from . import placement, rollback, sharding
from .checkpoints import Checkpoints, check_resume_meta, checkpoint_bytes
from .early import EarlyStopping
from .history import History, epoch_metrics
from .history import Progress as _Progress
from .signals import _AgreedStop, _StopSignals


class Trainer:
    """Train ``model`` with ``optimizer`` on ``data``.

    ``data``: a host :class:`~xpnet.datasets.Dataset` (moved once to the model's device and
    dtype), or a tuple ``(x_train, t_train, x_test, t_test)`` of arrays already there
    (``x_test``/``t_test`` may be None). ``seed`` seeds the shuffles. ``out``: a folder for
    the checkpoint and the history, claimed now (see :func:`~xpnet.outputs.claim_output`: a
    folder holding another run is refused unless ``overwrite=True``; two runs never share one).
    ``patience``: stop early after that many epochs without a lower test loss. ``save_every``:
    also write the checkpoint every that many epochs (it is always written at the end, on a stop
    signal and on a non-finite loss, once this run has completed an epoch). ``meta``: JSON values
    stored in the checkpoint (dataset, config). ``log``: where per-epoch lines go (``None`` for
    silence). ``resumed_from``: the checkpoint this run continues (set by :meth:`resume`).
    ``comm``: a :class:`~xpnet.parallel.Communicator` of more than one rank makes this trainer one
    rank of a data-parallel job (``batch_size`` is then the global batch; see
    :mod:`xpnet.train.sharding`). ``compile``: ``"auto"`` (compile the step where xpnet has a
    compiler for the backend: jax), ``"on"`` (the same, and an error where there is none) or
    ``"off"`` (eager); see :mod:`xpnet.compile`. The first epoch's compile time is recorded apart
    (``compile_seconds``).
    """

    def __init__(self, model: Sequential, optimizer: Optimizer, data, batch_size: int = 64, seed: int = 0,
                 out=None, patience: int | None = None, save_every: int | None = None, meta: dict | None = None,
                 log: Callable[[str], None] | None = print, progress: bool | None = None, quiet: bool = False,
                 overwrite: bool = False, resumed_from=None, compile: str = "auto", comm=None):
        check_trainable(model, "the trainer")
        if not isinstance(optimizer, Optimizer):
            raise ConfigError(f"optimizer must be an xpnet optimizer (e.g. xpnet.Adam()), got "
                              f"{type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self.x_train, self.t_train, self.x_test, self.t_test, host_labels = placement.place(model, data)
        self.seed = size_arg("seed", seed, least=0)
        self.loader = Loader(self.x_train, self.t_train, batch_size, shuffle=True, seed=[self.seed, 1])
        self.early = EarlyStopping(patience)
        self.save_every = optional_size_arg("save_every", save_every)
        placement.check_lr(optimizer, model)
        self.meta = dict(meta or {})
        self.comm, self.update, self._stop, self.step_losses = None, optimizer.update, None, []
        self.step = make_step(model, optimizer, compile, distributed=comm is not None and comm.size > 1)
        if comm is not None and comm.size > 1:
            sharding.join(self, comm, compile)
            from ..parallel import DistributedOptimizer  # the allreduce between the gradient and the update

            self.update = DistributedOptimizer(optimizer, comm, apply=self.step.apply).update
            if comm.rank != 0:  # rank 0 alone claims the folder, prints and writes
                out, log, quiet = None, None, True
        self.log = None if quiet else log
        self.progress, self.quiet = progress, quiet
        self.epoch = 0
        self.history = History()
        self._good: rollback.Snapshot | None = None  # the last completed epoch, to roll back to
        sets = [("training labels", self.t_train, self.x_train)]
        if self.x_test is not None:
            sets.append(("test labels", self.t_test, self.x_test))
        placement.check_labels(model, sets, host_labels)  # once here; the steps skip the check
        if out is not None and not isinstance(out, Output):  # claimed last: every other argument was checked
            out = claim_output(out, overwrite, resumed_from, 2 * checkpoint_bytes(model, optimizer))
        self.checkpoints = Checkpoints(out, overwrite)

    patience = property(lambda self: self.early.patience, doc="Early stopping's patience (None: off).")

    @property
    def output(self) -> Output | None:
        return self.checkpoints.output

    @property
    def out(self) -> Path | None:
        return self.checkpoints.folder

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoints.path

    def close(self) -> None:
        """Release the output folder for other runs (also done when the trainer is collected)."""
        if self.output is not None:
            self.output.close()

    # ------------------------------------------------------------------ checkpoints
    def state_meta(self) -> dict:
        """What a checkpoint stores besides arrays, for an exact resume."""
        return {**self.meta, "epoch": self.epoch, "seed": self.seed, "batch_size": self.loader.batch_size,
                "loader_rng": self.loader.rng_state, "history": self.history.records,
                "early_stopping": self.early.to_meta()}  # what decides when the rest of the run stops

    def save(self, path=None) -> Path:
        """Write the current state's checkpoint to ``path`` (default ``OUT/checkpoint.npz``)."""
        path = path or self.checkpoint_path
        if path is None:
            raise ConfigError("no checkpoint path: pass save(path) or give the trainer an out= folder")
        return ckpt.save(path, self.model, self.optimizer, self.state_meta())

    @classmethod
    def resume(cls, path, data, backend=None, device=None, dtype=None, lr=None, weight_decay=None,
               **kwargs) -> Trainer:
        """A trainer continuing from checkpoint ``path`` (weights, optimizer, epoch, shuffles, early
        stopping). ``data`` as for :class:`Trainer`; ``kwargs`` are its other options (``out``,
        ``log``, ``batch_size``, ``patience``...). ``dtype``, ``lr`` and ``weight_decay`` override the
        checkpoint's; the checkpoint's patience goes on unless another is given."""
        return resume(cls, path, data, backend, device, dtype, lr, weight_decay, **kwargs)

    # ------------------------------------------------------------------ training
    def train_epoch(self):
        """One pass over the shuffled training set; returns the mean minibatch loss (0-d array)."""
        if self.comm is not None:
            return sharding.train_epoch(self)
        losses, mean = self.step.epoch(self.x_train, self.t_train, self.loader.order(), self.loader.batch_size,
                                       after_step=self.stop_check)
        self.step_losses = [losses]  # read back only if the epoch's loss is not finite
        return mean

    def stop_check(self) -> None:
        """Stop here when a stop signal came (see :class:`~xpnet.train.signals._StopSignals`);
        under MPI, every rank stops after this step when the signal reached any of them."""
        stop = self._stop
        if stop is None:
            return
        if self.comm.any(bool(stop.requested)) if self.comm is not None else stop.requested:
            stop.handled = True
            raise _AgreedStop

    def _epoch_record(self, epoch: int, train_loss, seconds: float) -> dict:
        if self.comm is not None:
            host = sharding.metrics(self, train_loss)
        else:
            sets = (self.x_train, self.t_train) + (() if self.x_test is None else (self.x_test, self.t_test))
            metrics = self.step.evaluate(epoch_metrics, *sets)
            host = np.concatenate([np.reshape(to_numpy(train_loss), (1,)), to_numpy(metrics)]).astype(np.float64)
        rec = {"epoch": epoch, "train_loss": float(host[0]), "train_acc": float(host[1])}
        if self.x_test is not None:
            rec.update(test_loss=float(host[2]), test_acc=float(host[3]))
        if getattr(self.model, "reports_perplexity", False):  # a language model: exp of the losses too
            rec.update({k.replace("loss", "ppl"): perplexity(v) for k, v in list(rec.items()) if k.endswith("loss")})
        rec["seconds"] = round(seconds, 4)
        return rec

    def fit(self, epochs: int) -> History:
        """Train until ``epochs`` epochs in all have run (counting those before a resume).

        Returns the :class:`History`. A NaN or inf loss raises NonFiniteError after rolling the
        model back to the last completed epoch (and writing it, if this run completed one);
        Ctrl-C, SIGTERM or SIGHUP does the same rollback and returns with ``history.stopped ==
        "interrupted"``.
        """
        epochs = size_arg("epochs", epochs)
        if epochs <= self.epoch:
            raise ConfigError(f"epochs is the total number of epochs: {epochs} were asked for, but "
                              f"{self.epoch} have already run; ask for more than {self.epoch}")
        if self.comm is not None:  # every rank asked for the same number, from the same epoch
            self.comm.agree({"epochs": epochs, "epoch reached": self.epoch}, "run length")
        self.checkpoints.check_room(self.model, self.optimizer, epochs)
        if self._good is None or self._good.epoch != self.epoch:  # else keep the state verified at that epoch
            self._good = rollback.take(self)
        progress = _Progress(epochs, self.epoch, self.progress, self.quiet, self.log)
        self.history.stopped, self.history.signal, stop = "running", None, None
        try:
            # a diverging run overflows on the way; the loss check names it, once. The model's device
            # is made current for the work (CuPy runs kernels on its current device)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
                    device_context(self.model.reference_array), _StopSignals() as stop:
                self._stop = stop
                self._epochs(epochs, progress)
        except KeyboardInterrupt as e:
            if self.comm is not None and not isinstance(e, _AgreedStop):
                raise  # a second Ctrl-C: the other ranks may wait inside a collective, end the job
            return self._interrupted(None if stop is None else stop.name)
        finally:
            self._stop = None
            progress.close()
        if self.history.stopped == "running":
            self.history.stopped = "completed"
        saved = self.checkpoints.write(self)
        self.history.checkpoint = None if saved is None else os.fspath(saved)
        return self.history

    def _epochs(self, epochs: int, progress: _Progress) -> None:
        while self.epoch < epochs:
            self.stop_check()  # a signal while the last epoch was recorded or written
            rec = self._one_epoch()
            self.history.records.append(rec)
            self.epoch = rec["epoch"]
            self._good = rollback.take(self)
            progress.epoch(rec, epochs)
            if self.save_every and self.epoch % self.save_every == 0:
                self.checkpoints.write(self)
            if self.early.stops(rec):
                self.history.stopped = "early"
                progress.say(self.early.message())
                break

    def _one_epoch(self) -> dict:
        """Train and evaluate one epoch; its record (a non-finite loss rolls back and raises)."""
        t0, c0 = time.perf_counter(), self.step.compile_seconds
        mean_loss = self.train_epoch()
        self.stop_check()  # after a compiled epoch: one call, looked at when it returns
        rec = self._epoch_record(self.epoch + 1, mean_loss, 0.0)
        compiling = self.step.compile_seconds - c0  # both calls
        rec["seconds"] = round(time.perf_counter() - t0 - compiling, 4)
        if compiling:
            rec["compile_seconds"] = round(compiling, 4)
        for note in self.step.notes:
            if self.log is not None:
                self.log(f"note: {note}")
        self.step.notes.clear()
        bad = [k for k in ("train_loss", "test_loss") if k in rec and not math.isfinite(rec[k])]
        if bad:
            self._diverged(rec, bad[0])
        return rec

    def _interrupted(self, signal_name: str | None) -> History:
        rollback.restore(self, self._good)
        self.history.stopped, self.history.signal = "interrupted", signal_name
        saved = self.checkpoints.write(self)
        self.history.checkpoint = None if saved is None else os.fspath(saved)
        if self.log:
            by = f" by {signal_name}" if signal_name else ""
            msg = f"interrupted{by}: stopped after epoch {self.epoch}"
            if saved is not None:
                msg += f"; checkpoint saved to {saved} (resume with --resume {saved})"
            elif self.out is None:
                msg += " (no output folder: nothing written)"
            else:
                msg += f", the first of this run had not completed; nothing was written to {os.fspath(self.out)!r}"
            self.log(msg)
        return self.history

    def _diverged(self, rec: dict, column: str) -> None:
        step = _first_bad_step(self.step_losses)
        if self.comm is not None:  # the first step at which any rank's slice went bad (every rank is here)
            none = np.iinfo(np.int64).max
            step = self.comm.min(none if step is None else step)
            step = None if step == none else step
        rollback.restore(self, self._good)
        self.history.stopped = "diverged"
        saved, kept = self.checkpoints.write(self), self.checkpoints.saved_epoch
        if saved is not None:
            where = f"; the last good checkpoint (epoch {self.epoch}) is in {saved}"
        elif kept is not None:
            where = f"; the last good checkpoint (epoch {kept}) is in {self.checkpoint_path}"
        else:
            where = "; no epoch of this run completed, so nothing was written"
        at = f", step {step} of {len(self.loader)}" if step else ""
        raise NonFiniteError(
            f"the {column.replace('_', ' ')} became {rec[column]} in epoch {rec['epoch']}{at}{where}. "
            f"The model is back at epoch {self.epoch}. Lower the learning rate (now {self.optimizer.lr}) "
            "or check the inputs."
        )


def resume(cls, path, data, backend, device, dtype, lr, weight_decay, **kwargs) -> Trainer:
    """:meth:`Trainer.resume`, for ``cls``."""
    model, optimizer, meta = ckpt.load(path, backend=backend, device=device, dtype=dtype)
    check_resume_meta(meta, path)
    if optimizer is None:
        raise ConfigError(f"checkpoint {os.fspath(path)!r} has no optimizer state; it cannot be resumed")
    if lr is not None:
        optimizer.lr = type(optimizer)(lr=lr).lr  # validated as a new optimizer's would be
    if weight_decay is not None:
        optimizer.weight_decay = type(optimizer)(weight_decay=weight_decay).weight_decay
    kwargs.setdefault("batch_size", meta.get("batch_size", 64))
    kwargs.setdefault("seed", meta.get("seed", 0))
    early = meta.get("early_stopping") or {}
    if kwargs.get("patience") is None:
        kwargs["patience"] = early.get("patience")
    run_state = ("epoch", "seed", "batch_size", "loader_rng", "history", "xpnet_version", "dtype", "early_stopping")
    extra = {k: v for k, v in meta.items() if k not in run_state}
    kwargs["meta"] = {**extra, **kwargs.get("meta", {}), "lr": optimizer.lr}
    trainer = cls(model, optimizer, data, resumed_from=path, **kwargs)
    trainer.epoch = trainer.checkpoints.first_epoch = int(meta.get("epoch", 0))
    trainer.history.records = list(meta.get("history", []))
    if "loader_rng" in meta:
        trainer.loader.rng_state = meta["loader_rng"]
    if early:
        trainer.early.restore(early)
    if trainer.out is not None and _same_file(path, trainer.checkpoint_path):
        trainer.checkpoints.saved_epoch = trainer.epoch
    return trainer


def _first_bad_step(step_losses) -> int | None:
    """1-based step of an epoch whose minibatch loss was first NaN or inf (one sync)."""
    losses = [np.reshape(to_numpy(v), (-1,)) for v in step_losses or []]
    bad = np.flatnonzero(~np.isfinite(np.concatenate(losses))) if losses else []
    return int(bad[0]) + 1 if len(bad) else None
