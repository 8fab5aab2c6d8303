"""Datasets for training: bundled (digits, iris), generated (spiral), downloaded (MNIST).

Every loader returns a :class:`Dataset` of host NumPy arrays: float64 features scaled to
[0, 1] (``scale="minmax"``, the default) or standardised (``scale="standard"``), integer
labels (int64). The trainer moves them to the chosen device once. The same features in the
data's original units, which ``xpnet predict`` and an exported ONNX graph take, are
``x_train_raw`` / ``x_test_raw`` (``dataset.scaler.inverse`` undoes the scaling of any array).

Splits are fixed and documented:

- ``digits`` and ``iris``: stratified 80/20 train/test split drawn with
  ``numpy.random.default_rng(SPLIT_SEED)`` (``SPLIT_SEED = 20240601``); each class keeps
  its share in both parts. The split does not depend on the training seed.
- ``spiral``: 3 classes x 100 points; the test set is the training set (the textbook
  reports training accuracy on this toy problem).
- ``mnist`` / ``fashion-mnist``: the official 60,000 / 10,000 split.

Scaling statistics come from the training part only. Images use their known range
(digits 0..16, MNIST 0..255); iris uses the training minimum and maximum per feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..checks import is_int, is_number
from ..errors import ConfigError, DataError, ShapeError
from . import idx

SPLIT_SEED = 20240601
TEST_FRACTION = 0.2
SCALES = ("minmax", "standard")
NAMES = ("digits", "iris", "spiral", "mnist", "fashion-mnist")


@dataclass
class Scaler:
    """``(x - offset) / divisor`` per feature (or one number for all); JSON-friendly."""

    kind: str
    offset: list
    divisor: list

    def __call__(self, x) -> np.ndarray:
        """Features in the data's original units, scaled: ``(x - offset) / divisor`` (images of
        shape (N, C, H, W) per pixel, as their flat rows)."""
        x, flat = self._checked(x)
        return ((flat - np.asarray(self.offset)) / np.asarray(self.divisor)).reshape(x.shape)

    def inverse(self, x) -> np.ndarray:
        """Scaled features back in the data's original units: ``x * divisor + offset`` (undoes
        :meth:`__call__` up to rounding; exactly for digits, whose divisor is 16)."""
        x, flat = self._checked(x)
        return (flat * np.asarray(self.divisor) + np.asarray(self.offset)).reshape(x.shape)

    def _checked(self, x) -> tuple:
        """``(x, x as flat rows)``, both float64."""
        x = np.asarray(x, dtype=np.float64)
        if len(self.offset) > 1:
            if x.ndim < 2 or int(np.prod(x.shape[1:])) != len(self.offset):
                raise ShapeError(
                    f"this {self.kind} scaler was fitted on {len(self.offset)} features; expected samples "
                    f"of shape (N, {len(self.offset)}), got shape {x.shape}"
                )
            return x, x.reshape(x.shape[0], -1)
        return x, x

    def to_json(self) -> dict:
        return {"kind": self.kind, "offset": self.offset, "divisor": self.divisor}

    @classmethod
    def from_json(cls, d, num_features: int | None = None) -> Scaler:
        """The scaler in ``d`` (from :meth:`to_json`), checked; ``num_features``: the width it must fit."""

        def bad(what: str):
            raise DataError(
                f"bad scaler {str(d)[:80]}: {what}; expected {{'kind': str, 'offset': [numbers], "
                f"'divisor': [non-zero numbers]}} with 1 or {num_features or 'F'} numbers each, "
                f"as Scaler.to_json writes"
            )

        if not isinstance(d, dict) or not {"kind", "offset", "divisor"} <= set(d):
            bad("not a dict with the keys kind, offset and divisor")
        if not isinstance(d["kind"], str):
            bad(f"kind is {d['kind']!r}, not a string")
        for key in ("offset", "divisor"):
            v = d[key]
            if not isinstance(v, list) or not v or not all(is_number(a) for a in v):
                bad(f"{key} is not a non-empty list of finite numbers")
        if len(d["offset"]) != len(d["divisor"]):
            bad(f"{len(d['offset'])} offsets but {len(d['divisor'])} divisors")
        if 0 in d["divisor"]:
            bad("a divisor is 0")
        if num_features is not None and len(d["offset"]) not in (1, num_features):
            bad(f"{len(d['offset'])} offsets for a model of {num_features} features")
        return cls(d["kind"], list(d["offset"]), list(d["divisor"]))


@dataclass
class Dataset:
    """A train/test pair of host arrays, ready for the trainer."""

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    num_classes: int
    scaler: Scaler
    class_names: list = field(default_factory=list)
    info: str = ""
    image_shape: tuple | None = None  # one image's (C, H, W) for datasets of images (digits, MNIST)

    @property
    def num_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def x_train_raw(self) -> np.ndarray:
        """``x_train`` in the data's original units (``scaler.inverse(x_train)``)."""
        return self.scaler.inverse(self.x_train)

    @property
    def x_test_raw(self) -> np.ndarray:
        """``x_test`` in the data's original units (``scaler.inverse(x_test)``; digits: pixel values
        0..16): the features ``xpnet predict`` and an exported ONNX graph take, since they scale
        their input themselves. ``x_test`` is already scaled: fed to them, it is scaled twice."""
        return self.scaler.inverse(self.x_test)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: train {self.x_train.shape}, test {self.x_test.shape}, "
            f"{self.num_classes} classes)"
        )


# ---------------------------------------------------------------------- splitting and scaling
def stratified_split(labels, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """Indices ``(train, test)`` with each class split ``1 - test_fraction`` / ``test_fraction``.

    For each class (in label order) its indices are shuffled with one seeded generator and
    ``round(n_class * test_fraction)`` of them go to the test part. Both index arrays are sorted.
    """
    if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(members.size * float(test_fraction)))
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def fit_scaler(x_train: np.ndarray, kind: str = "minmax", value_range=None) -> Scaler:
    """A :class:`Scaler` fitted on the training features.

    ``minmax`` maps ``value_range`` (the data's known range, e.g. (0, 16)) or the training
    minimum and maximum per feature to [0, 1]; ``standard`` subtracts the per-feature mean
    and divides by the standard deviation (constant features are left unscaled).
    """
    if kind not in SCALES:
        raise ConfigError(f"unknown scaling {kind!r}; valid scalings: {', '.join(SCALES)}")
    x = np.asarray(x_train, dtype=np.float64).reshape(x_train.shape[0], -1)
    if kind == "standard":
        mean, std = x.mean(axis=0), x.std(axis=0)
        return Scaler(kind, mean.tolist(), np.where(std > 0, std, 1.0).tolist())
    if value_range is not None:
        lo, hi = value_range
        return Scaler(kind, [float(lo)], [float(hi - lo)])
    lo, hi = x.min(axis=0), x.max(axis=0)
    return Scaler(kind, lo.tolist(), np.where(hi > lo, hi - lo, 1.0).tolist())


def _finish(name, x, t, train_idx, test_idx, scale, value_range, num_classes, class_names, info,
            image_shape=None) -> Dataset:
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.int64)
    scaler = fit_scaler(x[train_idx], scale, value_range)
    return Dataset(
        name,
        scaler(x[train_idx]),
        t[train_idx],
        scaler(x[test_idx]),
        t[test_idx],
        num_classes,
        scaler,
        list(class_names),
        info,
        image_shape,
    )


def _bundled(filename: str) -> dict:
    try:
        with (
            resources.files(__name__).joinpath(filename).open("rb") as f,
            np.load(f, allow_pickle=False) as npz,
        ):
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(
            f"the bundled data file xpnet/datasets/{filename} cannot be read ({e}); reinstall xpnet"
        ) from e


# ---------------------------------------------------------------------- the datasets
def digits(
    scale: str = "minmax", split_seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> Dataset:
    """UCI optical handwritten digits: 1,797 images of 8x8 pixels with values 0..16, 10 classes."""
    d = _bundled("digits.npz")
    tr, te = stratified_split(d["labels"], test_fraction, split_seed)
    return _finish(
        "digits",
        d["images"],
        d["labels"],
        tr,
        te,
        scale,
        (0, 16),
        10,
        [str(i) for i in range(10)],
        "UCI ML hand-written digits (8x8), CC BY 4.0",
        (1, 8, 8),
    )


def iris(
    scale: str = "minmax", split_seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> Dataset:
    """Fisher's Iris: 150 flowers, 4 measurements in cm, 3 species."""
    d = _bundled("iris.npz")
    tr, te = stratified_split(d["labels"], test_fraction, split_seed)
    return _finish(
        "iris",
        d["features"],
        d["labels"],
        tr,
        te,
        scale,
        None,
        3,
        ["setosa", "versicolor", "virginica"],
        "Fisher's Iris data, CC BY 4.0",
    )


def make_spiral(points_per_class: int = 100, num_classes: int = 3, noise: float = 0.2, seed: int = 1984):
    """The textbook's spiral: class ``j`` runs along an arm from the centre outward.

    Point ``i`` of class ``j`` sits at radius ``r = i / points_per_class`` and angle
    ``4 j + 4 r + noise * N(0, 1)``, at ``(r sin(angle), r cos(angle))``. Returns host
    arrays ``x`` (float64, shape (classes * points, 2)) and integer labels ``t``.
    """
    if not is_int(seed, 0):
        raise ConfigError(f"spiral seed must be an integer >= 0, got {seed!r}")
    if points_per_class < 1 or num_classes < 1:
        raise ConfigError(
            f"spiral needs at least one class and one point per class, got "
            f"{num_classes} classes x {points_per_class} points"
        )
    rng = np.random.default_rng(seed)
    r = np.arange(points_per_class) / points_per_class
    xs, ts = [], []
    for j in range(num_classes):
        angle = 4.0 * j + 4.0 * r + noise * rng.standard_normal(points_per_class)
        xs.append(np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1))
        ts.append(np.full(points_per_class, j, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ts)


def spiral(
    scale: str | None = None,
    seed: int = 1984,
    points_per_class: int = 100,
    num_classes: int = 3,
    noise: float = 0.2,
) -> Dataset:
    """The 2-D spiral; features stay in their natural [-1, 1] square unless ``scale`` is given.
    The test set is the training set."""
    x, t = make_spiral(points_per_class, num_classes, noise, seed)
    if scale is None:
        scaler = Scaler("none", [0.0], [1.0])
    else:
        scaler = fit_scaler(x, scale)
    xs = scaler(x)
    return Dataset(
        "spiral",
        xs,
        t,
        xs.copy(),
        t.copy(),
        num_classes,
        scaler,
        [str(j) for j in range(num_classes)],
        f"{num_classes} x {points_per_class} points, angle noise {noise}, seed {seed}",
    )


def mnist(
    scale: str = "minmax", data_dir=None, download: bool = True, variant: str = "mnist", mirrors=None
) -> Dataset:
    """MNIST or Fashion-MNIST (28x28 grey images, 10 classes) from ``data_dir`` or the cache.

    Files are looked up in ``data_dir`` (or ``$XPNET_DATA_DIR``, else ``~/.cache/xpnet``),
    under ``<dir>/<variant>/``; missing files are downloaded (``download=True``) from the
    mirrors, checked against their SHA-256 and written atomically.
    """
    from . import download as M

    arrays = M.load_arrays(variant, data_dir=data_dir, download=download, mirrors=mirrors)
    x = np.concatenate([arrays["train_images"], arrays["test_images"]])
    t = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    n = arrays["train_images"].shape[0]
    tr, te = np.arange(n), np.arange(n, x.shape[0])
    x = x.reshape(x.shape[0], -1)
    names = M.CLASS_NAMES.get(variant, [str(i) for i in range(10)])
    return _finish(variant, x, t, tr, te, scale, (0, 255), 10, names, M.INFO[variant], (1, 28, 28))


def load(
    name: str, scale: str = "minmax", seed: int | None = None, data_dir=None, download: bool = True
) -> Dataset:
    """A dataset by name: ``digits`` (default), ``iris``, ``spiral``, ``mnist``, ``fashion-mnist``.

    ``seed`` only affects generated data (spiral); the splits of the others are fixed.
    """
    key = str(name).lower().replace("_", "-")
    if key not in NAMES:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(NAMES)}")
    if scale not in SCALES:
        raise ConfigError(f"unknown scaling {scale!r}; valid scalings: {', '.join(SCALES)}")
    if key == "digits":
        return digits(scale)
    if key == "iris":
        return iris(scale)
    if key == "spiral":
        return spiral(None if scale == "minmax" else scale, seed=1984 if seed is None else seed)
    return mnist(scale, data_dir=data_dir, download=download, variant=key)


__all__ = [
    "Dataset",
    "Scaler",
    "NAMES",
    "SCALES",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "digits",
    "fit_scaler",
    "idx",
    "iris",
    "load",
    "make_spiral",
    "mnist",
    "spiral",
    "stratified_split",
]
