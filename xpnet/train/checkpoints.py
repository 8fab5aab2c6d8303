"""What a run writes into its output folder: the checkpoint and the history of the last completed
epoch, atomically, never an untrained or diverged model over a good one, with room checked first."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path

from .. import checkpoint as ckpt
from ..backend import host_dtype
from ..errors import CheckpointError, OutputError
from ..outputs import CHECKPOINT_NAME, check_writable
from .early import check_meta

PLOT_FILES = ("curves.png", "regions.png")  # a replaced run's plots are removed by --overwrite
HISTORY_BYTES_PER_EPOCH = 512  # one record in the checkpoint, history.json and history.csv, generously


def checkpoint_bytes(model, optimizer) -> int:
    """A generous estimate of one checkpoint's size: parameters, state and optimizer slots."""
    arrays = list(model.params.values()) + list(model.state.values())
    n = sum(math.prod(a.shape) * host_dtype(a.dtype).itemsize for a in arrays)
    return n * (1 + len(optimizer.slots)) + (64 << 10)


class Checkpoints:
    """The output folder a run claimed (or None), and what it wrote there."""

    def __init__(self, output, overwrite: bool):
        self.output, self.overwrite = output, bool(overwrite)
        self.first_epoch = 0  # the epoch the run started from: nothing at or before it is written
        self.saved_epoch: int | None = None  # the epoch of the checkpoint now in the folder

    @property
    def folder(self) -> Path | None:
        return None if self.output is None else self.output.folder

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_NAME

    def check_room(self, model, optimizer, epochs: int) -> None:
        """Refuse now a run whose checkpoints and history will not fit on the disk."""
        if self.folder is not None:
            check_writable(self.folder, 2 * checkpoint_bytes(model, optimizer) + 3 * HISTORY_BYTES_PER_EPOCH * epochs)

    def write(self, trainer) -> Path | None:
        """Write the checkpoint and the history of ``trainer``'s current state, or nothing when it
        has not completed an epoch of this run. The files on disk stay the previous good ones if a
        write fails. Under MPI every rank comes here: the ranks agree, rank 0 writes, all go on."""
        if trainer.epoch <= self.first_epoch:
            return None
        if trainer.comm is not None:
            m, o = trainer.model, trainer.optimizer
            trainer.comm.check_agree({"weights": m.params, "layer state": m.state,
                                      **{f"optimizer {s}": o.state[s] for s in o.slots}})
            saved = None if self.folder is None else self._write_files(trainer)
            trainer.comm.barrier()
            return saved
        return None if self.folder is None else self._write_files(trainer)

    def _write_files(self, trainer) -> Path:
        out, epoch = self.folder, trainer.epoch
        files = {
            CHECKPOINT_NAME: ckpt.to_bytes(trainer.model, trainer.optimizer, trainer.state_meta()),
            "history.json": trainer.history.to_json().encode(),
            "history.csv": trainer.history.to_csv().encode(),
        }
        need = sum(len(b) for b in files.values()) + (64 << 10)
        on_disk = f"; the files in {os.fspath(out)!r} are unchanged" + (
            f" (checkpoint of epoch {self.saved_epoch})" if self.saved_epoch is not None else "")
        try:
            free = shutil.disk_usage(out).free
            if free < need:
                raise OutputError(f"the checkpoint of epoch {epoch} needs about {need} bytes, but "
                                  f"{os.fspath(out)!r} has {free} free{on_disk}. Free some space and "
                                  "resume with --resume, or choose another --out DIR")
            for name, data in files.items():
                ckpt.write_atomic(out / name, data)
        except OSError as e:
            if isinstance(e, OutputError):
                raise
            raise OutputError(f"could not write the checkpoint of epoch {epoch} into "
                              f"{os.fspath(out)!r} ({e.strerror or e}){on_disk}. Fix that and resume "
                              "with --resume, or choose another --out DIR") from e
        if self.overwrite and self.saved_epoch is None:  # the replaced run's plots are not ours
            for name in PLOT_FILES:
                with contextlib.suppress(OSError):
                    (out / name).unlink()
        self.saved_epoch = epoch
        return out / CHECKPOINT_NAME


def check_resume_meta(meta: dict, path) -> None:
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
    if meta.get("early_stopping") is not None:
        wrong = check_meta(meta["early_stopping"], epoch)
        if wrong:
            raise bad("early_stopping", wrong)
