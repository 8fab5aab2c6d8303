"""The sequence models on the command line: ``xpnet eval`` and ``xpnet predict`` of a seq2seq
model (exact answers on its task's test questions; answers to questions in a text file) and of a
language model (test perplexity), and ``xpnet generate`` (text sampled from a language model)."""

from __future__ import annotations

import json
import os

from ..errors import CheckpointError, ConfigError, DataError
from .output import say


def check_lm_meta(model, meta: dict, where: str) -> dict:
    """``meta`` of a language model's checkpoint, with its words checked against the model."""
    from ..train.seqbuild import CORPORA

    words = meta.get("words")
    if not isinstance(words, list) or len(words) != model.vocab_size or len(set(words)) != len(words) \
            or not all(isinstance(w, str) and w for w in words):
        raise CheckpointError(f"{where}: its words are {str(words)[:80]}; expected {model.vocab_size} different "
                              f"words, one per row of the model's table")
    if meta.get("dataset") not in CORPORA or not isinstance(meta.get("time_size"), int) or meta["time_size"] < 1:
        raise CheckpointError(f"{where}: a language model's checkpoint names its corpus ({', '.join(CORPORA)}) and "
                              f"window length; got dataset={meta.get('dataset')!r}, "
                              f"time_size={meta.get('time_size')!r}")
    return meta


def check_meta(model, meta: dict, where: str) -> dict:
    """``meta`` of a sequence model's checkpoint, with its characters checked against the model."""
    from ..datasets.seqtasks import START, TASK_NAMES

    if getattr(model, "reports_perplexity", False):
        return check_lm_meta(model, meta, where)
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


def corpus_for(args, meta: dict, where: str):
    """The language model's corpus in windows, with the same words as in training."""
    from ..datasets.text import language_data
    from ..train.seqbuild import CorpusData

    if getattr(args, "dataset", None) not in (None, meta["dataset"]):
        raise ConfigError(f"{where} was trained on {meta['dataset']}; its word ids are that corpus's: leave out "
                          f"--dataset")
    data = CorpusData(meta["dataset"], *language_data(meta["dataset"], meta["time_size"], args.data_dir))
    if data.words != meta["words"]:
        raise DataError(f"the {meta['dataset']} corpus found now has other words than the one {where} was trained "
                        f"on (another Python's help texts, or other PTB files): its ids would mean other words")
    return data


def evaluate(args, model, meta: dict) -> int:
    """``xpnet eval`` of a sequence model: test loss and exact answers, or perplexity."""
    from ..backend import from_host_like, to_numpy
    from ..lm import perplexity

    where = f"checkpoint {args.checkpoint!r}"
    check_meta(model, meta, where)
    lm = getattr(model, "reports_perplexity", False)
    data = corpus_for(args, meta, where) if lm else task_for(args, meta, where)
    ref = model.reference_array
    x, t = model.check_pair(from_host_like(data.x_test, ref), from_host_like(data.t_test, ref))
    loss, acc = (float(to_numpy(v)) for v in model.metrics(x, t))
    result = {"checkpoint": args.checkpoint, "dataset": data.name, "samples": int(x.shape[0]),
              "test_loss": loss, "test_acc": acc}
    if lm:
        result["test_ppl"] = perplexity(loss)
    if args.json:
        say(json.dumps(result))
    elif lm:
        say(f"{data.name}: test loss {loss:.4f}, perplexity {result['test_ppl']:.2f}, next word right {acc:.4f} "
            f"on {x.shape[0]} windows of {x.shape[1]} words")
    else:
        say(f"{data.name}: test loss {loss:.4f}, exact answers {acc:.4f} on {x.shape[0]} questions")
    return 0


def cmd_generate(args) -> int:
    """``xpnet generate``: words sampled from a language model's checkpoint."""
    from .loading import load_for_use

    model, meta = load_for_use(args)
    where = f"checkpoint {args.checkpoint!r}"
    if not getattr(model, "reports_perplexity", False):
        raise ConfigError(f"{where} holds a {type(model).__name__}; xpnet generate samples text from a language "
                          f"model (xpnet train --model lstm-lm); for a seq2seq model use xpnet predict")
    words = check_lm_meta(model, meta, where)["words"]
    ids = {w: i for i, w in enumerate(words)}
    start = args.start.split()
    unknown = [w for w in start if w not in ids]
    if not start or unknown:
        shown = ", ".join(repr(w) for w in words[:12])
        what = "no words" if not start else "unknown word(s) " + ", ".join(map(repr, unknown))
        raise ConfigError(f"--start {args.start!r}: {what}; the model knows {len(words)} words ({shown}, ...), "
                          f"lower-cased as its corpus")
    skip = [ids[w] for w in ("<unk>",) if w in ids]
    out = model.generate([ids[w] for w in start], args.length, rng=args.seed, skip_ids=skip,
                         temperature=args.temperature)
    text = " ".join([*start, *(words[i] for i in out)]).replace(" <eos> ", "\n").replace("<eos>", "\n")
    say(text.strip())
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
    if getattr(model, "reports_perplexity", False):
        raise ConfigError(f"{where} holds a language model: xpnet predict answers questions of a seq2seq model; "
                          f"sample text with xpnet generate, or see its perplexity with xpnet eval")
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
