"""Gradient checking: backprop's gradients against central differences, on the model's device.

What ``Sequential.numerical_gradient`` and ``Sequential.gradient_check`` run. The model's
parameters, state and input are cast to the asked dtype (float64 by default) for the check and
restored afterwards; layers that draw random numbers (Dropout) reuse one draw throughout.
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from .backend import backend_name, device, from_host_like, host_dtype, namespace, to_numpy
from .errors import ConfigError, DTypeError


def numerical_gradient(model, x, t, eps: float = 1e-5, dtype: str = "float64", wrt_input: bool = False) -> dict:
    """Central differences ``(L(p + eps) - L(p - eps)) / 2 eps`` for every parameter of ``model``
    (see :meth:`xpnet.Sequential.numerical_gradient`)."""
    eps = _check_gradient_args(dtype, eps)
    with _cast(model, x, dtype) as (xc, ref):
        xp = namespace(ref)
        with _frozen(model):

            def loss_at() -> float:
                saved = dict(model.state)
                value = float(to_numpy(model.loss(xc_box[0], t, train=True, check=False)))
                model.state.update(saved)
                return value

            saved = dict(model.state)  # the targets, checked once (the loop below skips it)
            model.loss_layer.forward(model._forward(xc, True, True), t, check=True)
            model.state.update(saved)
            xc_box = [xc]
            out = {}
            targets = list(model.params.items()) + ([("x", xc)] if wrt_input else [])
            for key, p in targets:
                put = (lambda v: xc_box.__setitem__(0, v)) if key == "x" else \
                    (lambda v, k=key: model.params.__setitem__(k, v))
                flat = xp.reshape(xp.arange(_size(p), device=device(p)), p.shape)
                g = np.empty(_size(p))
                for i in range(g.size):
                    e = xp.astype(flat == i, p.dtype) * eps
                    put(p + e)
                    plus = loss_at()
                    put(p - e)
                    minus = loss_at()
                    g[i] = (plus - minus) / (2 * eps)
                put(p)
                out[key] = from_host_like(g.reshape(tuple(p.shape)).astype(host_dtype(p.dtype)), p)
            return out


def gradient_check(model, x, t, eps: float = 1e-5, dtype: str = "float64", wrt_input: bool = True,
                   floor: float | None = None) -> dict:
    """Worst relative error between backprop and numerical gradients, per parameter of ``model``
    (see :meth:`xpnet.Sequential.gradient_check`)."""
    _check_gradient_args(dtype, eps)
    if floor is not None and not L.number_arg("floor", floor) > 0:
        raise ConfigError(f"floor must be a number > 0, got {floor!r}")
    num = numerical_gradient(model, x, t, eps, dtype, wrt_input)
    with _cast(model, x, dtype) as (xc, _), _frozen(model):
        saved = dict(model.state)
        model.loss(xc, t, train=True, check=False)
        dx = model.backward()
        model.state.update(saved)
        ana = {k: to_numpy(v) for k, v in model.grads.items()}
        if wrt_input:
            ana["x"] = to_numpy(dx)
    floor = floor if floor is not None else (1e-5 if dtype == "float64" else 1e-3)
    report = {}
    for key, n in num.items():
        a, b = ana[key].astype(np.float64), to_numpy(n)
        report[key] = float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))
    return report


def _check_gradient_args(dtype, eps) -> float:
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64' for numerical gradients, got {dtype!r}")
    eps = L.number_arg("eps", eps)
    if not eps > 0:
        raise ConfigError(f"eps (the finite-difference step) must be > 0, got {eps!r}; use 1e-5 in "
                          f"float64 or 1e-2 in float32")
    return eps


def _size(a) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n


class _cast:
    """Context: the model's parameters, state and input cast to ``dtype``, restored on exit."""

    def __init__(self, model, x, dtype: str):
        self.model, self.x, self.dtype = model, x, dtype

    def __enter__(self):
        m = self.model
        ref = m.reference_array
        x = m.check_input(self.x, "gradient-check input")
        xp = namespace(x)
        dt = getattr(xp, self.dtype)
        info = xp.__array_namespace_info__()
        if self.dtype not in info.dtypes(device=device(x), kind="real floating"):
            name = backend_name(x)
            raise DTypeError(f"numerical gradients in {self.dtype} asked for, but {name} arrays on device "
                             f"{device(x)} have no {self.dtype} in this process. Pass dtype='float32' (with "
                             f"a larger eps, e.g. 1e-2), or turn {self.dtype} on where the library has it "
                             f"by resolving a {self.dtype} backend first: "
                             f"xpnet.get_backend({name!r}, dtype={self.dtype!r}) (it says so if this device "
                             f"cannot have {self.dtype}); the model may stay float32")
        self.saved_params, self.saved_state = dict(m.params), dict(m.state)
        for mapping, saved in ((m.params, self.saved_params), (m.state, self.saved_state)):
            for k, v in saved.items():
                mapping[k] = xp.astype(v, dt)
        return xp.astype(x, dt), (m.reference_array if ref is not None else x)

    def __exit__(self, *exc):
        self.model.params.update(self.saved_params)
        self.model.state.update(self.saved_state)
        return False


class _frozen:
    """Context: layers that draw random numbers reuse their last draw (Dropout masks)."""

    def __init__(self, model):
        self.layers = [layer for layer in model.layers if hasattr(layer, "freeze")]

    def __enter__(self):
        for layer in self.layers:
            layer.freeze = True
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.freeze = False
        return False
