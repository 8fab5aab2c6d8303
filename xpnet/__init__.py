"""xpnet: textbook neural-network layers written once against the Python Array API.

The same Affine / activation / Softmax-with-Loss / SGD code runs on NumPy (the default),
CuPy, PyTorch, JAX, Dask or array_api_strict, chosen with ``XPNET_BACKEND`` or
:func:`set_backend`. Importing xpnet imports none of cupy, torch or jax.
"""

from .backend import (
    BACKENDS,
    Backend,
    backend_name,
    get_backend,
    set_backend,
    to_backend,
    to_numpy,
    use_backend,
)
from .cnn import deep_cnn, simple_cnn
from .compile import compile_step
from .conv import Convolution, Flatten, Pooling, col2im, im2col
from .errors import (
    BackendError,
    BackendMismatchError,
    BackendNotInstalledError,
    BackendUnavailableError,
    CallOrderError,
    CaptureError,
    CheckpointError,
    ConfigError,
    DataError,
    DTypeError,
    LabelError,
    NonFiniteError,
    OutputError,
    ShapeError,
    XPNetError,
)
from .functional import (
    accuracy,
    check_binary_labels,
    check_labels,
    cross_entropy,
    log_softmax,
    logsumexp,
    one_hot,
    relu,
    sigmoid,
    softmax,
)
from .layers import (
    Affine,
    BatchNormalization,
    Dropout,
    MatMul,
    ReLU,
    Repeat,
    Sigmoid,
    Softmax,
    Sum,
    Tanh,
)
from .losses import MeanSquaredError, SigmoidWithLoss, SoftmaxWithLoss
from .model import Sequential, mlp
from .optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, get_optimizer

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "Backend", "backend_name", "get_backend", "set_backend", "to_backend", "to_numpy",
    "use_backend",
    "BackendError", "BackendMismatchError", "BackendNotInstalledError", "BackendUnavailableError",
    "CallOrderError", "CaptureError", "CheckpointError", "ConfigError", "DataError", "DTypeError", "LabelError",
    "NonFiniteError", "OutputError", "ShapeError", "XPNetError",
    "accuracy", "check_binary_labels", "check_labels", "cross_entropy", "log_softmax", "logsumexp", "one_hot", "relu",
    "sigmoid", "softmax",
    "Affine", "BatchNormalization", "Dropout", "MatMul", "ReLU", "Repeat", "Sigmoid", "Softmax",
    "Sum", "Tanh", "Convolution", "Pooling", "Flatten", "im2col", "col2im",
    "MeanSquaredError", "SigmoidWithLoss", "SoftmaxWithLoss",
    "Sequential", "mlp", "simple_cnn", "deep_cnn", "compile_step",
    "SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "get_optimizer",
]
