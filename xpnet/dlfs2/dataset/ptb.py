"""The book's Penn Treebank loader: ``corpus, word_to_id, id_to_word = ptb.load_data('train')``.

Reads ``ptb.train.txt`` / ``ptb.valid.txt`` / ``ptb.test.txt`` from xpnet's data folder
(``$XPNET_DATA_DIR``, else ``~/.cache/xpnet``; the folder itself or its ``ptb/`` sub-folder),
downloading a missing file from the book's source and checking its digest
(:func:`xpnet.datasets.text.ptb`). ``corpus`` is a host int64 NumPy array, as in the book.
"""

from __future__ import annotations

from ...datasets import text

key_file = dict(text.PTB_FILES)  # the book's names
url_base = text.PTB_MIRRORS[0]


def load_vocab(data_dir=None):
    """``(word_to_id, id_to_word)`` of the training file."""
    c = text.ptb("train", data_dir)
    return c.word_to_id, c.id_to_word


def load_data(data_type: str = "train", data_dir=None):
    """``(corpus, word_to_id, id_to_word)`` of ``train``, ``valid`` (or ``val``) or ``test``."""
    return tuple(text.ptb(data_type, data_dir))
