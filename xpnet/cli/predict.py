"""``xpnet predict``: the classes a checkpoint predicts for features in a .npy or CSV file, or
for test samples of its dataset."""

from __future__ import annotations

import io
import os
import sys
import warnings

from ..errors import CheckpointError, ConfigError, DataError, DTypeError, NonFiniteError, ShapeError
from .loading import dataset_for, load_for_use
from .output import say

FEATURES_HELP = (
    "expected a .npy array of numbers of shape (N, F) (or (N, ...), flattened per sample; a 1-D "
    "array is one sample), or a CSV file of numbers with one sample a row and no header"
)


def _read_features(path: str):
    """Host float64 features ``(N, ...)`` from a .npy or CSV file: numbers, finite, N >= 1."""
    import numpy as np

    if os.path.isdir(path):
        raise DataError(f"{path!r} is a folder; {FEATURES_HELP}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(b"\x93NUMPY"):  # a .npy file, whatever its name
            x = np.load(io.BytesIO(data), allow_pickle=False)
        elif path.lower().endswith(".npy") or data.startswith(b"PK"):
            raise DataError(f"{path!r} is not a .npy file (it starts with {data[:8]!r}); {FEATURES_HELP}")
        else:
            with warnings.catch_warnings():  # a file of comments only: "no data", handled below
                warnings.simplefilter("ignore", UserWarning)
                x = np.loadtxt(io.StringIO(data.decode("utf-8")), delimiter=",", ndmin=2)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path!r} does not exist; pass the path of a .npy or .csv file of features") from None
    except (OSError, ValueError) as e:  # ValueError: text, ragged rows, object arrays, bad UTF-8
        raise DataError(f"cannot read features from {path!r}: {e}; {FEATURES_HELP}") from e
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{path!r} holds values of dtype {x.dtype}; {FEATURES_HELP}")
    if x.ndim == 0:
        raise ShapeError(f"{path!r} holds a single number (shape ()); {FEATURES_HELP}")
    x = np.asarray(x, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x
    if x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{path!r} holds no samples (shape {x.shape}); {FEATURES_HELP}")
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.unravel_index(np.argmax(bad), x.shape)
        raise NonFiniteError(
            f"{path!r} holds {int(bad.sum())} NaN or inf value(s), the first in sample {first[0]}; "
            f"predictions from them would mean nothing: remove or fill them in"
        )
    return x


def _note_if_scaled_already(path: str, scaler, raw) -> None:
    """A note when the features look scaled already: the model scales its input itself, so scaled
    features (a Dataset's ``x_test``) would be scaled twice. Said only where it cannot be a real
    input: a scaler of one known range much wider than [0, 1] (digits 0..16, MNIST 0..255) and
    several samples, none of them blank, with every value in [0, 1]."""
    if len(scaler.offset) != 1 or raw.shape[0] < 2:
        return
    lo, hi = scaler.offset[0], scaler.offset[0] + scaler.divisor[0]
    rows = raw.reshape(raw.shape[0], -1)
    if lo <= 0 and hi >= 4 and rows.min() >= 0 and rows.max() <= 1 and (rows.max(axis=1) > 0).all():
        print(
            f"xpnet predict: note: every value in {path!r} lies in [0, 1], the range of the scaled training "
            f"data, but the model takes features in the data's original units ({lo:g}..{hi:g}) and scales "
            f"them itself; if these were scaled already (a Dataset's x_test), pass the raw ones (x_test_raw)",
            file=sys.stderr,
        )


def _scaled_input(args, meta, dtype, image=None):
    """The INPUT file's features, checked against the model's width (and for a model of images of shape
    ``image``, against (N, *image) or (N, C*H*W)), scaled as in training."""
    import numpy as np

    raw = _read_features(args.input)
    features = meta["features"]
    width = int(np.prod(raw.shape[1:]))
    if image is not None and (width != features or raw.ndim not in (2, 1 + len(image))
                              or raw.ndim > 2 and tuple(raw.shape[1:]) != tuple(image)):
        trained = f" (trained on {meta['dataset']})" if isinstance(meta.get("dataset"), str) else ""
        raise ShapeError(
            f"{args.input!r} has shape {raw.shape}; the model of checkpoint {args.checkpoint!r}{trained} takes "
            f"images of shape {tuple(image)}: give an array of shape (N, {', '.join(map(str, image))}) or "
            f"(N, {features}), one image a row"
        )
    if width != features:
        trained = f" (trained on {meta['dataset']})" if isinstance(meta.get("dataset"), str) else ""
        raise ShapeError(
            f"{args.input!r} has {width} feature(s) per sample (shape {raw.shape}); the model of "
            f"checkpoint {args.checkpoint!r}{trained} takes {features}: give {features} values per sample"
        )
    if meta.get("scaler") is None:
        raise CheckpointError(
            f"checkpoint {args.checkpoint!r} has no scaler in its meta, so raw features cannot be scaled "
            f"as in training; save it with meta={{'scaler': dataset.scaler.to_json()}} (xpnet train does)"
        )
    _note_if_scaled_already(args.input, meta["scaler"], raw)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        x = meta["scaler"](raw.reshape(raw.shape[0], features)).astype(dtype)
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = np.unravel_index(np.argmax(bad), x.shape)
        raise NonFiniteError(
            f"{args.input!r}: sample {i}, feature {j} ({raw.reshape(x.shape)[i, j]:.6g}) is beyond the "
            f"range of {dtype} (|x| <= {np.finfo(dtype).max:.4g}) after scaling; check the input's units, "
            f"or load the model in float64 (--dtype float64)"
        )
    return x


PREDICT_TEST_SAMPLES = 10  # what xpnet predict shows without INPUT or --limit


def cmd_predict(args) -> int:
    import numpy as np

    from ..backend import from_host_like, host_dtype, to_numpy

    model, meta = load_for_use(args)
    if getattr(model, "takes_ids", False):
        from .sequence import predict as predict_sequence

        return predict_sequence(args, model, meta)
    ref = model.reference_array
    names = meta.get("class_names") or []
    truth = None
    if args.input is not None:
        x = _scaled_input(args, meta, host_dtype(ref.dtype), model.input_shape)[: args.limit]  # all checked
    else:
        if meta.get("dataset") is None:
            raise ConfigError("no INPUT file given and the checkpoint names no dataset; pass INPUT")
        data = dataset_for(args, meta, None)
        limit = args.limit or PREDICT_TEST_SAMPLES
        x, truth = data.x_test[:limit].astype(host_dtype(ref.dtype)), data.t_test[:limit]
    with np.errstate(all="ignore"):  # overflow is reported below, as a sentence
        x = model.reshape_input(x)  # images (N, C, H, W) for a convolutional network
        scores = to_numpy(model.predict(from_host_like(x, ref), train=False)).astype(np.float64)
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise NonFiniteError(
            f"the model's scores for {int(bad.sum())} sample(s) (the first: sample {int(np.argmax(bad))}) are "
            f"NaN or inf: the inputs are far outside the training data for {host_dtype(ref.dtype)}, or the "
            f"checkpoint's weights hold NaN or inf; check the inputs, or try --dtype float64"
        )
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    pred = prob.argmax(axis=1)
    for i, c in enumerate(pred):
        label = names[c] if c < len(names) else str(c)
        line = f"{i}\t{label}\t(p={prob[i, c]:.3f})"
        if truth is not None:
            t = int(truth[i])
            line += f"\ttrue {names[t] if t < len(names) else t}" + ("" if t == c else "  <- wrong")
        say(line)
    return 0
