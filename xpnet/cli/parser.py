"""The ``xpnet`` command's arguments: one function per command adds its flags."""

from __future__ import annotations

import argparse

from ..backend import BACKENDS, DTYPES
from .argtypes import folder, hidden_sizes, non_negative_float, positive_float, positive_int, seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpnet",
        description="Train and use textbook neural networks on NumPy, CuPy, PyTorch, JAX or Dask.",
    )
    parser.add_argument("--version", action="store_true", help="print the xpnet version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
    _add_generate(sub)
    i = sub.add_parser("info", help="xpnet version and every backend: installed? version, devices, float64")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_export(sub)
    sub.add_parser("bench", help="benchmarks (xpnet bench --help)", add_help=False)
    return parser


def _add_backend_options(p: argparse.ArgumentParser, dtype_default: str = "$XPNET_DTYPE or float32") -> None:
    g = p.add_argument_group("backend (same as XPNET_BACKEND / XPNET_DEVICE / XPNET_DTYPE)")
    g.add_argument("--backend", choices=BACKENDS, help="array library (default: $XPNET_BACKEND or numpy)")
    g.add_argument("--device", help="device, e.g. cpu, cuda:0 (default: the backend's first)")
    g.add_argument("--dtype", choices=DTYPES, help=f"float dtype (default: {dtype_default})")


def _add_train(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train an MLP or a convolutional network (default: an MLP on digits on the CPU)",
        description="Train an MLP (or with --model a convolutional network) and write checkpoint.npz, "
        "history.json/.csv and curves.png into --out.",
    )
    _add_model_options(t)
    _add_run_options(t)
    _add_backend_options(t)


def _add_model_options(t: argparse.ArgumentParser) -> None:
    """What is trained, and how: the dataset, the model, the optimizer, the epochs."""
    from ..datasets import NAMES, SCALES
    from ..datasets.seqtasks import TASK_NAMES
    from ..optimizers import OPTIMIZERS
    from ..registry import ACTIVATIONS
    from ..train import CNN_DEFAULTS as CNN
    from ..train import DEFAULTS as d
    from ..train import MODELS
    from ..train.seqbuild import CORPORA

    t.add_argument("--dataset", choices=(*NAMES, *TASK_NAMES, *CORPORA), default=None,
                   help=f"default: {d['dataset']}; addition and date are sequence tasks (the seq2seq models), "
                   "ptb and pydoc (offline) text corpora (--model lstm-lm)")
    t.add_argument("--model", choices=MODELS, default=None,
                   help="mlp, or a convolutional network of the book on the dataset's images: simple-cnn "
                   "(chapter 7), deep-cnn (chapter 8); digits, mnist, fashion-mnist only (default: mlp). "
                   "seq2seq, peeky-seq2seq, attention-seq2seq: the second book's encoder-decoders, on the "
                   "sequence tasks addition and date; lstm-lm: its LSTM language model, on ptb or pydoc")
    t.add_argument("--hidden", type=hidden_sizes, default=None,
                   help="mlp: hidden layer sizes, e.g. 256 or 128,64 (default: 256); a sequence model: its "
                   "one hidden size (default: 128 for addition, 256 for date, 650 for ptb, 200 for pydoc)")
    t.add_argument("--reverse", action=argparse.BooleanOptionalAction, default=None,
                   help="sequence models: reverse the questions, the book's x[:, ::-1] (default: on)")
    t.add_argument("--activation", choices=list(ACTIVATIONS), default=None,
                   help=f"mlp: default {d['activation']}")
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None, help=f"default: {d['optimizer']}")
    t.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate (default: {d['lr']} for adam, 0.1 otherwise)")
    t.add_argument("--weight-decay", type=non_negative_float, default=None, help="L2 weight decay (default: 0)")
    t.add_argument("--epochs", type=positive_int, default=None,
                   help=f"total epochs, counting those before --resume (default: {d['epochs']}; "
                   f"{CNN['epochs']} for the convolutional networks; 25 for addition and 10 for date)")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"the global batch: split over the ranks under mpiexec (default: {d['batch_size']})")
    t.add_argument("--seed", type=seed, default=None,
                   help=f"seeds weights and shuffles, 0 to 2**63-1 (default: {d['seed']})")
    t.add_argument("--scale", choices=SCALES, default=None,
                   help=f"features to [0, 1] (minmax) or to zero mean, unit variance (default: {d['scale']})")
    t.add_argument("--patience", type=positive_int, default=None,
                   help="stop early after this many epochs without a lower test loss")


def _add_run_options(t: argparse.ArgumentParser) -> None:
    """Where the run's files go, resuming, and what it prints."""
    t.add_argument(
        "--out",
        default=None,
        help="output directory; one holding another run is refused unless --overwrite (default: runs/DATASET, "
        "or runs/DATASET-2, -3... when that holds a run; with --resume: the checkpoint's folder)",
    )
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (its files stay until the new run completes an epoch)")
    t.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue from a checkpoint (--lr, --weight-decay, --batch-size, --dtype, --backend, --device "
        "may change; the model, dataset, optimizer, scale and seed may not)",
    )
    t.add_argument("--data-dir", type=folder, default=None,
                   help="folder with local MNIST files / download cache (default: $XPNET_DATA_DIR or ~/.cache/xpnet)")
    t.add_argument("--save-every", type=positive_int, default=None, help="also checkpoint every N epochs")
    t.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="compile the training step: auto (where xpnet has a compiler: jax), on (error elsewhere), off "
        "(default: %(default)s)",
    )
    t.add_argument("--no-plot", action="store_true", help="do not draw curves.png")
    t.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines, no progress bar")


def _add_eval(sub) -> None:
    from ..datasets import NAMES

    e = sub.add_parser("eval", help="loss and accuracy of a checkpoint on its dataset's test set")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", choices=NAMES, default=None, help="default: the one it was trained on")
    e.add_argument("--data-dir", type=folder, default=None, help="folder of local MNIST files (as for train)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_backend_options(e, "the checkpoint's")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predicted classes for features in a .npy/.csv file, or test samples")
    p.add_argument("checkpoint")
    p.add_argument(
        "input",
        nargs="?",
        default=None,
        help="features in the dataset's original units: a .npy array of shape (N, F) (or (N, ...), "
        "flattened per sample; a 1-D array is one sample), or a CSV file of numbers with one sample "
        "a row and no header; for a convolutional network (N, C, H, W) images or (N, C*H*W) rows; "
        "default: test samples of the checkpoint's dataset",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="show the first N samples only (default: every sample of INPUT; without INPUT, 10 test samples)",
    )
    p.add_argument("--data-dir", type=folder, default=None, help="folder of local MNIST files (as for train)")
    _add_backend_options(p, "the checkpoint's")


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="text sampled from a language model's checkpoint (xpnet train --model lstm-lm)",
                       description="Sample words one at a time from a language model: each next word is drawn "
                       "from the softmax of its scores, seeded. <eos> ends a line.")
    g.add_argument("checkpoint")
    g.add_argument("--start", default="the", help="the first word(s), separated by spaces (default: the)")
    g.add_argument("--length", type=positive_int, default=100, help="words to sample (default: 100)")
    g.add_argument("--seed", type=seed, default=0, help="seeds the sampling (default: 0)")
    g.add_argument("--temperature", type=positive_float, default=1.0,
                   help="divides the scores before the softmax: below 1 likelier words, above 1 rarer (default: 1)")
    _add_backend_options(g, "the checkpoint's")


def _add_export(sub) -> None:
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
    x.add_argument("--probabilities", action="store_true",
                   help="onnx: end with Softmax (Sigmoid for one output), not scores")
    x.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="onnx: the graph's float type (default: the checkpoint's); float64 weights given --dtype float32 "
        "are rounded to float32",
    )
