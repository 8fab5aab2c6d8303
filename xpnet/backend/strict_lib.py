"""array_api_strict: the standard and nothing more, with simulated devices (CPU_DEVICE,
device1, device2, no_float64) that catch a forgotten ``device=`` without a GPU."""

from __future__ import annotations

import numpy as np

from .base import Library


class Strict(Library):
    name = module = "array_api_strict"
    roots = ("array_api_strict",)
    install = "pip install 'xpnet[strict]'"
    writes_in_place = False  # ``x[integer array] = v`` is refused (only the standard's indexing)

    def owns(self, x) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    def devices(self):
        """Only the devices with int64, which xpnet needs for labels."""
        import array_api_strict as xs

        info = xs.__array_namespace_info__()
        return [d._device for d in info.devices() if "int64" in info.dtypes(device=d, kind="signed integer")]

    def parse_device(self, text, spec):
        import array_api_strict as xs

        text = {None: "CPU_DEVICE", "cpu": "CPU_DEVICE"}.get(text, text)
        if text not in self.devices():
            known = [d._device for d in xs.__array_namespace_info__().devices()]
            why = " (it has no int64, which xpnet needs for labels)" if text in known else ""
            raise self.bad_device(spec, why)
        return xs.Device(text)

    def label(self, d):
        text = str(d)
        return text.split("'")[1] if text.startswith("array_api_strict.Device(") else None

    def to_numpy(self, x):
        import array_api_strict as xs

        return np.asarray(xs.asarray(x, device=xs.Device("CPU_DEVICE"), copy=True))
