"""The sequence models of ``xpnet train``: seq2seq, Peeky and attention on the ``addition`` and
``date`` tasks, with the book's settings (chapters 7 and 8 of "Deep Learning from Scratch 2")."""

from __future__ import annotations

from ..errors import ConfigError
from ..seq2seq import MODELS as SEQ2SEQ_MODELS

SEQUENCE_MODELS = tuple(SEQ2SEQ_MODELS)

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
                              f"({', '.join(SEQUENCE_MODELS)}), e.g. --model peeky-seq2seq")
        if given.get("reverse") is not None:
            raise ConfigError("reverse (--reverse, --no-reverse) applies to the sequence models only: it reverses "
                              "their questions; leave it out")
        return
    if dataset not in TASK_NAMES:
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
    """``(data, meta)``: the task, reversed or not, and what the checkpoint records of it."""
    from ..datasets.seqtasks import task

    reverse = SEQ_DEFAULTS["reverse"] if given.get("reverse") is None else bool(given["reverse"])
    data = task(given["dataset"], reverse=reverse, data_dir=data_dir)
    meta = {"dataset": data.name, "model": given["model"], "reverse": data.reverse, "char_to_id": data.char_to_id,
            "source": "generated" if data.source == "generated" else "file"}
    return data, meta


def new_model(kind: str, data, given: dict, seed: int, backend, device, dtype, meta: dict):
    """A freshly drawn model of ``kind`` for ``data`` (weights from ``seed``, as the book draws them)."""
    from ..backend import resolve

    hidden = TASK_DEFAULTS[data.name]["hidden"] if given.get("hidden") is None else given["hidden"][0]
    meta.update(hidden=[hidden], wordvec=SEQ_DEFAULTS["wordvec"])
    be = resolve(backend, device, dtype)
    return SEQ2SEQ_MODELS[kind].create(len(data.char_to_id), SEQ_DEFAULTS["wordvec"], hidden, rng=seed, backend=be)


def default_epochs(meta: dict) -> int:
    return TASK_DEFAULTS[meta["dataset"]]["epochs"]
