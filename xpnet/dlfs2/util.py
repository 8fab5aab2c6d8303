"""The second book's ``common.util``.

Text preparation (``preprocess``, ``create_co_matrix``, ``ppmi``, ``convert_one_hot``,
``create_contexts_target``) works on the host and returns host NumPy arrays, as the book's data
are; the book's loops are written here as whole-array NumPy, with the same results. Functions
that take a model's arrays (``cos_similarity``, ``normalize``, ``clip_grads``) work on any
backend; the ones that print rankings (``most_similar``, ``analogy``) bring the word vectors
to the host first.
"""

from __future__ import annotations

import math
import os
import sys

import numpy

from ..errors import ConfigError, ShapeError
from .arrays import np, raw, to_host

__all__ = ["analogy", "clip_grads", "convert_one_hot", "cos_similarity", "create_co_matrix",
           "create_contexts_target", "eval_perplexity", "eval_seq2seq", "most_similar", "normalize", "ppmi",
           "preprocess", "to_cpu", "to_gpu"]


def preprocess(text: str):
    """``(corpus, word_to_id, id_to_word)`` of ``text``: lower-cased, ``.`` split off, words split
    on single spaces; ids in order of first appearance."""
    if not isinstance(text, str):
        raise ConfigError(f"preprocess takes a string of text, got {type(text).__name__}")
    words = text.lower().replace(".", " .").split(" ")
    word_to_id = dict.fromkeys(words)
    word_to_id = {w: i for i, w in enumerate(word_to_id)}
    id_to_word = {i: w for w, i in word_to_id.items()}
    return numpy.array([word_to_id[w] for w in words]), word_to_id, id_to_word


def _ids(corpus, what: str, vocab_size=None) -> numpy.ndarray:
    c = to_host(corpus)
    if c.dtype.kind not in "iu":
        raise ConfigError(f"{what} takes word ids (integers), got dtype {c.dtype}")
    if vocab_size is not None:
        _count(vocab_size, "vocab_size")
        if c.size and (c.min() < 0 or c.max() >= vocab_size):
            raise ConfigError(f"{what}: word ids run from {c.min()} to {c.max()}, outside a vocabulary of "
                              f"{vocab_size}; vocab_size is len(word_to_id)")
    return c


def _count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)) or n < 1:
        raise ConfigError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def cos_similarity(x, y, eps=1e-8):
    """``x . y / (|x| |y|)`` with ``eps`` added to each norm (host vectors stay on the host)."""
    if isinstance(x, numpy.ndarray) and isinstance(y, numpy.ndarray):
        x, y = x.astype(numpy.float64), y.astype(numpy.float64)
        return numpy.dot(x / (numpy.sqrt(numpy.sum(x ** 2)) + eps), y / (numpy.sqrt(numpy.sum(y ** 2)) + eps))
    nx = x / (np.sqrt(np.sum(x ** 2)) + eps)
    ny = y / (np.sqrt(np.sum(y ** 2)) + eps)
    return np.dot(nx, ny)


def _ranking(similarity, id_to_word, skip, top) -> None:
    count = 0
    for i in (-1 * similarity).argsort():
        if numpy.isnan(similarity[i]) or id_to_word[int(i)] in skip:
            continue
        print(f" {id_to_word[int(i)]}: {similarity[i]}")
        count += 1
        if count >= top:
            return


def most_similar(query, word_to_id, id_to_word, word_matrix, top=5):
    """Print the ``top`` words whose rows of ``word_matrix`` are closest in cosine to ``query``'s."""
    if query not in word_to_id:
        print(f"{query} is not found")
        return
    print("\n[query] " + query)
    W = to_host(word_matrix).astype(numpy.float64)
    if W.ndim != 2 or W.shape[0] < len(id_to_word):
        raise ShapeError(f"word_matrix must have one row per word ({len(id_to_word)} words), got shape "
                         f"{W.shape}")
    q = W[word_to_id[query]]
    norms = numpy.sqrt((W ** 2).sum(axis=1)) + 1e-8
    similarity = (W / norms[:, None]) @ (q / (numpy.sqrt((q ** 2).sum()) + 1e-8))
    _ranking(similarity[: len(id_to_word)], id_to_word, {query}, top)


def convert_one_hot(corpus, vocab_size):
    """One-hot int32 rows of word ids: (N,) -> (N, V), (N, C) -> (N, C, V)."""
    c = _ids(corpus, "convert_one_hot", vocab_size)
    if c.ndim not in (1, 2):
        raise ShapeError(f"convert_one_hot takes ids of shape (N,) or (N, C), got {c.shape}")
    return (c[..., None] == numpy.arange(vocab_size)).astype(numpy.int32)


def create_co_matrix(corpus, vocab_size, window_size=1):
    """The co-occurrence counts (V, V) int32: ``C[w, c]`` counts ``c`` within ``window_size`` of ``w``."""
    c = _ids(corpus, "create_co_matrix", vocab_size).reshape(-1)
    _count(window_size, "window_size")
    co = numpy.zeros((vocab_size, vocab_size), dtype=numpy.int32)
    for d in range(1, window_size + 1):
        numpy.add.at(co, (c[d:], c[:-d]), 1)  # left neighbours
        numpy.add.at(co, (c[:-d], c[d:]), 1)  # right neighbours
    return co


def ppmi(C, verbose=False, eps=1e-8):
    """Positive pointwise mutual information of counts ``C``: ``max(0, log2(C N / (S_i S_j) + eps))``
    (float32), ``N`` the total count and ``S`` the column sums, as in the book."""
    C = to_host(C).astype(numpy.float64)
    N, S = C.sum(), C.sum(axis=0)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        pmi = numpy.log2(C * N / (S[None, :] * S[:, None]) + eps)
    if verbose:
        print("100.0% done")
    return numpy.maximum(0, numpy.nan_to_num(pmi, nan=0.0, neginf=0.0)).astype(numpy.float32)


def create_contexts_target(corpus, window_size=1):
    """``(contexts, target)``: for each word with ``window_size`` words on each side, those words
    (N, 2 * window_size) and the word itself (N,)."""
    c = _ids(corpus, "create_contexts_target").reshape(-1)
    window_size = _count(window_size, "window_size")
    if c.size <= 2 * window_size:
        raise ShapeError(f"a corpus of {c.size} words has no word with {window_size} neighbours on each side")
    n = c.size - 2 * window_size
    offsets = [t for t in range(-window_size, window_size + 1) if t != 0]
    contexts = numpy.stack([c[window_size + t: window_size + t + n] for t in offsets], axis=1)
    return contexts, c[window_size:-window_size].copy()


def to_cpu(x):
    """``x`` as a host NumPy array."""
    return to_host(x)


def to_gpu(x):
    """``x`` on the chosen backend's device (CuPy, torch or jax on a GPU when one is chosen)."""
    return np.asarray(x)


def clip_grads(grads, max_norm):
    """Scale every gradient by ``max_norm / (norm + 1e-6)`` when the global norm is larger, in place
    (the books' box's contents on jax and dask)."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ConfigError(f"max_norm (max_grad) must be a positive number, got {max_norm!r}")
    total = sum(float(to_host(np.sum(raw(g) * raw(g)))) for g in grads)
    rate = max_norm / (math.sqrt(total) + 1e-6)
    if rate < 1:
        for g in grads:
            g *= rate


def _lm_batches(corpus, batch_size, time_size):
    c = to_host(corpus).reshape(-1)
    size = c.shape[0]
    max_iters = (size - 1) // (batch_size * time_size)
    jump = (size - 1) // batch_size
    for it in range(max_iters):
        pos = it * time_size + numpy.arange(batch_size)[:, None] * jump + numpy.arange(time_size)[None, :]
        yield it, max_iters, c[pos % size].astype(numpy.int32), c[(pos + 1) % size].astype(numpy.int32)


def eval_perplexity(model, corpus, batch_size=10, time_size=35):
    """``exp(mean loss)`` of a language model over ``corpus``, read as the book reads it."""
    print("evaluating perplexity ...")
    total, max_iters = 0.0, 0
    for it, max_iters, xs, ts in _lm_batches(corpus, batch_size, time_size):
        try:
            loss = model.forward(xs, ts, train_flg=False)
        except TypeError:
            loss = model.forward(xs, ts)
        total += float(loss)
        sys.stdout.write(f"\r{it} / {max_iters}")
        sys.stdout.flush()
    print("")
    if max_iters == 0:
        raise ShapeError(f"the corpus is too short for one batch of {batch_size} x {time_size} words")
    return math.exp(total / max_iters)


def eval_seq2seq(model, question, correct, id_to_char, verbose=False, is_reverse=False):
    """1 if ``model.generate`` answers ``question`` with ``correct`` (after its start mark), else 0."""
    correct = to_host(correct).reshape(-1)
    start_id, correct = int(correct[0]), correct[1:]
    guess = model.generate(question, start_id, len(correct))  # a list of ids, as the book's models give
    q = "".join(id_to_char[int(c)] for c in to_host(question).reshape(-1))
    t = "".join(id_to_char[int(c)] for c in correct)
    g = "".join(id_to_char[int(c)] for c in guess)
    if verbose:
        if is_reverse:
            q = q[::-1]
        ok = g == t
        plain = os.name == "nt"
        mark = ("O" if ok else "X") if plain else ("\033[92m☑\033[0m" if ok else "\033[91m☒\033[0m")
        print("Q", q)
        print("T", t)
        print(mark + " " + g)
        print("---")
    return 1 if g == t else 0


def analogy(a, b, c, word_to_id, id_to_word, word_matrix, top=5, answer=None):
    """Print the words closest to ``b - a + c`` (``a : b = c : ?``), as the book does."""
    for word in (a, b, c):
        if word not in word_to_id:
            print(f"{word} is not found")
            return
    print(f"\n[analogy] {a}:{b} = {c}:?")
    W = to_host(word_matrix)
    query = normalize(W[word_to_id[b]] - W[word_to_id[a]] + W[word_to_id[c]])
    similarity = W @ query
    if answer is not None:
        print("==>" + answer + ":" + str(numpy.dot(W[word_to_id[answer]], query)))
    _ranking(similarity, id_to_word, {a, b, c}, top)


def normalize(x):
    """Rows of ``x`` (or the vector ``x``) divided by their length, in place, and returned."""
    if x.ndim not in (1, 2):
        raise ShapeError(f"normalize takes a vector or a matrix, got {x.ndim} dimensions")
    xp = numpy if isinstance(x, numpy.ndarray) else np  # host data stay on the host
    x /= xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True)) if x.ndim == 2 else xp.sqrt(xp.sum(x * x))
    return x
