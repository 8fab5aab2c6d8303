"""The book's seq2seq tasks: ``(x_train, t_train), (x_test, t_test) = sequence.load_data('addition.txt')``.

``addition.txt`` and ``date.txt`` are read from xpnet's data folder (``$XPNET_DATA_DIR``, else
``~/.cache/xpnet``; the folder itself or its ``sequence/`` sub-folder) when they are there, else
generated in the book's format with a fixed seed, with a note on stderr
(:mod:`xpnet.datasets.seqtasks`). As in the book, ``char_to_id`` and ``id_to_char`` are this
module's dicts, extended by every ``load_data``; :func:`get_vocab` returns them.
"""

from __future__ import annotations

from ...datasets import seqtasks

char_to_id: dict = {}
id_to_char: dict = {}


def load_data(file_name: str = "addition.txt", seed: int | None = 1984, data_dir=None):
    """``((x_train, t_train), (x_test, t_test))``: host int64 arrays, the last 10% of the rows
    (shuffled with ``seed``) as the test set."""
    data, _, inverse = seqtasks.load(file_name, seed, data_dir, char_to_id=char_to_id)
    id_to_char.update(inverse)
    return data


def get_vocab():
    """``(char_to_id, id_to_char)`` of the characters loaded so far."""
    return char_to_id, id_to_char
