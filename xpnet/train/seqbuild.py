"""The sequence models of ``xpnet train``, with the book's settings ("Deep Learning from Scratch
2"): seq2seq, Peeky and attention on the ``addition`` and ``date`` tasks (chapters 7 and 8), and
the LSTM language model on a corpus, ``ptb`` or the offline ``pydoc`` (chapter 6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..lm import MODELS as LM_MODELS
from ..seq2seq import MODELS as SEQ2SEQ_MODELS

SEQUENCE_MODELS = (*SEQ2SEQ_MODELS, *LM_MODELS)
CORPORA = ("ptb", "pydoc")

# The book's better RNNLM: windows of 35 words, batch 20, SGD at 20, gradients clipped to 0.25,
# dropout 0.5, tied weights; 650 units and 40 epochs on PTB. On the small offline corpus: 200 units.
LM_DEFAULTS = {"batch_size": 20, "optimizer": "sgd", "lr": 20.0, "clip_norm": 0.25, "time_size": 35,
               "dropout": 0.5}
CORPUS_DEFAULTS = {"ptb": {"hidden": 650, "epochs": 40}, "pydoc": {"hidden": 200, "epochs": 10}}


@dataclass
class CorpusData:
    """A corpus in windows as the trainer takes it: words ``x`` (N, T) and next words ``t``."""

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    words: list

# The book's settings: word vectors of 16, Adam at 0.001, batch 128, gradients clipped to a global norm
# of 5, questions reversed (the book's finding in chapter 7; chapter 8 trains dates reversed too).
SEQ_DEFAULTS = {"wordvec": 16, "batch_size": 128, "optimizer": "adam", "lr": 0.001, "clip_norm": 5.0,
                "reverse": True}
# per task: the hidden size and epochs of the book's runs (addition: 25 epochs at 128; date: 10 at 256)
TASK_DEFAULTS = {"addition": {"hidden": 128, "epochs": 25}, "date": {"hidden": 256, "epochs": 10}}


def check_given(kind: str, given: dict) -> None:
    """Refuse settings that do not apply to sequence model ``kind`` (or a task given to another model)."""
    from ..datasets.seqtasks import TASK_NAMES

    dataset = given.get("dataset")
    if kind not in SEQUENCE_MODELS:
        if dataset in TASK_NAMES:
            raise ConfigError(f"dataset {dataset} is a sequence task: train it with a sequence model "
                              f"({', '.join(SEQ2SEQ_MODELS)}), e.g. --model peeky-seq2seq")
        if dataset in CORPORA:
            raise ConfigError(f"dataset {dataset} is a text corpus: train it with --model lstm-lm")
        if given.get("reverse") is not None:
            raise ConfigError("reverse (--reverse, --no-reverse) applies to the sequence models only: it reverses "
                              "their questions; leave it out")
        return
    if kind in LM_MODELS:
        if dataset not in CORPORA:
            raise ConfigError(f"{kind} trains on a text corpus ({', '.join(CORPORA)}), not on {dataset or 'digits'}: "
                              f"pass --dataset pydoc (offline) or --dataset ptb")
        if given.get("reverse") is not None:
            raise ConfigError(f"reverse (--reverse, --no-reverse) applies to the seq2seq models, not to {kind}")
    elif dataset not in TASK_NAMES:
        raise ConfigError(f"{kind} trains on a sequence task ({', '.join(TASK_NAMES)}), not on "
                          f"{dataset or 'digits'}: pass --dataset addition or --dataset date")
    extra = [name for name in ("activation", "scale") if given.get(name) is not None]
    if extra:
        raise ConfigError(f"{' and '.join(extra)} do not apply to {kind} (word ids in, word ids out): leave "
                          f"{', '.join(extra)} out")
    hidden = given.get("hidden")
    if hidden is not None and len(hidden) != 1:
        raise ConfigError(f"{kind} has one hidden size (its LSTMs'), got {len(hidden)}: {hidden}; give one, "
                          f"e.g. --hidden 128")


def load_task(given: dict, data_dir) -> tuple:
    """``(data, meta)``: the task (reversed or not) or the corpus, and what the checkpoint records of it."""
    from ..datasets.seqtasks import task
    from ..datasets.text import language_data

    if given["model"] in LM_MODELS:
        data = CorpusData(given["dataset"], *language_data(given["dataset"], LM_DEFAULTS["time_size"], data_dir))
        return data, {"dataset": data.name, "model": given["model"], "words": data.words,
                      "time_size": LM_DEFAULTS["time_size"]}

    reverse = SEQ_DEFAULTS["reverse"] if given.get("reverse") is None else bool(given["reverse"])
    data = task(given["dataset"], reverse=reverse, data_dir=data_dir)
    meta = {"dataset": data.name, "model": given["model"], "reverse": data.reverse, "char_to_id": data.char_to_id,
            "source": "generated" if data.source == "generated" else "file"}
    return data, meta


def new_model(kind: str, data, given: dict, seed: int, backend, device, dtype, meta: dict):
    """A freshly drawn model of ``kind`` for ``data`` (weights from ``seed``, as the book draws them)."""
    from ..backend import resolve

    be = resolve(backend, device, dtype)
    if kind in LM_MODELS:
        hidden = CORPUS_DEFAULTS[data.name]["hidden"] if given.get("hidden") is None else given["hidden"][0]
        meta.update(hidden=[hidden], wordvec=hidden, dropout=LM_DEFAULTS["dropout"])
        return LM_MODELS[kind].create(len(data.words), hidden, hidden, dropout=LM_DEFAULTS["dropout"], rng=seed,
                                      backend=be)
    hidden = TASK_DEFAULTS[data.name]["hidden"] if given.get("hidden") is None else given["hidden"][0]
    meta.update(hidden=[hidden], wordvec=SEQ_DEFAULTS["wordvec"])
    return SEQ2SEQ_MODELS[kind].create(len(data.char_to_id), SEQ_DEFAULTS["wordvec"], hidden, rng=seed, backend=be)


def defaults(kind: str) -> dict:
    """The optimizer, learning rate, clipping and batch size of ``kind``'s runs."""
    return LM_DEFAULTS if kind in LM_MODELS else SEQ_DEFAULTS


def default_epochs(meta: dict) -> int:
    table = CORPUS_DEFAULTS if meta.get("model") in LM_MODELS else TASK_DEFAULTS
    return table[meta["dataset"]]["epochs"]
