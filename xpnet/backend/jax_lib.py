"""JAX: immutable arrays on its own devices; float64 needs ``jax_enable_x64``; whole steps are
compiled with ``jax.jit``."""

from __future__ import annotations

import re

import array_api_compat

from .base import Library


class Jax(Library):
    name = module = "jax"
    roots = ("jax", "jaxlib")
    api_module = "jax.numpy"
    install = "pip install 'xpnet[jax]'"
    cast = "x.astype(jnp.float32)"
    jit = True
    writes_in_place = False
    compile_summary = "jax.jit (--compile auto and on)"

    def owns(self, x) -> bool:
        return array_api_compat.is_jax_array(x)

    def devices(self):
        import jax

        return [str(d) for d in jax.devices()]

    def parse_device(self, text, spec):
        import jax

        if text is None:
            return jax.devices()[0]
        m = re.fullmatch(r"(cpu|gpu|cuda|rocm|tpu)(?::(\d+))?", text)
        if m is None:
            raise self.bad_device(spec)
        try:
            found = jax.devices({"cuda": "gpu", "rocm": "gpu"}.get(m.group(1), m.group(1)))
        except RuntimeError as e:
            raise self.bad_device(spec, f" ({e})") from None
        index = int(m.group(2) or 0)
        if index >= len(found):
            raise self.bad_device(spec)
        return found[index]

    def enable_float64(self):
        import jax

        jax.config.update("jax_enable_x64", True)  # otherwise float64 is silently float32

    def reports_float64(self, xp, label):
        return True  # float64 exists once x64 is on, which xpnet does when float64 is chosen

    def upload(self, xp, dev, a, fresh):
        import jax

        if a.dtype.itemsize == 8 and a.dtype.kind in "fc":  # keep float64: no silent float32
            self.enable_float64()
        return jax.device_put(a, dev)

    def set_items(self, x, index, value):
        # integer positions as arrays: one compiled scatter serves every position (a Python int is
        # static to jax, and an element-by-element loop would compile one program per element)
        return x.at[_dynamic(index)].set(value)

    def add_at(self, x, index, value):
        return x.at[index].add(value)

    def time_scan(self, x):
        jax = self.import_module()
        return jax.lax.scan if isinstance(x, jax.core.Tracer) else None

    def scatter_add(self, xp, shape, idx, values):
        return xp.zeros_like(values, shape=shape).at[idx].add(values)  # values' device, also traced


def _dynamic(index):
    if isinstance(index, tuple):
        return tuple(_dynamic(i) for i in index)
    if isinstance(index, int) and not isinstance(index, bool):
        import numpy as np

        return np.asarray(index)
    return index
