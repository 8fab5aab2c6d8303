"""The errors xpnet raises on purpose.

Every error is a subclass of :class:`XPNetError` and of the built-in exception a
Python user would expect (``ValueError`` for a bad value, ``TypeError`` for a wrong
type, ``ImportError`` for a missing package), so ``except ValueError`` keeps working.
Messages say what was expected, what was given and how to fix it.
"""

from __future__ import annotations


class XPNetError(Exception):
    """Base class of every error xpnet raises on purpose."""


class BackendError(XPNetError, ValueError):
    """Unknown backend name, device or dtype."""


class BackendNotInstalledError(BackendError, ImportError):
    """The chosen backend's package is not installed (the message names the pip extra)."""


class BackendUnavailableError(BackendError, RuntimeError):
    """The backend is installed but cannot run here (e.g. CuPy with no usable CUDA device)."""


class BackendMismatchError(XPNetError, TypeError):
    """An array from another backend or device than the model's."""


class ShapeError(XPNetError, ValueError):
    """An array has the wrong rank or size."""


class DTypeError(XPNetError, TypeError):
    """An array has the wrong dtype (e.g. integers where floats are needed)."""


class LabelError(XPNetError, ValueError):
    """Labels out of range, of the wrong kind, or not matching the batch."""


class IndexRangeError(XPNetError, IndexError):
    """Word or row indices outside the table they index (an embedding's vocabulary)."""


class ConfigError(XPNetError, ValueError):
    """A bad hyper-parameter or name (learning rate, optimizer, activation, dataset...)."""


class NonFiniteError(XPNetError, FloatingPointError):
    """NaN or inf where finite numbers are required (inputs, or a diverging loss)."""


class CheckpointError(XPNetError, ValueError):
    """A checkpoint file that is corrupted, truncated or not an xpnet checkpoint."""


class DataError(XPNetError, ValueError):
    """A dataset that cannot be found, downloaded, verified or parsed."""


class OutputError(XPNetError, OSError):
    """An output folder that is taken by another run, or a write that failed (a full disk)."""


class CallOrderError(XPNetError, RuntimeError):
    """A method called before what it needs (``backward()`` before ``forward``)."""


class CaptureError(XPNetError, RuntimeError):
    """A step could not be captured as a CUDA graph (it ran once, eagerly, before the capture)."""
