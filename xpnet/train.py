"""The trainer: epochs of shuffled minibatches, evaluation, history, checkpoints, resume.

Quick use::

    from xpnet.train import fit
    history = fit("digits", epochs=40)          # the defaults of ``xpnet train``
    print(history.last["test_acc"])

or, with a model and optimizer of your own::

    trainer = Trainer(model, optimizer, dataset, batch_size=64, seed=0, out="runs/x")
    history = trainer.fit(epochs=40)

``epochs`` is the total number of epochs: a trainer resumed from a checkpoint written after
epoch N and asked for ``epochs=2N`` trains N more and ends in exactly the state (bit for bit,
in float64 on NumPy) of one uninterrupted run of 2N epochs, because the weights, the
optimizer state, the epoch counter and the shuffle generator's state are all restored.

Inside an epoch nothing is read back from the device: the minibatch losses are summed on
the device and read, together with the evaluation metrics, once per epoch. A NaN or inf
loss stops training with :class:`~xpnet.errors.NonFiniteError`; the checkpoint on disk is
then the last good epoch's. Ctrl-C (KeyboardInterrupt) writes the last completed epoch's
checkpoint and returns the history with ``stopped == "interrupted"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import functional as F
from .backend import from_host_like, host_dtype, namespace, to_numpy
from .data import Loader
from .errors import ConfigError, NonFiniteError
from .model import Sequential, mlp
from .optimizers import Optimizer, get_optimizer

# What ``xpnet train`` does with no arguments (measured: >= 98 % test accuracy on digits).
DEFAULTS = {
    "dataset": "digits",
    "hidden": (256,),
    "activation": "relu",
    "optimizer": "adam",
    "lr": 0.002,
    "epochs": 40,
    "batch_size": 64,
    "seed": 0,
    "scale": "minmax",
    "weight_decay": 0.0,
}
CHECKPOINT_NAME = "checkpoint.npz"
COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


@dataclass
class History:
    """Per-epoch records (``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
    ``seconds``) and why training stopped: ``completed``, ``early`` or ``interrupted``."""

    records: list = field(default_factory=list)
    stopped: str = "completed"
    checkpoint: str | None = None
    trainer: Trainer | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, column: str) -> list:
        return [r.get(column) for r in self.records]

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def to_json(self) -> str:
        return json.dumps({"stopped": self.stopped, "epochs": self.records}, indent=1)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(self.records)
        return buf.getvalue()

    def save(self, folder) -> tuple[Path, Path]:
        """Write ``history.json`` and ``history.csv`` into ``folder`` (atomically)."""
        folder = Path(folder)
        return (
            ckpt.write_atomic(folder / "history.json", self.to_json().encode()),
            ckpt.write_atomic(folder / "history.csv", self.to_csv().encode()),
        )


def check_writable(folder, need_bytes: int = 0) -> Path:
    """Create ``folder`` if needed, prove a file can be written there and that ``need_bytes``
    are free (room for two checkpoints), or raise ConfigError before any training starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * min(need_bytes, 1 << 20))
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as e:
        raise ConfigError(
            f"output directory {os.fspath(folder)!r} is not writable ({e.strerror or e}); "
            "choose another with --out DIR"
        ) from e
    if free < need_bytes:
        raise ConfigError(
            f"output directory {os.fspath(folder)!r} has {free} bytes free, but the checkpoints "
            f"need about {need_bytes}; free some space or choose another with --out DIR"
        )
    return folder


def _checkpoint_bytes(model: Sequential, optimizer: Optimizer) -> int:
    """A generous estimate of one checkpoint's size: parameters, state and optimizer slots."""
    arrays = list(model.params.values()) + list(model.state.values())
    n = sum(math.prod(a.shape) * host_dtype(a.dtype).itemsize for a in arrays)
    return n * (1 + len(optimizer.slots)) + (64 << 10)


def evaluate(model: Sequential, x, t, batch_size: int = 2048):
    """Mean loss and accuracy of ``model`` on ``(x, t)`` in evaluation mode, as two 0-d
    device arrays (no host sync)."""
    xp = namespace(x)
    n = x.shape[0]
    loss_sum = acc_sum = None
    for i in range(0, n, batch_size):
        xb, tb = x[i : min(i + batch_size, n), ...], t[i : min(i + batch_size, n), ...]
        scores = model.predict(xb, train=False, check=False)
        nb = xb.shape[0]
        loss = model.loss_layer.forward(scores, tb) * nb
        acc = F.accuracy(scores, tb, xp=xp) * nb
        loss_sum = loss if loss_sum is None else loss_sum + loss
        acc_sum = acc if acc_sum is None else acc_sum + acc
    return loss_sum / n, acc_sum / n


def _progress_bar(total: int, initial: int, enabled: bool | None, quiet: bool):
    """A tqdm bar over epochs when wanted and possible, else None."""
    if quiet or enabled is False:
        return None
    if enabled is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="epoch", leave=False, file=sys.stderr)


class Trainer:
    """Train ``model`` with ``optimizer`` on ``data``.

    ``data``: a host :class:`~xpnet.datasets.Dataset` (moved once to the model's device and
    dtype), or a tuple ``(x_train, t_train, x_test, t_test)`` of arrays already there
    (``x_test``/``t_test`` may be None). ``seed`` seeds the shuffles. ``out``: a folder for
    the checkpoint and the history (checked to be writable now). ``patience``: stop early
    after that many epochs without a lower test loss. ``save_every``: also write the
    checkpoint every that many epochs (it is always written at the end, on Ctrl-C and on
    a non-finite loss). ``meta``: JSON values stored in the checkpoint (dataset, config).
    ``log``: where per-epoch lines go (``None`` for silence).
    """

    def __init__(
        self,
        model: Sequential,
        optimizer: Optimizer,
        data,
        batch_size: int = 64,
        seed: int = 0,
        out=None,
        patience: int | None = None,
        save_every: int | None = None,
        meta: dict | None = None,
        log: Callable[[str], None] | None = print,
        progress: bool | None = None,
        quiet: bool = False,
    ):
        self.model, self.optimizer = model, optimizer
        self.x_train, self.t_train, self.x_test, self.t_test = self._on_device(data)
        self.seed = int(seed)
        self.loader = Loader(self.x_train, self.t_train, batch_size, shuffle=True, seed=[self.seed, 1])
        need = 2 * _checkpoint_bytes(model, optimizer)  # the old file stays until the new one is complete
        self.out = check_writable(out, need) if out is not None else None
        if patience is not None and int(patience) < 1:
            raise ConfigError(f"patience must be a positive number of epochs, got {patience!r}")
        self.patience = None if patience is None else int(patience)
        self.save_every = save_every
        self.meta = dict(meta or {})
        self.log = None if quiet else log
        self.progress, self.quiet = progress, quiet
        self.epoch = 0
        self.history = History()
        self._good: bytes | None = None  # the last good epoch's checkpoint bytes
        self._best = (math.inf, 0)
        # labels were validated when the data were made; skip the per-batch check (a sync)
        if hasattr(model.loss_layer, "check_labels"):
            self._check_data()
            model.loss_layer.check_labels = False

    # ------------------------------------------------------------------ data
    def _on_device(self, data):
        ref = next(iter(self.model.params.values()))
        if hasattr(data, "x_train"):
            dt = host_dtype(ref.dtype)

            def put(a, labels=False):
                return from_host_like(np.asarray(a, np.int64 if labels else dt), ref)

            return (put(data.x_train), put(data.t_train, True), put(data.x_test), put(data.t_test, True))
        x_train, t_train, *rest = data
        x_test, t_test = (rest + [None, None])[:2]
        x_train = self.model.check_input(x_train, "training features")
        if x_test is not None:
            x_test = self.model.check_input(x_test, "test features")
        return x_train, t_train, x_test, t_test

    def _check_data(self):
        n_out = self._num_outputs()
        if n_out is None:
            return
        F.check_labels(self.t_train, n_out, self.x_train.shape[0], where="training labels")
        if self.x_test is not None:
            F.check_labels(self.t_test, n_out, self.x_test.shape[0], where="test labels")

    def _num_outputs(self):
        for layer in reversed(self.model.layers):
            W = layer.params.get("W") if layer.params else None
            if W is not None:
                return int(W.shape[1])
        return None

    # ------------------------------------------------------------------ checkpoints
    def state_meta(self) -> dict:
        """What a checkpoint stores besides arrays, for an exact resume."""
        return {
            **self.meta,
            "epoch": self.epoch,
            "seed": self.seed,
            "batch_size": self.loader.batch_size,
            "loader_rng": self.loader.rng_state,
            "history": self.history.records,
        }

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out is None else self.out / CHECKPOINT_NAME

    def save(self, path=None) -> Path:
        """Write the current state's checkpoint to ``path`` (default ``OUT/checkpoint.npz``)."""
        path = path or self.checkpoint_path
        if path is None:
            raise ConfigError("no checkpoint path: pass save(path) or give the trainer an out= folder")
        return ckpt.save(path, self.model, self.optimizer, self.state_meta())

    def _write_good(self) -> Path | None:
        if self.checkpoint_path is None or self._good is None:
            return None
        return ckpt.write_atomic(self.checkpoint_path, self._good)

    @classmethod
    def resume(cls, path, data, backend=None, device=None, **kwargs) -> Trainer:
        """A trainer continuing from checkpoint ``path`` (weights, optimizer, epoch, shuffles).

        ``data`` as for :class:`Trainer`; ``kwargs`` are its other options (``out``, ``log``...).
        """
        model, optimizer, meta = ckpt.load(path, backend=backend, device=device)
        if optimizer is None:
            raise ConfigError(f"checkpoint {os.fspath(path)!r} has no optimizer state; it cannot be resumed")
        kwargs.setdefault("batch_size", meta.get("batch_size", 64))
        kwargs.setdefault("seed", meta.get("seed", 0))
        extra = {
            k: v
            for k, v in meta.items()
            if k not in ("epoch", "seed", "batch_size", "loader_rng", "history", "xpnet_version", "dtype")
        }
        kwargs["meta"] = {**extra, **kwargs.get("meta", {})}
        trainer = cls(model, optimizer, data, **kwargs)
        trainer.epoch = int(meta.get("epoch", 0))
        trainer.history.records = list(meta.get("history", []))
        if "loader_rng" in meta:
            trainer.loader.rng_state = meta["loader_rng"]
        trainer._good = ckpt.to_bytes(model, optimizer, trainer.state_meta())
        return trainer

    # ------------------------------------------------------------------ training
    def train_epoch(self):
        """One pass over the shuffled training set; returns the mean minibatch loss (0-d array)."""
        model, opt = self.model, self.optimizer
        total = None
        self._step_losses = []  # 0-d device arrays: read back only if the epoch's loss is not finite
        for xb, tb in self.loader:
            loss = model.loss(xb, tb, train=True, check=False)
            model.backward()
            opt.update(model.params, model.grads)
            self._step_losses.append(loss)
            nb = xb.shape[0]
            total = loss * nb if total is None else total + loss * nb
        return total / self.loader.num_samples

    def _first_bad_step(self) -> int | None:
        """1-based step of this epoch whose minibatch loss was first NaN or inf (one sync)."""
        for i, loss in enumerate(self._step_losses or []):
            if not math.isfinite(float(to_numpy(loss))):
                return i + 1
        return None

    def _epoch_record(self, train_loss, seconds: float) -> dict:
        values = [train_loss, *evaluate(self.model, self.x_train, self.t_train)[1:]]
        if self.x_test is not None:
            values += list(evaluate(self.model, self.x_test, self.t_test))
        xp = namespace(train_loss)
        host = to_numpy(xp.stack([xp.astype(v, train_loss.dtype) for v in values]))  # the one sync
        rec = {"epoch": self.epoch, "train_loss": float(host[0]), "train_acc": float(host[1])}
        if self.x_test is not None:
            rec.update(test_loss=float(host[2]), test_acc=float(host[3]))
        rec["seconds"] = round(seconds, 4)
        return rec

    def _line(self, rec: dict, total: int) -> str:
        width = len(str(total))
        s = (
            f"epoch {rec['epoch']:>{width}}/{total}  train loss {rec['train_loss']:.4f} "
            f"acc {rec['train_acc']:.4f}"
        )
        if "test_loss" in rec:
            s += f"  test loss {rec['test_loss']:.4f} acc {rec['test_acc']:.4f}"
        return s + f"  ({rec['seconds']:.2f} s)"

    def fit(self, epochs: int) -> History:
        """Train until ``epochs`` epochs in all have run (counting those before a resume)."""
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        epochs = int(epochs)
        if self._good is None:
            self._good = ckpt.to_bytes(self.model, self.optimizer, self.state_meta())
        bar = _progress_bar(epochs, self.epoch, self.progress, self.quiet)
        emit = (bar.write if bar is not None else self.log) if self.log else None
        self.history.stopped = "completed"
        try:
            while self.epoch < epochs:
                t0 = time.perf_counter()
                mean_loss = self.train_epoch()
                self.epoch += 1
                rec = self._epoch_record(mean_loss, time.perf_counter() - t0)
                bad = [k for k in ("train_loss", "test_loss") if k in rec and not math.isfinite(rec[k])]
                if bad:
                    self.epoch -= 1
                    saved = self._write_good()
                    where = f"; the last good checkpoint (epoch {self.epoch}) is in {saved}" if saved else ""
                    step = self._first_bad_step()
                    at = f", step {step} of {len(self.loader)}" if step else ""
                    raise NonFiniteError(
                        f"the {bad[0].replace('_', ' ')} became {rec[bad[0]]} "
                        f"in epoch {self.epoch + 1}{at}{where}. "
                        f"Lower the learning rate (now {self.optimizer.lr}) or check the inputs."
                    )
                self.history.records.append(rec)
                self._good = ckpt.to_bytes(self.model, self.optimizer, self.state_meta())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{rec['train_loss']:.4f}", acc=f"{rec.get('test_acc', rec['train_acc']):.4f}"
                    )
                if emit:
                    emit(self._line(rec, epochs))
                if self.save_every and self.epoch % int(self.save_every) == 0:
                    self._write_good()
                if self.patience is not None and "test_loss" in rec:
                    if rec["test_loss"] < self._best[0]:
                        self._best = (rec["test_loss"], self.epoch)
                    elif self.epoch - self._best[1] >= self.patience:
                        self.history.stopped = "early"
                        if emit:
                            emit(
                                f"early stop: no lower test loss for {self.patience} epochs "
                                f"(best {self._best[0]:.4f} at epoch {self._best[1]})"
                            )
                        break
        except KeyboardInterrupt:
            self.history.stopped = "interrupted"
            saved = self._write_good()
            self.history.checkpoint = None if saved is None else os.fspath(saved)
            if self.log:
                msg = f"interrupted: stopped after {self.epoch} complete epoch(s)"
                if saved is not None:
                    msg += f"; checkpoint saved to {saved} (resume with --resume {saved})"
                self.log(msg)
            return self.history
        finally:
            if bar is not None:
                bar.close()
        saved = self._write_good()
        self.history.checkpoint = None if saved is None else os.fspath(saved)
        if self.out is not None:
            self.history.save(self.out)
        return self.history


# ---------------------------------------------------------------------- one call
def build(
    dataset: str = DEFAULTS["dataset"],
    hidden=DEFAULTS["hidden"],
    activation: str = DEFAULTS["activation"],
    optimizer: str = DEFAULTS["optimizer"],
    lr: float | None = None,
    batch_size: int = DEFAULTS["batch_size"],
    seed: int = DEFAULTS["seed"],
    backend=None,
    device: str | None = None,
    dtype: str | None = None,
    out=None,
    scale: str = DEFAULTS["scale"],
    weight_decay: float = DEFAULTS["weight_decay"],
    patience: int | None = None,
    data_dir=None,
    resume=None,
    **trainer_options,
) -> Trainer:
    """A :class:`Trainer` for an MLP on a named dataset (what ``xpnet train`` runs).

    ``lr`` defaults to 0.002 for Adam and 0.1 for the SGD family. With ``resume`` (a
    checkpoint path) the model, optimizer and shuffle state come from the file.
    """
    from . import datasets

    data = datasets.load(dataset, scale=scale, seed=seed, data_dir=data_dir)
    meta = {
        "dataset": data.name,
        "scaler": data.scaler.to_json(),
        "class_names": data.class_names,
        "num_features": data.num_features,
        "num_classes": data.num_classes,
    }
    opts = {"out": out, "patience": patience, "meta": meta, **trainer_options}
    if resume is not None:
        return Trainer.resume(resume, data, backend=backend, device=device, **opts)
    hidden = [int(h) for h in (hidden if isinstance(hidden, (list, tuple)) else [hidden])]
    model = mlp(
        [data.num_features, *hidden, data.num_classes],
        activation,
        seed=seed,
        backend=backend,
        device=device,
        dtype=dtype,
    )
    if lr is None:
        lr = DEFAULTS["lr"] if str(optimizer).lower() == "adam" else 0.1
    opt = get_optimizer(optimizer, lr, weight_decay=weight_decay)
    meta.update(
        hidden=hidden, activation=str(activation).lower(), optimizer=str(optimizer).lower(), lr=float(lr)
    )
    return Trainer(model, opt, data, batch_size=batch_size, seed=seed, **opts)


def fit(dataset: str = DEFAULTS["dataset"], epochs: int = DEFAULTS["epochs"], **options) -> History:
    """Train an MLP on a named dataset and return the :class:`History` (see :func:`build`).

    The trained model is ``history.trainer.model``.
    """
    trainer = build(dataset, **options)
    history = trainer.fit(epochs)
    history.trainer = trainer
    return history
