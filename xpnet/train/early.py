"""Early stopping: stop after ``patience`` epochs without a lower test loss. Its state (the
patience, the best test loss and that loss's epoch) goes into the checkpoint, so a resumed run
stops where the whole run stops."""

from __future__ import annotations

import math

from ..checks import optional_size_arg


class EarlyStopping:
    def __init__(self, patience: int | None):
        self.patience = optional_size_arg("patience", patience)
        self.best = (math.inf, 0)  # (the lowest test loss, its epoch)

    def stops(self, rec: dict) -> bool:
        """Whether the run stops after the epoch ``rec`` (records the best loss on the way)."""
        if self.patience is None or "test_loss" not in rec:
            return False
        if rec["test_loss"] < self.best[0]:
            self.best = (rec["test_loss"], rec["epoch"])
            return False
        return rec["epoch"] - self.best[1] >= self.patience

    def message(self) -> str:
        return (f"early stop: no lower test loss for {self.patience} epochs "
                f"(best {self.best[0]:.4f} at epoch {self.best[1]})")

    def to_meta(self) -> dict:
        return {"patience": self.patience, "best_loss": self.best[0] if math.isfinite(self.best[0]) else None,
                "best_epoch": self.best[1]}

    def restore(self, meta: dict) -> None:
        """The best loss and its epoch from a checkpoint's ``meta["early_stopping"]`` (checked)."""
        best = meta.get("best_loss")
        self.best = (math.inf if best is None else float(best), int(meta.get("best_epoch", 0)))


def check_meta(early, epoch: int) -> str | None:
    """What is wrong with a checkpoint's ``early_stopping`` entry (None when it is right)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    integer = lambda v, least: isinstance(v, int) and not isinstance(v, bool) and v >= least
    if (not isinstance(early, dict) or not (early.get("patience") is None or integer(early["patience"], 1))
            or not (early.get("best_loss") is None or number(early["best_loss"]))
            or not integer(early.get("best_epoch", 0), 0) or early.get("best_epoch", 0) > epoch):
        return (f"{{'patience': null or an integer >= 1, 'best_loss': null or a finite number, "
                f"'best_epoch': an integer from 0 to {epoch}}}")
    return None
