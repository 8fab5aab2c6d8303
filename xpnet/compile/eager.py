"""The textbook step, uncompiled: loss, backward, update."""

from __future__ import annotations

from ..model import Sequential
from ..optimizers import Optimizer
from .base import Step


class EagerStep(Step):
    """The textbook step, uncompiled: loss, backward, update (every other call from :class:`Step`)."""

    def __init__(self, model: Sequential, optimizer: Optimizer, reason: str = "eager"):
        super().__init__(model, optimizer)
        self.reason = reason

    def __call__(self, x, t):
        loss = self.model.loss(x, t, train=True, check=False)
        self.model.backward(input_grad=False)
        self.optimizer.update(self.model.params, self.model.grads)
        return loss
