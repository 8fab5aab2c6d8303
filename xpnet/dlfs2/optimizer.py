"""The second book's ``common.optimizer`` on :mod:`xpnet.optimizers`: ``update(params, grads)``
on the book's lists.

``params[i]`` changes for every holder: in place on numpy, torch and cupy; on jax and dask the
books' NumPy box gets the new array as its contents. A parameter that can be neither (a bare jax
or dask array, not made with the books' ``np``) is refused before anything changes: updating a
copy would leave the layers reading the old weights without a word.

The formulas are xpnet's, which are the book's (SGD, Momentum, Nesterov, AdaGrad and RMSprop with
``1e-7`` in the denominator; Adam with the bias correction folded into the rate). The book's
attribute names read the state: ``lr`` (settable, as in ``optimizer.lr /= 4.0``), ``v``, ``h``,
``m`` (lists, one array per parameter) and ``iter``.
"""

from __future__ import annotations

from .. import optimizers as O
from ..backend import is_writeable
from ..checks import positive_arg
from ..errors import ConfigError
from .arrays import is_box, like, out, raw

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop"]


class _ListOptimizer:
    """``update(params, grads)`` on lists, by position, through one xpnet optimizer whose state
    is keyed by that position."""

    inner: type = O.SGD

    def __init__(self, **hyper):
        self._opt = self.inner(**hyper)
        self._params: dict = {}  # position -> the backend array: one mapping for the xpnet optimizer
        self._shapes: list | None = None

    @property
    def lr(self) -> float:
        return self._opt.lr

    @lr.setter
    def lr(self, value) -> None:
        self._opt.lr = positive_arg("learning rate (lr)", value)

    @property
    def iter(self) -> int:  # noqa: A003 (the book's name)
        return int(self._opt.state["step"])

    def _slot(self, name: str):
        s = self._opt.state[name]
        return [out(s[i]) for i in range(len(s))] if s else None

    def update(self, params, grads) -> None:
        """``params[i] -= step(grads[i])`` for every i, seen by every holder of ``params[i]``."""
        if not isinstance(params, (list, tuple)) or not isinstance(grads, (list, tuple)):
            raise ConfigError(f"params and grads must be lists of arrays (the model's params and grads), got "
                              f"{type(params).__name__} and {type(grads).__name__}")
        if len(params) != len(grads) or not params:
            raise ConfigError(f"params and grads must be non-empty lists of one length; got {len(params)} "
                              f"parameters and {len(grads)} gradients")
        shapes = [tuple(p.shape) for p in params]
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ConfigError(f"this {type(self).__name__} updates parameters of shapes {self._shapes}, not "
                              f"{shapes}; its state belongs to one model: create one optimizer per model")
        arrays = self._params
        for i, p in enumerate(params):
            a = raw(p)
            if not is_box(p) and not is_writeable(a):
                raise ConfigError(f"params[{i}] is a {type(a).__name__} that cannot change in place, so the "
                                  f"layers holding it would never see the update; make parameters with the "
                                  f"books' np (from xpnet.dlfs2.np import *: np.random.randn(...), np.zeros(...))")
            arrays[i] = a
        self._opt.update(arrays, {i: like(g, params[i]) for i, g in enumerate(grads)})
        for i, p in enumerate(params):
            if arrays[i] is not raw(p):  # a new array (jax, dask): it becomes the box's contents
                p.data = arrays[i]


class SGD(_ListOptimizer):
    """``params[i] -= lr * grads[i]``."""

    inner = O.SGD

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)


class Momentum(_ListOptimizer):
    """``v = momentum * v - lr * g``; ``params[i] += v``."""

    inner = O.Momentum

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)
        self.momentum = momentum

    @property
    def v(self):
        return self._slot("v")


class Nesterov(Momentum):
    """``v = momentum * v - lr * g``; ``params[i] += momentum^2 v - (1 + momentum) lr g``."""

    inner = O.Nesterov


class AdaGrad(_ListOptimizer):
    """``h += g^2``; ``params[i] -= lr * g / (sqrt(h) + 1e-7)``."""

    inner = O.AdaGrad

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)

    @property
    def h(self):
        return self._slot("h")


class RMSprop(_ListOptimizer):
    """``h = decay_rate * h + (1 - decay_rate) g^2``; ``params[i] -= lr * g / (sqrt(h) + 1e-7)``."""

    inner = O.RMSprop

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr=lr, decay_rate=decay_rate)
        self.decay_rate = decay_rate

    @property
    def h(self):
        return self._slot("h")


class Adam(_ListOptimizer):
    """``m += (1 - beta1)(g - m)``; ``v += (1 - beta2)(g^2 - v)``;
    ``params[i] -= lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + 1e-7)``."""

    inner = O.Adam

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2)
        self.beta1, self.beta2 = beta1, beta2

    @property
    def m(self):
        return self._slot("m")

    @property
    def v(self):
        return self._slot("v")
