"""The book's ``common/optimizer.py`` on xpnet's optimizers (:mod:`xpnet.optimizers`).

``update(params, grads)`` takes the book's dicts: arrays of the chosen backend, or
:mod:`xpnet.dlfs1.np` boxes (jax, dask, array_api_strict), whose contents are replaced, so the
layers holding them see the step. The maths and the state (``optimizer.state``) are xpnet's.
"""

from __future__ import annotations

from .. import optimizers as O
from ..backend import resolve
from ..errors import ConfigError
from .box import ndarray, raw
from .layers import held


class _Book:
    """Holds an xpnet optimizer and the backend arrays of the book's ``params`` dict."""

    xpnet_class: type = O.Optimizer

    def __init__(self, **hyper):
        self.optimizer = self.xpnet_class(**hyper)
        self._user = None  # the book's params dict this optimizer updates
        self._arrays: dict = {}  # its arrays, the dict the xpnet optimizer updates

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = float(value)

    @property
    def state(self) -> dict:
        return self.optimizer.state

    def update(self, params, grads) -> None:
        if not hasattr(params, "items"):
            raise ConfigError(f"params must be a dict of arrays (network.params), got {type(params).__name__}")
        be = resolve()
        if params is not self._user:
            self._user, self._arrays = params, {}
        for key, p in params.items():
            self._arrays[key] = raw(held(p, f"params[{key!r}]"), be)
        if not hasattr(grads, "items"):
            raise ConfigError(f"grads must be a dict keyed like params, got {type(grads).__name__}")
        self.optimizer.update(self._arrays, {k: raw(g, be) for k, g in grads.items()})
        for key, p in params.items():
            if type(p) is ndarray:
                p.data = self._arrays[key]


class SGD(_Book):
    """``W -= lr * dW``."""

    xpnet_class = O.SGD

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)


class Momentum(_Book):
    """``v = momentum * v - lr * dW``; ``W += v``."""

    xpnet_class = O.Momentum

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)


class Nesterov(_Book):
    """Nesterov's accelerated gradient in the book's form."""

    xpnet_class = O.Nesterov

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)


class AdaGrad(_Book):
    """``h += dW * dW``; ``W -= lr * dW / (sqrt(h) + 1e-7)``."""

    xpnet_class = O.AdaGrad

    def __init__(self, lr=0.01):
        super().__init__(lr=lr, eps=1e-7)


class RMSprop(_Book):
    """``h = decay_rate * h + (1 - decay_rate) * dW * dW``; ``W -= lr * dW / (sqrt(h) + 1e-7)``."""

    xpnet_class = O.RMSprop

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr=lr, decay_rate=decay_rate, eps=1e-7)


class Adam(_Book):
    """Adam with the book's bias-corrected rate ``lr * sqrt(1 - beta2^t) / (1 - beta1^t)``."""

    xpnet_class = O.Adam

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=1e-7)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}
