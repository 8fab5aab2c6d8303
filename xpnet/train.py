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
then the last good epoch's. Ctrl-C, SIGTERM and SIGHUP during :meth:`Trainer.fit`
write the last completed epoch's checkpoint and return the history with
``stopped == "interrupted"``.

Started by ``mpiexec -n N`` (see :mod:`xpnet.parallel`), :func:`build` makes the trainer one of
N data-parallel ranks: the same shuffle on every rank, each rank's contiguous slice of every
global batch, one allreduce of the gradients per step, evaluation sharded and summed. Rank 0
alone claims the output folder, prints and writes; at every checkpoint the ranks check that
they hold the same model. There Ctrl-C or SIGTERM stops every rank after the same step, and rank 0
writes the last completed epoch.
On jax the step is compiled there too (``compile="auto"`` or ``"on"``): a compiled gradient of
the rank's slice, the allreduce, then a compiled update.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import functional as F
from .backend import (
    backend_name,
    check_same_backend,
    device_context,
    from_host_like,
    host_dtype,
    is_writeable,
    namespace,
    to_numpy,
)
from .data import Loader
from .errors import (
    BackendMismatchError,
    CheckpointError,
    ConfigError,
    DTypeError,
    LabelError,
    NonFiniteError,
    OutputError,
)
from .model import Sequential, mlp
from .optimizers import Optimizer, get_optimizer
from .outputs import (  # noqa: F401 (LOCK_NAME, RUN_FILES, claim_fresh_output: part of this module's API)
    CHECKPOINT_NAME,
    LOCK_NAME,
    RUN_FILES,
    Output,
    _same_file,
    check_writable,
    claim_fresh_output,
    claim_output,
)

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
COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


@dataclass
class History:
    """Per-epoch records (``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
    ``seconds``) and why training stopped: ``completed``, ``early`` or ``interrupted`` (by
    Ctrl-C, or by the signal ``signal`` names: ``"SIGTERM"`` or ``"SIGHUP"``)."""

    records: list = field(default_factory=list)
    stopped: str = "completed"
    signal: str | None = None  # "SIGTERM" or "SIGHUP" when that signal interrupted training (else Ctrl-C)
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


PLOT_FILES = ("curves.png", "regions.png")  # a replaced run's plots are removed by --overwrite
HISTORY_BYTES_PER_EPOCH = 512  # one record in the checkpoint, history.json and history.csv, generously


def _checkpoint_bytes(model: Sequential, optimizer: Optimizer) -> int:
    """A generous estimate of one checkpoint's size: parameters, state and optimizer slots."""
    arrays = list(model.params.values()) + list(model.state.values())
    n = sum(math.prod(a.shape) * host_dtype(a.dtype).itemsize for a in arrays)
    return n * (1 + len(optimizer.slots)) + (64 << 10)


def evaluate(model: Sequential, x, t, batch_size: int = 2048):
    """Mean loss and accuracy of ``model`` on ``(x, t)`` in evaluation mode, as two 0-d
    device arrays (no host sync; the labels are trusted: validate them once beforehand)."""
    xp = namespace(x)
    n = x.shape[0]
    loss_sum = acc_sum = None
    for i in range(0, n, batch_size):
        xb, tb = x[i : min(i + batch_size, n), ...], t[i : min(i + batch_size, n), ...]
        scores = model.predict(xb, train=False, check=False)
        nb = xb.shape[0]
        loss = model.loss_layer.forward(scores, tb, check=False) * nb
        acc = F.accuracy(scores, tb, check=False, xp=xp) * nb
        loss_sum = loss if loss_sum is None else loss_sum + loss
        acc_sum = acc if acc_sum is None else acc_sum + acc
    return loss_sum / n, acc_sum / n


def _epoch_metrics(model: Sequential, x, t, x_test=None, t_test=None) -> list:
    """Training accuracy, then test loss and accuracy when a test set is given, as one 1-d
    array: what an epoch record adds to the training loss, in one call (one compile on jax)."""
    values = [evaluate(model, x, t)[1]]
    if x_test is not None:
        values += list(evaluate(model, x_test, t_test))
    xp = namespace(values[0])
    return xp.stack([xp.astype(v, values[1].dtype if len(values) > 1 else values[0].dtype) for v in values])


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


def _copy(a):
    """A private copy of an array that may change in place later (no copy of immutable ones)."""
    return namespace(a).asarray(a, copy=True) if is_writeable(a) else a


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


@dataclass
class _Snapshot:
    """Everything that a completed epoch leaves, kept on the device (no host copy, no
    serialisation): what a diverged or interrupted epoch is rolled back to."""

    epoch: int
    records: int
    params: dict
    state: dict
    opt_step: int
    opt_slots: dict
    loader_rng: dict
    layer_rngs: list
    best: tuple


class Trainer:
    """Train ``model`` with ``optimizer`` on ``data``.

    ``data``: a host :class:`~xpnet.datasets.Dataset` (moved once to the model's device and
    dtype), or a tuple ``(x_train, t_train, x_test, t_test)`` of arrays already there
    (``x_test``/``t_test`` may be None). ``seed`` seeds the shuffles. ``out``: a folder for
    the checkpoint and the history, claimed now (see :func:`claim_output`: a folder holding
    another run is refused unless ``overwrite=True``; two runs never share one). ``patience``:
    stop early after that many epochs without a lower test loss. ``save_every``: also write
    the checkpoint every that many epochs (it is always written at the end, on Ctrl-C and on a
    non-finite loss, once this run has completed an epoch). ``meta``: JSON values stored in the
    checkpoint (dataset, config). ``log``: where per-epoch lines go (``None`` for silence).
    ``resumed_from``: the checkpoint this run continues (set by :meth:`resume`).
    ``comm``: a :class:`~xpnet.parallel.Communicator` of more than one rank makes this trainer one
    rank of a data-parallel job (``batch_size`` is then the global batch; see :meth:`_join`).
    ``compile``: ``"auto"`` (compile the step where xpnet has a compiler for the backend: jax),
    ``"on"`` (the same, and an error where there is none) or ``"off"`` (eager); see
    :mod:`xpnet.compile`. The first epoch's compile time is recorded apart (``compile_seconds``).
    With ``comm`` the compiled step comes in two calls, ``step.gradient`` on the rank's slice and
    ``step.apply`` of the gradients summed over the ranks.
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
        overwrite: bool = False,
        resumed_from=None,
        compile: str = "auto",
        comm=None,
    ):
        if not isinstance(model, Sequential) or not model.params:
            raise ConfigError(
                f"the trainer needs a model with parameters (an xpnet.Sequential such as xpnet.mlp(...)); "
                f"got {type(model).__name__}" + (" with no parameters" if isinstance(model, Sequential) else "")
            )
        if not isinstance(optimizer, Optimizer):
            raise ConfigError(
                f"optimizer must be an xpnet optimizer (e.g. xpnet.Adam()), got {type(optimizer).__name__}"
            )
        self.model, self.optimizer = model, optimizer
        self._host_labels: dict = {}  # labels of a host dataset, checked there (see _check_data)
        self.x_train, self.t_train, self.x_test, self.t_test = self._on_device(data)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.loader = Loader(self.x_train, self.t_train, batch_size, shuffle=True, seed=[self.seed, 1])
        for name, value in (("patience", patience), ("save_every", save_every)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ConfigError(f"{name} must be a positive number of epochs, got {value!r}")
        self.patience = None if patience is None else int(patience)
        self.save_every = None if save_every is None else int(save_every)
        _check_lr(optimizer, model)
        self.meta = dict(meta or {})
        self.comm, self._update, self._stop = None, optimizer.update, None
        if comm is not None and comm.size > 1:
            out, log, quiet = self._join(comm, out, log, quiet, compile)
        self.log = None if quiet else log
        self.progress, self.quiet = progress, quiet
        self.epoch = 0
        self.history = History()
        self._good: _Snapshot | None = None  # the last completed epoch, to roll back to
        self._best = (math.inf, 0)
        self._overwrite = bool(overwrite)
        self._check_data()  # labels validated once here; the steps skip the check (a sync each)
        self.step = _make_step(model, optimizer, compile, distributed=self.comm is not None)
        if self.comm is not None:  # the allreduce between the (compiled) gradient and the update
            from .parallel import DistributedOptimizer

            apply = None if self.step is None else self.step.apply
            self._update = DistributedOptimizer(optimizer, self.comm, apply=apply).update
        self.output = None
        if out is not None:  # claimed last: every other argument was checked first
            self.output = out if isinstance(out, Output) else claim_output(
                out, overwrite, resumed_from, 2 * _checkpoint_bytes(model, optimizer)
            )
        self._first_epoch = 0  # the epoch this trainer started from: nothing at or before it is written

    def _join(self, comm, out, log, quiet, compile):
        """Train as one of ``comm.size`` ranks: the global batch split evenly, rank 0's weights
        broadcast, gradients averaged by :class:`~xpnet.parallel.DistributedOptimizer` (made in
        ``__init__`` once the step is known: a compiled step's ``apply`` makes the update); only
        rank 0 keeps the output folder, the log and the progress bar. Returns the options to use."""
        b, n = self.loader.batch_size, comm.size
        if b % n:
            lower, higher = b - b % n, b - b % n + n
            raise ConfigError(
                f"the batch size is the global batch, split evenly over the {n} MPI ranks, but {b} is not a "
                f"multiple of {n}; use --batch-size {lower or higher}" + (f" or {higher}" if lower else "")
            )
        m, o = self.model, self.optimizer
        comm.agree(self._run_description(compile, patience=self.patience, save_every=self.save_every))
        for arrays in (m.params, m.state, *(o.state[s] for s in o.slots)):
            comm.broadcast_(arrays)
        self.comm = comm
        if comm.rank == 0:
            return out, log, quiet
        return None, None, True

    def _run_description(self, compile, **options) -> dict:
        """What every rank of a data-parallel job must share, checked before the first
        collective (a difference would train on a mix, or hang): the model, the optimizer and
        its state's step, the data (shapes and checksums), the batch size, seed and options."""
        from .parallel import fingerprint

        m, o = self.model, self.optimizer
        ref = next(iter(m.params.values()))
        return {"backend": backend_name(ref), "dtype": str(ref.dtype), "model": m.describe(),
                "loss": type(m.loss_layer).__name__, "optimizer": (type(o).__name__, o.config()),
                "optimizer step": int(o.state["step"]), "batch size": self.loader.batch_size, "seed": self.seed,
                "compile": compile, "dataset": self.meta.get("dataset"), **options,
                **{what: fingerprint(a) for what, a in (("training features", self.x_train),
                                                        ("training labels", self.t_train),
                                                        ("test features", self.x_test), ("test labels", self.t_test))}}

    @property
    def out(self) -> Path | None:
        return None if self.output is None else self.output.folder

    def close(self) -> None:
        """Release the output folder for other runs (also done when the trainer is collected)."""
        if self.output is not None:
            self.output.close()

    # ------------------------------------------------------------------ data
    def _on_device(self, data):
        ref = next(iter(self.model.params.values()))
        if hasattr(data, "x_train"):
            dt = host_dtype(ref.dtype)
            self._check_fits(data)

            def put(a, what):
                a = np.asarray(a)
                if what.endswith("labels"):
                    if a.dtype.kind not in "iub":
                        raise LabelError(f"{what}: expected integer class indices, got dtype {a.dtype}")
                    return from_host_like(a.astype(np.int64), ref)
                if a.dtype.kind != "f":
                    raise DTypeError(f"{what}: expected floating-point features, got dtype {a.dtype}")
                with np.errstate(over="ignore", invalid="ignore"):
                    cast = a.astype(dt)
                if not np.isfinite(cast).all():
                    bad = int((~np.isfinite(cast)).sum())
                    why = "NaN or inf" if not np.isfinite(a).all() else f"values too large for {dt.name}"
                    raise NonFiniteError(f"{what}: {bad} value(s) are {why} (largest finite {dt.name}: "
                                         f"{np.finfo(dt).max:.3g}); clean or rescale the data")
                return from_host_like(cast, ref)

            # the labels are checked on these host copies: no device reductions (each one a
            # compile on jax) for data that came from the host anyway
            self._host_labels = {"training labels": np.asarray(data.t_train), "test labels": np.asarray(data.t_test)}
            return (put(data.x_train, "training features"), put(data.t_train, "training labels"),
                    put(data.x_test, "test features"), put(data.t_test, "test labels"))
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
            raise ConfigError("data must be a Dataset or a tuple (x_train, t_train[, x_test, t_test]) of arrays, "
                              f"got {type(data).__name__}")
        x_train, t_train, *rest = data
        x_test, t_test = (list(rest) + [None, None])[:2]
        if (x_test is None) != (t_test is None):
            raise ConfigError("x_test and t_test must be given together (or both None)")
        for what, a in (("training features", x_train), ("training labels", t_train),
                        ("test features", x_test), ("test labels", t_test)):
            if a is not None:
                if not hasattr(a, "shape") or not hasattr(a, "dtype"):
                    raise BackendMismatchError(
                        f"{what}: expected an array on the model's backend and device, got {type(a).__name__}; "
                        f"convert it first, e.g. xpnet.to_backend(numpy.asarray(...), {backend_name(ref)!r})"
                    )
                check_same_backend(a, ref, what)
        x_train = self.model.check_input(x_train, "training features")
        if x_test is not None:
            x_test = self.model.check_input(x_test, "test features")
        return x_train, t_train, x_test, t_test

    def _check_fits(self, data) -> None:
        """A dataset whose width or class count does not fit the model, named as such."""
        first = next((layer.params["W"] for layer in self.model.layers if "W" in layer.params), None)
        n_out = self._num_outputs()
        features = int(np.prod(np.shape(data.x_train)[1:]))
        classes = getattr(data, "num_classes", None)
        fits_out = n_out is None or classes is None or n_out == classes or (n_out == 1 and classes == 2)
        if (first is not None and int(first.shape[0]) != features) or not fits_out:
            raise ConfigError(
                f"the model takes {first.shape[0] if first is not None else '?'} features and gives {n_out} "
                f"outputs, but dataset {getattr(data, 'name', '?')!r} has {features} features and {classes} "
                "classes; train a new model for it, or resume on the dataset the checkpoint was trained on"
            )

    def _check_data(self):
        n_out = self._num_outputs()
        if n_out is None:
            return
        pairs = [("training labels", self.t_train, self.x_train)]
        if self.x_test is not None:
            pairs.append(("test labels", self.t_test, self.x_test))
        host, self._host_labels = self._host_labels, {}
        for where, t, x in pairs:
            t = host.get(where, t)
            if n_out == 1:  # a binary model: one score per sample, targets 0/1 (or probabilities)
                F.check_binary_labels(t, x.shape[0], soft=True, where=where)
            else:
                F.check_labels(t, n_out, x.shape[0], where=where)

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
            # early stopping's state: what decides when the rest of the run stops
            "early_stopping": {"patience": self.patience,
                               "best_loss": self._best[0] if math.isfinite(self._best[0]) else None,
                               "best_epoch": self._best[1]},
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

    def _write(self) -> Path | None:
        """Write the checkpoint and the history of the current state into ``out``, or nothing
        when this trainer has not completed an epoch (a run never replaces files with an
        untrained model). The files on disk stay the previous good ones if a write fails."""
        if self.epoch <= self._first_epoch:
            return None
        if self.comm is not None:  # every rank: the ranks agree, then rank 0 writes, then all go on
            m, o = self.model, self.optimizer
            self.comm.check_agree({"weights": m.params, "layer state": m.state,
                                   **{f"optimizer {s}": o.state[s] for s in o.slots}})
            saved = None if self.out is None else self._write_files()
            self.comm.barrier()
            return saved
        return None if self.out is None else self._write_files()

    def _write_files(self) -> Path:
        files = {
            CHECKPOINT_NAME: ckpt.to_bytes(self.model, self.optimizer, self.state_meta()),
            "history.json": self.history.to_json().encode(),
            "history.csv": self.history.to_csv().encode(),
        }
        need = sum(len(b) for b in files.values()) + (64 << 10)
        on_disk = f"; the files in {os.fspath(self.out)!r} are unchanged" + (
            f" (checkpoint of epoch {self._saved_epoch})" if self._saved_epoch is not None else "")
        try:
            free = shutil.disk_usage(self.out).free
            if free < need:
                raise OutputError(f"the checkpoint of epoch {self.epoch} needs about {need} bytes, but "
                                  f"{os.fspath(self.out)!r} has {free} free{on_disk}. Free some space and "
                                  "resume with --resume, or choose another --out DIR")
            for name, data in files.items():
                ckpt.write_atomic(self.out / name, data)
        except OSError as e:
            if isinstance(e, OutputError):
                raise
            raise OutputError(f"could not write the checkpoint of epoch {self.epoch} into "
                              f"{os.fspath(self.out)!r} ({e.strerror or e}){on_disk}. Fix that and resume "
                              "with --resume, or choose another --out DIR") from e
        if self._overwrite and self._saved_epoch is None:  # the replaced run's plots are not ours
            for name in PLOT_FILES:
                with contextlib.suppress(OSError):
                    (self.out / name).unlink()
        self._saved_epoch = self.epoch
        return self.out / CHECKPOINT_NAME

    _saved_epoch: int | None = None

    @classmethod
    def resume(cls, path, data, backend=None, device=None, dtype=None, lr=None, weight_decay=None,
               **kwargs) -> Trainer:
        """A trainer continuing from checkpoint ``path`` (weights, optimizer, epoch, shuffles).

        ``data`` as for :class:`Trainer`; ``kwargs`` are its other options (``out``, ``log``,
        ``batch_size``...). ``dtype``, ``lr`` and ``weight_decay`` override the checkpoint's.
        """
        model, optimizer, meta = ckpt.load(path, backend=backend, device=device, dtype=dtype)
        _check_resume_meta(meta, path)
        if optimizer is None:
            raise ConfigError(f"checkpoint {os.fspath(path)!r} has no optimizer state; it cannot be resumed")
        if lr is not None:
            optimizer.lr = type(optimizer)(lr=lr).lr  # validated as a new optimizer's would be
        if weight_decay is not None:
            optimizer.weight_decay = type(optimizer)(weight_decay=weight_decay).weight_decay
        kwargs.setdefault("batch_size", meta.get("batch_size", 64))
        kwargs.setdefault("seed", meta.get("seed", 0))
        early = meta.get("early_stopping") or {}
        if kwargs.get("patience") is None:  # the run's own patience goes on unless another is given
            kwargs["patience"] = early.get("patience")
        extra = {
            k: v
            for k, v in meta.items()
            if k not in ("epoch", "seed", "batch_size", "loader_rng", "history", "xpnet_version", "dtype",
                         "early_stopping")
        }
        extra["lr"] = optimizer.lr
        kwargs["meta"] = {**extra, **kwargs.get("meta", {}), "lr": optimizer.lr}
        trainer = cls(model, optimizer, data, resumed_from=path, **kwargs)
        trainer.epoch = trainer._first_epoch = int(meta.get("epoch", 0))
        trainer.history.records = list(meta.get("history", []))
        if "loader_rng" in meta:
            trainer.loader.rng_state = meta["loader_rng"]
        if early:
            best = early.get("best_loss")
            trainer._best = (math.inf if best is None else float(best), int(early.get("best_epoch", 0)))
        if trainer.out is not None and _same_file(path, trainer.checkpoint_path):
            trainer._saved_epoch = trainer.epoch
        return trainer

    # ------------------------------------------------------------------ snapshots
    def _rng_layers(self) -> list:
        return [layer for layer in self.model.layers if isinstance(getattr(layer, "rng", None), np.random.Generator)]

    def _copies(self, arrays: dict) -> dict:
        """A new dict of copies of ``arrays`` (never ``arrays`` itself: an optimizer's empty slot
        dict is filled later, and its arrays donated, by the step)."""
        if self.step is not None:  # a compiled step donates its inputs: keep copies of our own
            return dict(self.step.copy(arrays))
        return {k: _copy(v) for k, v in arrays.items()}

    def _snapshot(self) -> _Snapshot:
        m, o = self.model, self.optimizer
        return _Snapshot(
            self.epoch, len(self.history.records),
            self._copies(dict(m.params.items())), self._copies(dict(m.state.items())),
            o.state["step"], {s: self._copies(o.state[s]) for s in o.slots},
            copy.deepcopy(self.loader.rng_state),
            [copy.deepcopy(layer.rng.bit_generator.state) for layer in self._rng_layers()],
            self._best,
        )

    def _rollback(self, snap: _Snapshot) -> None:
        """Put the model, optimizer, shuffles and history back to ``snap`` (copies: the
        snapshot stays usable)."""
        m, o = self.model, self.optimizer
        m.params.update(self._copies(snap.params))
        m.state.update(self._copies(snap.state))
        o.state["step"] = snap.opt_step
        for s, slot in snap.opt_slots.items():
            o.state[s] = self._copies(slot)
        self.loader.rng_state = copy.deepcopy(snap.loader_rng)
        for layer, state in zip(self._rng_layers(), snap.layer_rngs):
            layer.rng.bit_generator.state = copy.deepcopy(state)
        del self.history.records[snap.records:]
        self.epoch, self._best = snap.epoch, snap.best

    # ------------------------------------------------------------------ training
    def train_epoch(self):
        """One pass over the shuffled training set; returns the mean minibatch loss (0-d array)."""
        if self.comm is not None:
            return self._train_epoch_sharded()
        if self.step is not None:
            return self._train_epoch_compiled()
        model, opt = self.model, self.optimizer
        total = None
        self._step_losses = []  # 0-d device arrays: read back only if the epoch's loss is not finite
        for xb, tb in self.loader:
            loss = model.loss(xb, tb, train=True, check=False)
            model.backward(input_grad=False)  # the data needs no gradient: one matmul less
            opt.update(model.params, model.grads)
            self._stop_check()
            self._step_losses.append(loss)
            nb = xb.shape[0]
            total = loss * nb if total is None else total + loss * nb
        return total / self.loader.num_samples

    def _train_epoch_sharded(self):
        """This rank's part of an epoch: its slice of each global batch (see
        :func:`~xpnet.parallel.shards`); returns its samples' loss sum over the training set's
        size (the ranks' values add up to the epoch's mean loss). With a compiled step each slice's
        gradient is one compiled call and the update (after the allreduce) another."""
        from .parallel import batch_rows, draw_without_rows, shards

        model, update, xp, step = self.model, self._update, self.loader.xp, self.step
        n, total, b = self.loader.num_samples, None, self.loader.batch_size
        idx_all = from_host_like(self.loader.order().astype(np.int64), self.x_train)
        self._step_losses = []
        for start, (lo, hi, share) in zip(range(0, n, b), shards(n, b, self.comm.rank, self.comm.size)):
            rows = (lo - start, hi - start, min(b, n - start))  # this rank's rows of the global batch
            if hi == lo:  # a last global batch smaller than the ranks: nothing to add here
                draw_without_rows(model, self.x_train[0:1, ...], rows[2])
                update(model.params, None, 0.0)
                self._stop_check()
                continue
            idx = idx_all[lo:hi]
            xb, tb = xp.take(self.x_train, idx, axis=0), xp.take(self.t_train, idx, axis=0)
            with batch_rows(model, *rows):
                if step is not None:
                    loss, grads = step.gradient(xb, tb)
                else:
                    loss = model.loss(xb, tb, train=True, check=False)
                    model.backward(input_grad=False)
                    grads = model.grads
            update(model.params, grads, share)
            self._stop_check()
            self._step_losses.append(loss)
            total = loss * (hi - lo) if total is None else total + loss * (hi - lo)
        if model.state:  # running statistics gathered from this rank's slices: the ranks' mean
            self.comm.average_(model.state)
        return None if total is None else total / n

    def _stop_check(self) -> None:
        """Stop here when a stop signal came (see :class:`_StopSignals`); under MPI, every rank
        stops after this step when the signal reached any of them."""
        stop = self._stop
        if stop is None:
            return
        if self.comm.any(bool(stop.requested)) if self.comm is not None else stop.requested:
            stop.handled = True
            raise _AgreedStop

    def _train_epoch_compiled(self):
        """The same epoch as :meth:`train_epoch` (the same shuffle, the same batches) as one
        compiled call; the step losses come back as one array."""
        losses, mean = self.step.epoch(self.x_train, self.t_train, self.loader.order(), self.loader.batch_size)
        self._step_losses = [losses]
        return mean

    def _first_bad_step(self) -> int | None:
        """1-based step of this epoch whose minibatch loss was first NaN or inf (one sync)."""
        losses = [np.reshape(to_numpy(v), (-1,)) for v in self._step_losses or []]
        bad = np.flatnonzero(~np.isfinite(np.concatenate(losses))) if losses else []
        return int(bad[0]) + 1 if len(bad) else None

    def _evaluate(self, x, t):
        return evaluate(self.model, x, t) if self.step is None else self.step.evaluate(evaluate, x, t)

    def _epoch_record(self, epoch: int, train_loss, seconds: float) -> dict:
        if self.comm is not None:
            host = self._sharded_metrics(train_loss)
        else:
            sets = (self.x_train, self.t_train) + (() if self.x_test is None else (self.x_test, self.t_test))
            metrics = _epoch_metrics(self.model, *sets) if self.step is None else self.step.evaluate(_epoch_metrics,
                                                                                                    *sets)
            host = np.concatenate([np.reshape(to_numpy(train_loss), (1,)), to_numpy(metrics)]).astype(np.float64)
        rec = {"epoch": epoch, "train_loss": float(host[0]), "train_acc": float(host[1])}
        if self.x_test is not None:
            rec.update(test_loss=float(host[2]), test_acc=float(host[3]))
        rec["seconds"] = round(seconds, 4)
        return rec

    def _sharded_metrics(self, train_loss) -> np.ndarray:
        """The epoch's metrics over the whole training and test sets: each rank evaluates its
        contiguous shard, and one small allreduce adds the shards' sample-weighted means."""
        rank, size = self.comm.rank, self.comm.size
        local = [0.0 if train_loss is None else float(to_numpy(train_loss))]
        sets = [(self.x_train, self.t_train, (1,))]
        if self.x_test is not None:
            sets.append((self.x_test, self.t_test, (0, 1)))
        for x, t, keep in sets:
            n = x.shape[0]
            lo, hi = rank * n // size, (rank + 1) * n // size
            means = self._evaluate(x[lo:hi, ...], t[lo:hi, ...]) if hi > lo else (0.0, 0.0)
            local += [float(to_numpy(means[i])) * (hi - lo) / n if hi > lo else 0.0 for i in keep]
        return self.comm.sum(local)

    def _line(self, rec: dict, total: int) -> str:
        width = len(str(total))
        s = (
            f"epoch {rec['epoch']:>{width}}/{total}  train loss {rec['train_loss']:.4f} "
            f"acc {rec['train_acc']:.4f}"
        )
        if "test_loss" in rec:
            s += f"  test loss {rec['test_loss']:.4f} acc {rec['test_acc']:.4f}"
        compiling = f" + compile {rec['compile_seconds']:.2f} s" if "compile_seconds" in rec else ""
        return s + f"  ({rec['seconds']:.2f} s{compiling})"

    def _check_room(self, epochs: int) -> None:
        """Refuse now a run whose checkpoints and history will not fit on the disk."""
        if self.out is None:
            return
        need = 2 * _checkpoint_bytes(self.model, self.optimizer) + 3 * HISTORY_BYTES_PER_EPOCH * epochs
        check_writable(self.out, need)

    def fit(self, epochs: int) -> History:
        """Train until ``epochs`` epochs in all have run (counting those before a resume).

        Returns the :class:`History`. A NaN or inf loss raises NonFiniteError after rolling the
        model back to the last completed epoch (and writing it, if this run completed one);
        Ctrl-C or SIGTERM does the same rollback and returns with ``history.stopped ==
        "interrupted"``.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        epochs = int(epochs)
        if epochs <= self.epoch:
            raise ConfigError(f"epochs is the total number of epochs: {epochs} were asked for, but "
                              f"{self.epoch} have already run; ask for more than {self.epoch}")
        if self.comm is not None:  # every rank asked for the same number, from the same epoch
            self.comm.agree({"epochs": epochs, "epoch reached": self.epoch}, "run length")
        self._check_room(epochs)
        if self._good is None or self._good.epoch != self.epoch:  # else keep the state verified at that epoch
            self._good = self._snapshot()
        bar = _progress_bar(epochs, self.epoch, self.progress, self.quiet)
        emit = (bar.write if bar is not None else self.log) if self.log else None
        self.history.stopped = "running"
        stop = None
        self.history.signal = None
        try:
            # a diverging run overflows on the way; the loss check below names it, once. The model's
            # device is made current for the work (CuPy runs kernels on its current device)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
                    device_context(next(iter(self.model.params.values()))), _StopSignals() as stop:
                self._stop = stop
                while self.epoch < epochs:
                    self._stop_check()  # a signal while the last epoch was recorded or written
                    t0 = time.perf_counter()
                    c0 = 0.0 if self.step is None else self.step.compile_seconds
                    mean_loss = self.train_epoch()
                    self._stop_check()  # after a compiled epoch: one call, looked at when it returns
                    rec = self._epoch_record(self.epoch + 1, mean_loss, 0.0)
                    compiling = 0.0 if self.step is None else self.step.compile_seconds - c0  # both calls
                    rec["seconds"] = round(time.perf_counter() - t0 - compiling, 4)
                    if compiling:
                        rec["compile_seconds"] = round(compiling, 4)
                    if self.step is not None and self.step.notes:
                        for note in self.step.notes:
                            if self.log is not None:
                                self.log(f"note: {note}")
                        self.step.notes.clear()
                    bad = [k for k in ("train_loss", "test_loss") if k in rec and not math.isfinite(rec[k])]
                    if bad:
                        self._diverged(rec, bad[0])
                    self.history.records.append(rec)
                    self.epoch = rec["epoch"]
                    self._good = self._snapshot()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            loss=f"{rec['train_loss']:.4f}", acc=f"{rec.get('test_acc', rec['train_acc']):.4f}"
                        )
                    if emit:
                        emit(self._line(rec, epochs))
                    if self.save_every and self.epoch % self.save_every == 0:
                        self._write()
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
        except KeyboardInterrupt as e:
            if self.comm is not None and not isinstance(e, _AgreedStop):
                raise  # a second Ctrl-C: the other ranks may wait inside a collective, end the job
            self._rollback(self._good)
            self.history.stopped = "interrupted"
            self.history.signal = None if stop is None else stop.name
            saved = self._write()
            self.history.checkpoint = None if saved is None else os.fspath(saved)
            if self.log:
                self.log(self._interrupted_line(saved))
            return self.history
        finally:
            self._stop = None
            if bar is not None:
                bar.close()
        if self.history.stopped == "running":
            self.history.stopped = "completed"
        saved = self._write()
        self.history.checkpoint = None if saved is None else os.fspath(saved)
        return self.history

    def _interrupted_line(self, saved) -> str:
        by = f" by {self.history.signal}" if self.history.signal else ""
        msg = f"interrupted{by}: stopped after epoch {self.epoch}"
        if saved is not None:
            return msg + f"; checkpoint saved to {saved} (resume with --resume {saved})"
        if self.out is None:
            return msg + " (no output folder: nothing written)"
        return msg + f", the first of this run had not completed; nothing was written to {os.fspath(self.out)!r}"

    def _diverged(self, rec: dict, column: str) -> None:
        step = self._first_bad_step()
        if self.comm is not None:  # the first step at which any rank's slice went bad (every rank is here)
            none = np.iinfo(np.int64).max
            step = self.comm.min(none if step is None else step)
            step = None if step == none else step
        self._rollback(self._good)
        self.history.stopped = "diverged"
        saved = self._write()
        if saved is not None:
            where = f"; the last good checkpoint (epoch {self.epoch}) is in {saved}"
        elif self._saved_epoch is not None:
            where = f"; the last good checkpoint (epoch {self._saved_epoch}) is in {self.checkpoint_path}"
        else:
            where = "; no epoch of this run completed, so nothing was written"
        at = f", step {step} of {len(self.loader)}" if step else ""
        raise NonFiniteError(
            f"the {column.replace('_', ' ')} became {rec[column]} in epoch {rec['epoch']}{at}{where}. "
            f"The model is back at epoch {self.epoch}. Lower the learning rate (now {self.optimizer.lr}) "
            "or check the inputs."
        )


COMPILE_CHOICES = ("auto", "on", "off")


def _make_step(model: Sequential, optimizer: Optimizer, mode: str, distributed: bool = False):
    """The compiled step the trainer uses, or None for the eager loop (``mode``: auto/on/off).
    ``auto`` takes a compiled step only where it was measured faster (jax); ``on`` takes any."""
    if mode not in COMPILE_CHOICES:
        raise ConfigError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {mode!r}")
    if mode == "off":
        return None
    from .compile import compile_step

    step = compile_step(model, optimizer, warn=False)
    if step.compiled and distributed and not hasattr(step, "gradient"):
        if mode == "on":
            raise ConfigError(f"compile='on' (--compile on) asked for under MPI, but the {step.reason.split(':')[0]} "
                              "step is not split around the allreduce yet; use --compile off (or auto) with mpiexec")
        return None
    if step.compiled and (step.auto or mode == "on"):
        return step
    if mode == "on":
        raise ConfigError(f"compile='on' (--compile on) asked for, but {step.reason}; xpnet compiles the step on "
                          "jax, and captures it as a CUDA graph on cupy and torch on CUDA. Use --compile auto "
                          "(compile where possible) or --compile off")
    return None


def _check_resume_meta(meta: dict, path) -> None:
    """The run state a resume reads from a checkpoint's meta, checked (a hand-edited file)."""
    def bad(key, expected):
        return CheckpointError(f"{os.fspath(path)!r}: meta.{key} is {meta.get(key)!r}; expected {expected}. "
                               "The file was edited or not written by the trainer; it cannot be resumed")

    epoch = meta.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad("epoch", "an integer >= 0")
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history) or len(history) > epoch:
        raise bad("history", f"a list of at most {epoch} per-epoch records (dicts)")
    batch = meta.get("batch_size", 64)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise bad("batch_size", "a positive integer")
    if "loader_rng" in meta and not isinstance(meta["loader_rng"], dict):
        raise bad("loader_rng", "a NumPy bit generator state (a dict)")
    early = meta.get("early_stopping")
    if early is not None:
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        integer = lambda v, least: isinstance(v, int) and not isinstance(v, bool) and v >= least
        if (not isinstance(early, dict) or not (early.get("patience") is None or integer(early["patience"], 1))
                or not (early.get("best_loss") is None or number(early["best_loss"]))
                or not integer(early.get("best_epoch", 0), 0) or early.get("best_epoch", 0) > epoch):
            raise bad("early_stopping", f"{{'patience': null or an integer >= 1, 'best_loss': null or a finite "
                                        f"number, 'best_epoch': an integer from 0 to {epoch}}}")


def _check_lr(optimizer: Optimizer, model: Sequential) -> None:
    """Refuse a learning rate too small to change any weight of the model's dtype (an exact no-op)."""
    dt = host_dtype(model.dtype)
    floor = 1e-3 * float(np.finfo(dt).eps)
    if optimizer.lr < floor:
        raise ConfigError(
            f"learning rate {optimizer.lr:g} is too small for {dt.name} weights: lr * gradient is below the "
            f"rounding step of every weight larger than 1e-3, so training would change nothing; use a "
            f"learning rate of at least {floor:.1e}"
        )


# ---------------------------------------------------------------------- one call
# What a checkpoint fixes for good: a resumed run may not change it (a message says so).
FIXED_ON_RESUME = ("dataset", "hidden", "activation", "optimizer", "scale", "seed")


def build(
    dataset: str | None = None,
    hidden=None,
    activation: str | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    backend=None,
    device: str | None = None,
    dtype: str | None = None,
    out=None,
    scale: str | None = None,
    weight_decay: float | None = None,
    patience: int | None = None,
    data_dir=None,
    resume=None,
    **trainer_options,
) -> Trainer:
    """A :class:`Trainer` for an MLP on a named dataset (what ``xpnet train`` runs).

    Options left as None take :data:`DEFAULTS`; ``lr`` defaults to 0.002 for Adam and 0.1
    for the SGD family. With ``resume`` (a checkpoint path) the model, optimizer and
    shuffle state come from the file: ``lr``, ``weight_decay``, ``batch_size``, ``dtype``,
    ``backend`` and ``device`` given with it are honoured; ``dataset``, ``hidden``,
    ``activation``, ``optimizer``, ``scale`` and ``seed`` are fixed by the checkpoint, and
    giving a different value is a :class:`~xpnet.errors.ConfigError`.

    Started by an MPI launcher (``mpiexec -n N``), the trainer is one of N data-parallel ranks
    (``comm=None`` turns that off): ``batch_size`` is the global batch and must divide by N, and
    each rank takes the GPU of its local rank unless ``device`` or ``XPNET_DEVICE`` says otherwise.
    """
    from . import datasets

    given = {"dataset": dataset, "hidden": hidden, "activation": activation, "optimizer": optimizer,
             "scale": scale, "seed": seed}
    if resume is not None:
        saved = ckpt.describe_file(resume)
        fixed = _fixed_by_checkpoint(saved)
        for name, value in given.items():
            if value is None:
                continue
            if name == "hidden":
                value = _hidden_list(value)
            elif isinstance(value, str):
                value = value.lower()
            if name not in fixed or value != fixed[name]:
                was = f" (it was trained with {fixed[name]!r})" if name in fixed else ""
                raise ConfigError(
                    f"{name}={value!r} cannot be changed when resuming {os.fspath(resume)!r}{was}: the checkpoint "
                    f"fixes it. Leave it out to continue, or start a new run without --resume"
                )
        given = {**given, **{k: v for k, v in fixed.items() if given.get(k) is None}}
    dataset = given["dataset"] or DEFAULTS["dataset"]
    scale = given["scale"] or DEFAULTS["scale"]
    seed = DEFAULTS["seed"] if given["seed"] is None else given["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    data = datasets.load(dataset, scale=scale, seed=seed, data_dir=data_dir)
    meta = {
        "dataset": data.name,
        "scaler": data.scaler.to_json(),
        "class_names": data.class_names,
        "num_features": data.num_features,
        "num_classes": data.num_classes,
    }
    opts = {"out": out, "patience": patience, "meta": meta, **trainer_options}
    if "comm" not in opts:  # started by mpiexec: one rank of a data-parallel job
        from .parallel import world

        opts["comm"] = world()
    if opts["comm"] is not None and device is None and not os.environ.get("XPNET_DEVICE"):
        from .backend import resolve
        from .parallel import gpu_device

        device = gpu_device(resolve(backend, None, dtype), opts["comm"].local_rank)
    if batch_size is not None:
        opts["batch_size"] = batch_size
    if resume is not None:
        return Trainer.resume(resume, data, backend=backend, device=device, dtype=dtype, lr=lr,
                              weight_decay=weight_decay, **opts)
    hidden = _hidden_list(DEFAULTS["hidden"] if hidden is None else hidden)
    activation = DEFAULTS["activation"] if activation is None else activation
    optimizer = DEFAULTS["optimizer"] if optimizer is None else optimizer
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
    opt = get_optimizer(optimizer, lr, weight_decay=DEFAULTS["weight_decay"] if weight_decay is None else weight_decay)
    meta.update(
        hidden=hidden, activation=str(activation).lower(), optimizer=str(optimizer).lower(), lr=float(lr),
        scale=scale,
    )
    opts.setdefault("batch_size", DEFAULTS["batch_size"])
    return Trainer(model, opt, data, seed=seed, **opts)


def _hidden_list(hidden) -> list:
    sizes = list(hidden) if isinstance(hidden, (list, tuple)) else [hidden]
    for h in sizes:
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
            raise ConfigError(f"hidden layer sizes must be positive integers, got {hidden!r}")
    return [int(h) for h in sizes]


def _fixed_by_checkpoint(desc: dict) -> dict:
    """The run settings a checkpoint fixes (from its meta and its layer list)."""
    meta = desc.get("meta") or {}
    fixed = {k: meta[k] for k in ("dataset", "activation", "optimizer", "seed") if k in meta}
    if "hidden" in meta:
        fixed["hidden"] = list(meta["hidden"])
    kind = (meta.get("scaler") or {}).get("kind")
    if meta.get("scale") or kind in ("minmax", "standard"):
        fixed["scale"] = meta.get("scale") or kind
    if desc.get("optimizer"):
        fixed["optimizer"] = desc["optimizer"]["name"]
    return fixed


def fit(dataset: str = DEFAULTS["dataset"], epochs: int = DEFAULTS["epochs"], **options) -> History:
    """Train an MLP on a named dataset and return the :class:`History` (see :func:`build`).

    The trained model is ``history.trainer.model``.
    """
    trainer = build(dataset, **options)
    history = trainer.fit(epochs)
    history.trainer = trainer
    return history
