"""The ``xpnet`` command: ``train``, ``eval``, ``predict``, ``info`` and ``bench``.

``xpnet train`` with no arguments trains the default MLP on the bundled digits on the CPU.
``--backend`` does what ``XPNET_BACKEND`` does (likewise ``--device``, ``--dtype``).
Exit status: 0 on success, 1 on an xpnet error (bad data, diverging loss...), 2 on bad
arguments, 130 when training was interrupted with Ctrl-C, 143 when by SIGTERM and 129 when by
SIGHUP (in each case the last completed epoch's checkpoint is saved), 141 (quietly) when the output went into a pipe
whose reader stopped reading (``| head``).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

from .backend import BACKENDS, DTYPES
from .errors import CheckpointError, ConfigError, DataError, DTypeError, NonFiniteError, ShapeError, XPNetError

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head`, the reader gone


EXIT_HANGUP = 129


def _interrupted_status(history) -> int:
    return _signal_status(history.signal)


def _signal_status(name: str | None) -> int:
    """The exit status of a run stopped by the signal ``name`` (None: Ctrl-C)."""
    return {"SIGTERM": EXIT_TERMINATED, "SIGHUP": EXIT_HANGUP}.get(name, EXIT_INTERRUPTED)


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"hidden layer sizes must be integers like 256 or 128,64; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"hidden layer sizes must be positive integers; got {text!r}")
    return sizes


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return v


def _non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


SEED_LIMIT = 2**63  # numpy.random.default_rng takes seeds from 0 up


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {text!r}") from None
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"the seed must be from 0 to 2**63-1 (random generators take no negative seeds), got {text!r}"
        )
    return v


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a folder (it may not exist yet)")
    return text


def _add_backend_options(p: argparse.ArgumentParser, dtype_default: str = "$XPNET_DTYPE or float32") -> None:
    g = p.add_argument_group("backend (same as XPNET_BACKEND / XPNET_DEVICE / XPNET_DTYPE)")
    g.add_argument("--backend", choices=BACKENDS, help="array library (default: $XPNET_BACKEND or numpy)")
    g.add_argument("--device", help="device, e.g. cpu, cuda:0 (default: the backend's first)")
    g.add_argument("--dtype", choices=DTYPES, help=f"float dtype (default: {dtype_default})")


def build_parser() -> argparse.ArgumentParser:
    from .datasets import NAMES, SCALES
    from .layers import ACTIVATIONS
    from .optimizers import OPTIMIZERS
    from .train import DEFAULTS

    parser = argparse.ArgumentParser(
        prog="xpnet",
        description="Train and use textbook neural networks on NumPy, CuPy, PyTorch, JAX or Dask.",
    )
    parser.add_argument("--version", action="store_true", help="print the xpnet version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train an MLP (default: digits on the CPU)",
        description="Train an MLP and write checkpoint.npz, history.json/.csv and curves.png into --out.",
    )
    d = DEFAULTS
    t.add_argument("--dataset", choices=NAMES, default=None, help=f"default: {d['dataset']}")
    t.add_argument(
        "--hidden",
        type=_hidden,
        default=None,
        help="hidden layer sizes, e.g. 256 or 128,64 (default: 256)",
    )
    t.add_argument(
        "--activation", choices=list(ACTIVATIONS), default=None, help=f"default: {d['activation']}"
    )
    t.add_argument(
        "--optimizer", choices=list(OPTIMIZERS), default=None, help=f"default: {d['optimizer']}"
    )
    t.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"learning rate (default: {d['lr']} for adam, 0.1 otherwise)",
    )
    t.add_argument(
        "--weight-decay", type=_non_negative_float, default=None, help="L2 weight decay (default: 0)"
    )
    t.add_argument(
        "--epochs",
        type=_positive_int,
        default=d["epochs"],
        help="total epochs, counting those before --resume (default: %(default)s)",
    )
    t.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"the global batch: split over the ranks under mpiexec (default: {d['batch_size']})",
    )
    t.add_argument(
        "--seed", type=_seed, default=None, help=f"seeds weights and shuffles, 0 to 2**63-1 (default: {d['seed']})"
    )
    t.add_argument(
        "--scale",
        choices=SCALES,
        default=None,
        help=f"features to [0, 1] (minmax) or to zero mean, unit variance (default: {d['scale']})",
    )
    t.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        help="stop early after this many epochs without a lower test loss",
    )
    t.add_argument(
        "--out",
        default=None,
        help="output directory; one holding another run is refused unless --overwrite (default: runs/DATASET, "
        "or runs/DATASET-2, -3... when that holds a run; with --resume: the checkpoint's folder)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its files stay until the new run completes an epoch)",
    )
    t.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue from a checkpoint (--lr, --weight-decay, --batch-size, --dtype, --backend, --device "
        "may change; the model, dataset, optimizer, scale and seed may not)",
    )
    t.add_argument(
        "--data-dir",
        type=_folder,
        default=None,
        help="folder with local MNIST files / download cache (default: $XPNET_DATA_DIR or ~/.cache/xpnet)",
    )
    t.add_argument("--save-every", type=_positive_int, default=None, help="also checkpoint every N epochs")
    t.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="compile the training step: auto (where xpnet has a compiler: jax), on (error elsewhere), off "
        "(default: %(default)s)",
    )
    t.add_argument("--no-plot", action="store_true", help="do not draw curves.png")
    t.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines, no progress bar")
    _add_backend_options(t)

    e = sub.add_parser("eval", help="loss and accuracy of a checkpoint on its dataset's test set")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", choices=NAMES, default=None, help="default: the one it was trained on")
    e.add_argument("--data-dir", type=_folder, default=None, help="folder of local MNIST files (as for train)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_backend_options(e, "the checkpoint's")

    p = sub.add_parser("predict", help="predicted classes for features in a .npy/.csv file, or test samples")
    p.add_argument("checkpoint")
    p.add_argument(
        "input",
        nargs="?",
        default=None,
        help="features in the dataset's original units: a .npy array of shape (N, F) (or (N, ...), "
        "flattened per sample; a 1-D array is one sample), or a CSV file of numbers with one sample "
        "a row and no header; default: test samples of the checkpoint's dataset",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="show the first N samples only (default: every sample of INPUT; without INPUT, 10 test samples)",
    )
    p.add_argument("--data-dir", type=_folder, default=None, help="folder of local MNIST files (as for train)")
    _add_backend_options(p, "the checkpoint's")

    i = sub.add_parser("info", help="xpnet version and every backend: installed? version, devices, float64")
    i.add_argument("--json", action="store_true", help="print the report as JSON")

    x = sub.add_parser(
        "export",
        help="a checkpoint as ONNX (onnxruntime) or safetensors (PyTorch); needs xpnet[export]",
        description="Export a checkpoint (.npz or .safetensors) for other tools. ONNX: a graph that takes the "
        "raw features xpnet predict takes (the dataset's scaling is its first nodes) and gives scores. "
        "safetensors: the checkpoint's arrays and description, which xpnet eval, predict and train --resume "
        "also accept.",
    )
    x.add_argument("checkpoint")
    x.add_argument("--format", choices=("onnx", "safetensors"), required=True)
    x.add_argument("--out", default=None, help="file to write (default: the checkpoint's name, .onnx or .safetensors)")
    x.add_argument(
        "--probabilities", action="store_true", help="onnx: end with Softmax (Sigmoid for one output), not scores"
    )
    x.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="onnx: the graph's float type (default: the checkpoint's); float64 weights given --dtype float32 "
        "are rounded to float32",
    )

    sub.add_parser("bench", help="benchmarks (xpnet bench --help)", add_help=False)
    return parser


# ---------------------------------------------------------------------- commands
def _say(text: str = "") -> None:
    try:
        print(text, flush=True)
    except UnicodeEncodeError:  # e.g. a path of non-UTF-8 bytes on a UTF-8 terminal
        enc = sys.stdout.encoding or "utf-8"
        print(text.encode(enc, "backslashreplace").decode(enc), flush=True)


def cmd_train(args) -> int:
    from . import parallel

    comm = parallel.world()  # None unless mpiexec started several ranks
    if comm is None:
        return _train(args, None)
    try:
        return _train(args, comm)
    except BaseException as e:  # one rank failing ends them all, with its message, never a hang
        if os.environ.get("XPNET_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        comm.abort(_mpi_error_line(e), EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_ERROR)
        raise  # not reached: abort ends the process


def _mpi_error_line(e: BaseException) -> str:
    """What ``main`` would print for ``e``, for a rank that must print it before ending the job."""
    if isinstance(e, KeyboardInterrupt):
        return "xpnet train: interrupted (every rank stopped; the last checkpoint written is kept)"
    if isinstance(e, MemoryError):
        return f"xpnet train: error: out of memory ({e}); use a smaller model, batch or dataset"
    if isinstance(e, (XPNetError, OSError)):
        return f"xpnet train: error: {e}"
    return (f"xpnet train: internal error: {type(e).__name__}: {e} (please report; XPNET_DEBUG=1 shows the "
            "traceback)")


def _train(args, comm) -> int:
    from . import train as T

    # stop signals are recorded from here on, not only inside fit: one during the set-up (jax's
    # import and first compile) is then acted on at fit's first step, never raised inside jax
    with T._StopSignals(stop_at_exit=False) as stop:
        code = _train_in(args, comm)
    if stop.requested and not stop.handled and code == 0:
        by = f" by {stop.name}" if stop.name else ""
        print(f"xpnet train: interrupted{by} after the run had completed; everything was saved", file=sys.stderr)
        return _signal_status(stop.name)
    return code


def _train_in(args, comm) -> int:
    from . import train as T

    if comm is not None and comm.rank != 0:
        out = None  # rank 0 alone claims the folder and writes
    elif args.out is not None:
        out = args.out  # claimed by the trainer: refused if it holds another run or is in use
    elif args.resume is not None:
        out = Path(args.resume).parent  # continue in place
    else:
        out = T.claim_fresh_output(Path("runs") / (args.dataset or T.DEFAULTS["dataset"]))
    t0 = time.perf_counter()
    cache = (None, "off")
    if args.compile != "off":  # compiled executables kept between runs (jax only; no import here)
        from .compile import use_cache

        cache = use_cache()
        # a damaged entry read outside the compiled step (jax recompiles it): no raw warning for it
        warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache")
    trainer = T.build(
        args.dataset,
        hidden=args.hidden,
        activation=args.activation,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        out=out,
        scale=args.scale,
        weight_decay=args.weight_decay,
        patience=args.patience,
        data_dir=args.data_dir,
        resume=args.resume,
        save_every=args.save_every,
        quiet=args.quiet,
        log=_say,
        overwrite=args.overwrite,
        compile=args.compile,
        comm=comm,
    )
    if trainer.step.compiled and cache[0] is None and "folder" in cache[1] and (comm is None or comm.rank == 0):
        print(f"xpnet train: note: compiled executables are not kept between runs: {cache[1]}", file=sys.stderr)
    try:
        if comm is not None and comm.rank != 0:
            history = trainer.fit(args.epochs)  # silent: rank 0 prints and writes
            return _interrupted_status(history) if history.stopped == "interrupted" else 0
        return _run_training(args, trainer, t0)
    finally:
        trainer.close()


def _run_training(args, trainer, t0: float) -> int:
    out = trainer.out
    model = trainer.model
    ref = next(iter(model.params.values()))
    if not args.quiet:
        from .backend import backend_name, device, device_label, dtype_name

        sizes = [model.layers[0].params["W"].shape[0]] + [
            layer.params["W"].shape[1] for layer in model.layers if "W" in layer.params
        ]
        _say(
            f"training {'-'.join(map(str, sizes))} MLP on {trainer.meta.get('dataset')} "
            f"({trainer.x_train.shape[0]} train / "
            f"{0 if trainer.x_test is None else trainer.x_test.shape[0]} test)"
            f" with {type(trainer.optimizer).__name__} lr={trainer.optimizer.lr}, "
            f"batch {trainer.loader.batch_size}"
            f", on {backend_name(ref)} {device_label(device(ref))} {dtype_name(ref.dtype)}"
            + ("" if trainer.comm is None else f", {trainer.comm.size} MPI ranks")
        )
    history = trainer.fit(args.epochs)
    elapsed = time.perf_counter() - t0
    last = history.last
    if history.stopped == "interrupted":
        saved = f"checkpoint of epoch {trainer.epoch}: {history.checkpoint}" if history.checkpoint else (
            f"nothing written to {os.fspath(out)}")
        by = f" by {history.signal}" if history.signal else ""
        print(f"xpnet train: interrupted{by} after epoch {trainer.epoch}; {saved}", file=sys.stderr)
        return _interrupted_status(history)
    written = [history.checkpoint, str(out / "history.json"), str(out / "history.csv")]
    if not args.no_plot and history.records:
        from .plots import PlotUnavailableError, plot_decision_regions, plot_history

        try:
            written.append(str(plot_history(history, out / "curves.png", title=f"{trainer.meta.get('dataset')}")))
            if trainer.x_train.shape[1] == 2:
                from .backend import to_numpy

                written.append(
                    str(
                        plot_decision_regions(
                            model, to_numpy(trainer.x_train), to_numpy(trainer.t_train), out / "regions.png"
                        )
                    )
                )
        except (PlotUnavailableError, OSError) as e:  # the checkpoint and history are written already
            print(f"xpnet train: note: no plot drawn: {e}", file=sys.stderr)
    acc = last.get("test_acc", last.get("train_acc"))
    which = "test" if "test_acc" in last else "train"
    _say(
        f"final {which} accuracy {acc:.4f} after {trainer.epoch} epochs in {elapsed:.1f} s"
        + (" (stopped early)" if history.stopped == "early" else "")
    )
    _say("wrote " + ", ".join(written))
    return 0


def _load_for_use(args):
    """``(model, meta)`` of the checkpoint, with what eval and predict read from ``meta`` checked:
    ``meta["features"]``/``meta["classes"]`` are set to the model's input and output widths."""
    from . import checkpoint as C
    from .datasets import Scaler
    from .losses import SoftmaxWithLoss

    model, _, meta = C.load(args.checkpoint, backend=args.backend, device=args.device, dtype=args.dtype)
    where = f"checkpoint {args.checkpoint!r}"
    weights = [layer.params["W"] for layer in model.layers if "W" in layer.params]
    if not weights:
        raise ConfigError(f"{where} holds a model without weight matrices; eval and predict need a classifier")
    features, classes = int(weights[0].shape[0]), int(weights[-1].shape[1])
    if type(model.loss_layer) is not SoftmaxWithLoss:
        raise ConfigError(
            f"{where} was trained with {type(model.loss_layer).__name__}; eval and predict report classes "
            f"and probabilities of a SoftmaxWithLoss classifier (what xpnet train writes)"
        )
    seed = meta.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise CheckpointError(f"{where}: its meta seed is {seed!r}; expected a non-negative integer")
    names = meta.get("class_names")
    if names is not None and (
        not isinstance(names, list) or len(names) != classes or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(
            f"{where}: its class_names are {str(names)[:80]}; expected a list of {classes} strings, "
            f"one per output of the model"
        )
    if "scaler" in meta:
        try:
            meta["scaler"] = Scaler.from_json(meta["scaler"], features)
        except DataError as e:
            raise CheckpointError(f"{where}: {e}") from None
    return model, {**meta, "features": features, "classes": classes}


def _dataset(args, meta, name: str | None):
    """The dataset ``name`` (default: the one the checkpoint was trained on), checked to fit the model."""
    from . import datasets

    where = f"checkpoint {args.checkpoint!r}"
    trained_on = meta.get("dataset")
    name = name or trained_on
    if name is None:
        raise ConfigError(f"{where} does not say which dataset it was trained on; pass --dataset")
    if name not in datasets.NAMES:
        raise CheckpointError(
            f"{where} names the dataset {name!r}, which this xpnet does not know; "
            f"pass --dataset with one of {', '.join(datasets.NAMES)}"
        )
    scaler = meta.get("scaler")
    kind = scaler.kind if scaler is not None and scaler.kind in datasets.SCALES else "minmax"
    data = datasets.load(name, scale=kind, seed=meta.get("seed"), data_dir=args.data_dir)
    features, classes = meta["features"], meta["classes"]
    if (data.num_features, data.num_classes) != (features, classes):
        model = (
            f"was trained on {trained_on} ({features} features, {classes} classes)"
            if isinstance(trained_on, str) and trained_on != name
            else f"holds a model of {features} features and {classes} classes"
        )
        fix = f"evaluate it on {trained_on} (leave out --dataset)" if trained_on in datasets.NAMES else "pick another"
        raise ConfigError(
            f"{where} {model}; {name} has {data.num_features} features and {data.num_classes} classes; "
            f"{fix}, or use a checkpoint trained on {name}"
        )
    return data


def cmd_eval(args) -> int:
    import numpy as np

    from .backend import from_host_like, host_dtype, to_numpy
    from .train import evaluate

    model, meta = _load_for_use(args)
    data = _dataset(args, meta, args.dataset)
    ref = next(iter(model.params.values()))
    x = from_host_like(data.x_test.astype(host_dtype(ref.dtype)), ref)
    t = from_host_like(data.t_test.astype("int64"), ref)
    with np.errstate(all="ignore"):  # overflow is reported below, as a sentence
        loss, acc = (float(to_numpy(v)) for v in evaluate(model, x, t))
    if not math.isfinite(loss):
        raise NonFiniteError(
            f"the test loss of checkpoint {args.checkpoint!r} on {data.name} is {loss}: its weights hold "
            f"NaN or inf, or overflow in {host_dtype(ref.dtype)} (try --dtype float64)"
        )
    result = {
        "checkpoint": args.checkpoint,
        "dataset": data.name,
        "samples": int(x.shape[0]),
        "test_loss": loss,
        "test_acc": acc,
    }
    if args.json:
        _say(json.dumps(result))
    else:
        _say(f"{data.name}: test loss {loss:.4f}, test accuracy {acc:.4f} on {x.shape[0]} samples")
    return 0


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


def _scaled_input(args, meta, dtype):
    """The INPUT file's features, checked against the model's width, scaled as in training."""
    import numpy as np

    raw = _read_features(args.input)
    features = meta["features"]
    width = int(np.prod(raw.shape[1:]))
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

    from .backend import from_host_like, host_dtype, to_numpy

    model, meta = _load_for_use(args)
    ref = next(iter(model.params.values()))
    names = meta.get("class_names") or []
    truth = None
    if args.input is not None:
        x = _scaled_input(args, meta, host_dtype(ref.dtype))[: args.limit]  # the whole file is checked
    else:
        if meta.get("dataset") is None:
            raise ConfigError("no INPUT file given and the checkpoint names no dataset; pass INPUT")
        data = _dataset(args, meta, None)
        limit = args.limit or PREDICT_TEST_SAMPLES
        x, truth = data.x_test[:limit].astype(host_dtype(ref.dtype)), data.t_test[:limit]
    with np.errstate(all="ignore"):  # overflow is reported below, as a sentence
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
        _say(line)
    return 0


def cmd_info(args) -> int:
    import importlib.util

    import array_api_compat
    import numpy as np

    from . import __version__
    from .backend import describe
    from .parallel import mpi_info

    report = {
        "xpnet": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "XPNET_BACKEND": os.environ.get("XPNET_BACKEND"),
        "backends": [],
        "extras": {m: importlib.util.find_spec(m) is not None for m in ("tqdm", "matplotlib", "onnx", "safetensors")},
    }
    from .compile import BACKEND_SUMMARY, cache_setting

    report["compile"] = dict(BACKEND_SUMMARY)
    try:
        folder, why = cache_setting()
        report["compile_cache"] = {"folder": None if folder is None else str(folder), "state": why}
    except XPNetError as e:
        report["compile_cache"] = {"folder": None, "state": str(e)}
    try:
        report["mpi"] = mpi_info()
    except Exception as e:  # a broken MPI install must not hide the rest
        report["mpi"] = {"installed": True, "usable": False, "why": f"{type(e).__name__}: {e}"}
    if report["mpi"].get("rank", 0) != 0:  # under mpiexec: rank 0 reports for the job
        return 0
    for name in BACKENDS:
        try:
            report["backends"].append(describe(name))
        except Exception as e:  # a broken install must not hide the others
            report["backends"].append(
                {"backend": name, "installed": True, "usable": False, "why": f"{type(e).__name__}: {e}"}
            )
    if args.json:
        _say(json.dumps(report, indent=1, default=str))
        return 0
    _say(
        f"xpnet {report['xpnet']}  (python {report['python']}, numpy {report['numpy']}, "
        f"array-api-compat {report['array_api_compat']})"
    )
    _say(f"platform: {report['platform']}")
    _say(f"XPNET_BACKEND={report['XPNET_BACKEND'] or '(unset: numpy)'}")
    for b in report["backends"]:
        if not b.get("installed"):
            _say(f"  {b['backend']:<17} not installed  ({b.get('why', '')})")
            continue
        line = f"  {b['backend']:<17} {b.get('version', '?'):<12}"
        if "cuda_driver" in b or "cuda_runtime" in b:
            line += f" CUDA driver {b.get('cuda_driver')}, runtime {b.get('cuda_runtime')};"
        if b.get("usable"):
            f64 = b.get("float64", {})
            line += f" devices {', '.join(b.get('devices', []))}; float64: " + ", ".join(
                f"{d} {'yes' if ok else 'no'}" for d, ok in f64.items()
            )
        else:
            line += f" NOT USABLE: {b.get('why')}"
        _say(line)
    _say(
        "extras: "
        + ", ".join(f"{m} {'installed' if ok else 'missing'}" for m, ok in report["extras"].items())
        + ("" if all(report["extras"].values()) else "  (pip install 'xpnet[progress,plot,export]')")
    )
    _say("compile (--compile): " + "; ".join(f"{k}: {v}" for k, v in report["compile"].items())
         + "; others: eager")
    cache = report["compile_cache"]
    _say(f"compile cache (jax executables kept by xpnet train): {cache['folder'] or 'off'}"
         + ("" if cache["folder"] else f" ({cache['state']})"))
    mpi = report["mpi"]
    if not mpi.get("installed") or "why" in mpi:
        _say(f"mpi: not available ({mpi.get('why')})")
    else:
        _say(f"mpi: mpi4py {mpi['mpi4py']}, {mpi['library']} (MPI {mpi['standard']}); this job: "
             f"{mpi['size']} rank{'s' if mpi['size'] != 1 else ''}; CuPy gradients: {mpi['nccl']}")
    return 0


def cmd_export(args) -> int:
    from . import export

    done = export.export(args.checkpoint, args.format, args.out, probabilities=args.probabilities, dtype=args.dtype)
    if done["rounded_from"]:
        print(
            f"xpnet export: note: the {done['rounded_from']} weights were rounded to {done['dtype']}; the "
            f"graph's scores agree with xpnet's to {done['dtype']} precision",
            file=sys.stderr,
        )
    _say(f"wrote {os.fspath(done['path'])} ({done['format']}, {done['dtype']})")
    return 0


def cmd_bench(argv: list[str]) -> int:
    try:  # import_module looks in sys.modules first (and so honours a test's stand-in)
        bench = importlib.import_module("xpnet.bench")
    except ImportError as e:
        if getattr(e, "name", None) not in ("xpnet.bench", None):
            raise
        print(
            "xpnet: error: the benchmark module (xpnet.bench) is not available in this installation "
            f"({e}); update xpnet",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return int(bench.main(argv) or 0)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "info": cmd_info}
COMMANDS["export"] = cmd_export


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``xpnet predict ... | head``), so that
    a BrokenPipeError comes from our own output and not from something else (a socket, a file)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no descriptor: the usual cause
        return True


def _end_on_closed_pipe() -> int:
    """End quietly, as command-line tools do when their reader stops: no message, exit 141. stdout
    is pointed at devnull so that Python's last flush of what is still buffered stays quiet too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stdout without a descriptor
        pass
    return EXIT_CLOSED_PIPE


def main(argv: list[str] | None = None) -> int:
    """The ``xpnet`` command; returns its exit status. Output into a pipe whose reader has gone
    (``| head``) ends every command quietly with :data:`EXIT_CLOSED_PIPE`."""
    try:
        return _main(argv)
    except BrokenPipeError:  # --help, --version or bench output; the commands' own: see _main
        return _end_on_closed_pipe()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        if e.code:  # under mpiexec the other ranks would wait for this one for ever: end the job
            from .parallel import abort_launched

            abort_launched(int(e.code))
        return int(e.code or 0)
    if args.version:
        from . import __version__

        _say(f"xpnet {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError as e:
        if _reader_gone():
            return _end_on_closed_pipe()
        print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except XPNetError as e:
        print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"xpnet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the last resort: a sentence, not a traceback (XPNET_DEBUG=1 shows it)
        if os.environ.get("XPNET_DEBUG") == "1":
            raise
        if isinstance(e, MemoryError):  # the machine's limits, not a bug
            print(f"xpnet {args.command}: error: out of memory ({e}); use a smaller model, batch or "
                  f"dataset", file=sys.stderr)
        elif isinstance(e, OSError):
            print(f"xpnet {args.command}: error: {e}", file=sys.stderr)
        else:
            print(
                f"xpnet {args.command}: internal error: {type(e).__name__}: {e} (please report; "
                f"XPNET_DEBUG=1 shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
