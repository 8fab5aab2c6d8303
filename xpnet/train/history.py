"""What a run records: a row per epoch (:class:`History`), an epoch's metrics, the printed line."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import functional as F
from ..atomic import write_atomic
from ..backend import namespace

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
PERPLEXITY = ("train_ppl", "test_ppl")  # a language model's records add them


@dataclass
class History:
    """Per-epoch records (``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
    ``seconds``) and why training stopped: ``completed``, ``early`` or ``interrupted`` (by
    Ctrl-C, or by the signal ``signal`` names: ``"SIGTERM"`` or ``"SIGHUP"``)."""

    records: list = field(default_factory=list)
    stopped: str = "completed"
    signal: str | None = None  # "SIGTERM" or "SIGHUP" when that signal interrupted training (else Ctrl-C)
    checkpoint: str | None = None
    trainer: object | None = field(default=None, repr=False, compare=False)

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
        fields = COLUMNS + tuple(k for k in PERPLEXITY if any(k in r for r in self.records))
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(self.records)
        return buf.getvalue()

    def save(self, folder) -> tuple[Path, Path]:
        """Write ``history.json`` and ``history.csv`` into ``folder`` (atomically)."""
        folder = Path(folder)
        return (
            write_atomic(folder / "history.json", self.to_json().encode()),
            write_atomic(folder / "history.csv", self.to_csv().encode()),
        )


def evaluate(model, x, t, batch_size: int = 2048):
    """Mean loss and accuracy of ``model`` on ``(x, t)`` in evaluation mode, as two 0-d
    device arrays (no host sync; the labels are trusted: validate them once beforehand). A
    sequence model gives its own (``model.metrics``: loss and exact answers)."""
    if hasattr(model, "metrics"):
        return model.metrics(x, t)
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


def epoch_metrics(model, x, t, x_test=None, t_test=None):
    """Training accuracy, then test loss and accuracy when a test set is given, as one 1-d
    array: what an epoch record adds to the training loss, in one call (one compile on jax)."""
    values = [evaluate(model, x, t)[1]]
    if x_test is not None:
        values += list(evaluate(model, x_test, t_test))
    xp = namespace(values[0])
    return xp.stack([xp.astype(v, values[1].dtype if len(values) > 1 else values[0].dtype) for v in values])


def epoch_line(rec: dict, total: int) -> str:
    """The line an epoch prints: its losses, accuracies and time."""
    width = len(str(total))
    ppl = {k: f" ppl {rec[k]:.2f}" if k in rec else "" for k in ("train_ppl", "test_ppl")}
    s = (f"epoch {rec['epoch']:>{width}}/{total}  train loss {rec['train_loss']:.4f}{ppl['train_ppl']} "
         f"acc {rec['train_acc']:.4f}")
    if "test_loss" in rec:
        s += f"  test loss {rec['test_loss']:.4f}{ppl['test_ppl']} acc {rec['test_acc']:.4f}"
    compiling = f" + compile {rec['compile_seconds']:.2f} s" if "compile_seconds" in rec else ""
    return s + f"  ({rec['seconds']:.2f} s{compiling})"


class Progress:
    """Where the epoch lines go: a tqdm bar over epochs when wanted and possible (its own
    ``write`` keeps the bar below the lines), else the log; nothing when ``log`` is None."""

    def __init__(self, total: int, initial: int, enabled: bool | None, quiet: bool, log):
        self.bar = _bar(total, initial, enabled, quiet)
        self.emit = (self.bar.write if self.bar is not None else log) if log else None

    def epoch(self, rec: dict, total: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{rec['train_loss']:.4f}", acc=f"{rec.get('test_acc', rec['train_acc']):.4f}")
        self.say(epoch_line(rec, total))

    def say(self, line: str) -> None:
        if self.emit:
            self.emit(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(total: int, initial: int, enabled: bool | None, quiet: bool):
    if quiet or enabled is False:
        return None
    if enabled is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="epoch", leave=False, file=sys.stderr)
