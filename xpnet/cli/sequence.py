"""``xpnet eval`` and ``xpnet predict`` for the sequence models: exact answers of a seq2seq model
on its task's test questions, and the answers it generates for questions in a text file."""

from __future__ import annotations

import json
import os

from ..errors import CheckpointError, ConfigError, DataError
from .output import say


def check_meta(model, meta: dict, where: str) -> dict:
    """``meta`` of a sequence model's checkpoint, with its characters checked against the model."""
    from ..datasets.seqtasks import START, TASK_NAMES

    vocab = meta.get("char_to_id")
    if (not isinstance(vocab, dict) or len(vocab) != model.vocab_size or START not in vocab
            or sorted(vocab.values()) != list(range(model.vocab_size))
            or not all(isinstance(c, str) and len(c) == 1 for c in vocab)):
        raise CheckpointError(f"{where}: its char_to_id is {str(vocab)[:80]}; expected {model.vocab_size} single "
                              f"characters with the ids 0..{model.vocab_size - 1}, '{START}' among them")
    if meta.get("dataset") not in TASK_NAMES or not isinstance(meta.get("reverse"), bool):
        raise CheckpointError(f"{where}: a sequence model's checkpoint names its task ({', '.join(TASK_NAMES)}) "
                              f"and whether questions are reversed; got dataset={meta.get('dataset')!r}, "
                              f"reverse={meta.get('reverse')!r}")
    return meta


def task_for(args, meta: dict, where: str):
    """The checkpoint's task, split and reversed as in training, with the same characters."""
    from ..datasets.seqtasks import task

    if getattr(args, "dataset", None) not in (None, meta["dataset"]):
        raise ConfigError(f"{where} was trained on {meta['dataset']}; a sequence model answers its own task's "
                          f"questions only: leave out --dataset")
    data = task(meta["dataset"], reverse=meta["reverse"], data_dir=args.data_dir)
    if data.char_to_id != meta["char_to_id"]:
        raise DataError(f"the {meta['dataset']} data found now ({data.source}) has other characters than the data "
                        f"{where} was trained on: its ids would mean other characters. Use the same data file "
                        f"(--data-dir) as in training")
    return data


def evaluate(args, model, meta: dict) -> int:
    """``xpnet eval`` of a sequence model: test loss and exact answers."""
    from ..backend import from_host_like, to_numpy

    where = f"checkpoint {args.checkpoint!r}"
    data = task_for(args, check_meta(model, meta, where), where)
    ref = model.reference_array
    x, t = model.check_pair(from_host_like(data.x_test, ref), from_host_like(data.t_test, ref))
    loss, acc = (float(to_numpy(v)) for v in model.metrics(x, t))
    result = {"checkpoint": args.checkpoint, "dataset": data.name, "samples": int(x.shape[0]),
              "test_loss": loss, "test_acc": acc}
    if args.json:
        say(json.dumps(result))
    else:
        say(f"{data.name}: test loss {loss:.4f}, exact answers {acc:.4f} on {x.shape[0]} questions")
    return 0


def _questions(path: str, width: int, vocab: dict) -> list[str]:
    """The questions of a text file, one a line, padded with spaces to ``width``; refused when one
    is longer or holds a character the model never saw."""
    if os.path.isdir(path):
        raise DataError(f"{path!r} is a folder; expected a text file of questions, one a line")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path!r} does not exist; pass a text file of questions, one a line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read questions from {path!r}: {e}; expected a UTF-8 text file") from e
    if not lines:
        raise DataError(f"{path!r} holds no questions; expected one question a line, e.g. 16+75")
    known = "".join(sorted(c for c in vocab if c != "_"))
    for i, q in enumerate(lines):
        if len(q) > width:
            raise DataError(f"{path!r}, line {i + 1}: {q[:40]!r} has {len(q)} characters; this model's questions "
                            f"have at most {width}")
        bad = sorted({c for c in q if c not in vocab or c == "_"})
        if bad:
            raise DataError(f"{path!r}, line {i + 1}: {q[:40]!r} holds {''.join(bad)!r}, which the model never "
                            f"saw; questions are made of {known!r}")
    return [q.ljust(width) for q in lines]


def predict(args, model, meta: dict) -> int:
    """``xpnet predict`` of a sequence model: a generated answer per question."""
    import numpy as np

    from ..backend import from_host_like, to_numpy
    from ..datasets.seqtasks import START, decode, encode

    where = f"checkpoint {args.checkpoint!r}"
    check_meta(model, meta, where)
    vocab = meta["char_to_id"]
    data = task_for(args, meta, where)
    width, length = data.x_test.shape[1], data.t_test.shape[1] - 1
    truth = None
    if args.input is not None:
        shown = _questions(args.input, width, vocab)[: args.limit]
        x, _, _ = encode([q + START + " " * length for q in shown], args.input, dict(vocab))
        if meta["reverse"]:
            x = np.ascontiguousarray(x[:, ::-1])
    else:
        x, truth = data.x_test[: args.limit or 10], data.t_test[: args.limit or 10]
        shown = [q[::-1] if meta["reverse"] else q for q in decode(x, data.id_to_char)]
    ref = model.reference_array
    ids = to_numpy(model.generate(from_host_like(x, ref), vocab[START], length))
    answers = decode(ids, data.id_to_char)
    for i, (q, a) in enumerate(zip(shown, answers)):
        line = f"{i}\t{q.rstrip()}\t{a.rstrip()}"
        if truth is not None:
            right = decode(truth[i:i + 1, 1:], data.id_to_char)[0]
            line += f"\ttrue {right.rstrip()}" + ("" if right == a else "  <- wrong")
        say(line)
    return 0
