"""Character sequence tasks for seq2seq models: ``addition`` and ``date``, in the textbook's format.

A task file has one example a line: the question, then ``_`` (the decoder's start marker) and
the answer, each padded with spaces to one width for the whole file. "Deep Learning from
Scratch 2" ships two:

- ``addition.txt``: 50,000 sums of two numbers of 1-3 digits, ``16+75  _91  `` (questions 7
  characters, answers 5 with the ``_``);
- ``date.txt``: 50,000 dates written in many ways, ``september 27, 1994           _1994-09-27``
  (questions 29 characters, answers 11).

:func:`load` reads ``name`` from the data folder (``data_dir``, else ``$XPNET_DATA_DIR``, else
``~/.cache/xpnet``; in the folder itself or its ``sequence/`` sub-folder) when it is there.
Otherwise, for these two names, it generates a set of the same format and size from a fixed
seed (the same set on every machine and every run) and says so once per process on stderr.
The generated sets are not the book's lines: the sums are drawn as the book's are (a random
length of 1-3 digits for each number, no question twice), the dates are days from 1970 to 2017
written in the 16 layouts the book's file uses, in about its proportions.

Ids are characters in order of first appearance (question, then answer, line by line) and the
rows are shuffled with ``numpy.random.RandomState(seed)``, the generator behind the book's
``numpy.random.seed(seed)``: on the book's files the split is the book's. The last 10% of the
shuffled rows are the test set.
"""

from __future__ import annotations

import datetime
import functools
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from . import download as D

TASKS = {"addition.txt": (7, 5), "date.txt": (29, 11)}  # question width, answer width (with '_')
SIZE = 50_000
GENERATION_SEED = 20171  # fixed: the generated sets are the same everywhere
START = "_"
_told: set = set()

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def generate_addition(size: int = SIZE, seed: int = GENERATION_SEED) -> list[str]:
    """``size`` lines ``a+b`` / ``_a+b``, each number of 1-3 random digits, no pair twice (in
    either order)."""
    rng = np.random.default_rng(seed)
    seen, lines = set(), []
    q_w, a_w = TASKS["addition.txt"]
    if size > 400_000:
        raise ConfigError(f"at most 400,000 sums are drawn (about 500,000 distinct pairs of numbers below "
                          f"1000 exist); asked for {size}")
    while len(lines) < size:  # draws in blocks; a repeated question is skipped
        numbers = rng.integers(0, 10 ** rng.integers(1, 4, (2 * size, 2)))
        for a, b in numbers.tolist():
            key = (a, b) if a <= b else (b, a)  # a+b and b+a are one question
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"{a}+{b}".ljust(q_w) + f"{START}{a + b}".ljust(a_w))
            if len(lines) == size:
                break
    return lines


def _date_text(d: datetime.date, layout: int, case: int, short: bool) -> str:
    if layout == 0:  # 2/10/93
        return f"{d.month}/{d.day}/{d.year % 100:02d}"
    month = MONTHS[d.month - 1][:3] if short else MONTHS[d.month - 1]
    text = f"{month} {d.day}, {d.year}"
    if layout == 2:  # Tuesday, September 25, 1984
        text = f"{DAYS[d.weekday()]}, {text}"
    return (text, text.lower(), text.upper())[case]


def generate_date(size: int = SIZE, seed: int = GENERATION_SEED) -> list[str]:
    """``size`` lines: a day of 1970-2017 in one of the book's layouts / ``_YYYY-MM-DD``."""
    rng = np.random.default_rng(seed)
    first = datetime.date(1970, 1, 1).toordinal()
    span = datetime.date(2017, 12, 31).toordinal() - first + 1
    days = rng.integers(0, span, size)
    layouts = rng.choice(3, size, p=[0.25, 0.5, 0.25])  # M/D/YY; Month D, YYYY; Weekday, Month D, YYYY
    cases = rng.choice(3, size, p=[0.5, 0.25, 0.25])  # Title, lower, UPPER
    short = rng.random(size) < 1 / 3  # Jan instead of January (without a weekday only)
    q_w, a_w = TASKS["date.txt"]
    lines = []
    for k in range(size):
        d = datetime.date.fromordinal(first + int(days[k]))
        q = _date_text(d, int(layouts[k]), int(cases[k]), bool(short[k]) and layouts[k] == 1)
        lines.append(q.ljust(q_w) + f"{START}{d.isoformat()}".ljust(a_w))
    return lines


GENERATORS = {"addition.txt": generate_addition, "date.txt": generate_date}


@functools.lru_cache(maxsize=4)
def generated(name: str) -> tuple[str, ...]:
    """The generated lines of task ``name`` (made once per process)."""
    return tuple(GENERATORS[name]())


def split_line(line: str, where: str) -> tuple[str, str]:
    """``(question, answer)`` of one line; the answer starts at its first ``_``."""
    line = line.rstrip("\r\n")
    at = line.find(START)
    if at <= 0:
        raise DataError(f"{where} has no question before a '{START}': {line[:60]!r}; expected lines "
                        f"'QUESTION{START}ANSWER' as the book's addition.txt ('16+75  {START}91  ')")
    return line[:at], line[at:]


def _local(name: str, data_dir):
    folder = D.data_folder(data_dir)
    for base in (folder, folder / "sequence"):
        if (base / name).is_file():
            return base / name
    return None


def read_lines(name: str, data_dir=None, generate: bool = True) -> tuple[list[str], str]:
    """The lines of task ``name`` and where they came from (a path, or ``generated``)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ConfigError(f"a sequence task is a file name such as 'addition.txt' or 'date.txt', got {name!r}")
    path = _local(name, data_dir)
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                return [line for line in f if line.strip("\r\n")], str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {path}: {e}; expected a UTF-8 text file of "
                            f"'QUESTION{START}ANSWER' lines") from e
    folder = D.data_folder(data_dir)
    if name not in GENERATORS or not generate:
        known = ", ".join(GENERATORS)
        raise DataError(f"sequence file {name} is not in {folder} or {folder / 'sequence'}; copy it there "
                        f"(or pass data_dir=). Without the file only {known} can be generated")
    if name not in _told:
        _told.add(name)
        print(f"xpnet: {name} not found in {folder}: using a generated set of the same format "
              f"({SIZE:,} lines, seed {GENERATION_SEED}); copy the book's file there to use it",
              file=sys.stderr)
    return list(generated(name)), "generated"


def encode(lines, where: str, char_to_id: dict | None = None):
    """``x`` (N, question width) and ``t`` (N, answer width) int64 ids; ``char_to_id`` is
    extended in place with new characters (a new dict when None)."""
    vocab = {} if char_to_id is None else char_to_id
    pairs = [split_line(line, f"{where}, line {i + 1}") for i, line in enumerate(lines)]
    if not pairs:
        raise DataError(f"{where} holds no lines; expected 'QUESTION{START}ANSWER' lines")
    qw, aw = len(pairs[0][0]), len(pairs[0][1])
    for i, (q, a) in enumerate(pairs):
        if len(q) != qw or len(a) != aw:
            raise DataError(f"{where}, line {i + 1}: question of {len(q)} and answer of {len(a)} characters; "
                            f"line 1 has {qw} and {aw}. Pad every question and answer with spaces to one width")
    joined = "".join(q + a for q, a in pairs)
    for c in dict.fromkeys(joined):  # characters in order of first appearance
        if c not in vocab:
            vocab[c] = len(vocab)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    table = np.zeros(int(codes.max()) + 1, dtype=np.int64)
    table[[ord(c) for c in vocab if ord(c) < table.size]] = [i for c, i in vocab.items() if ord(c) < table.size]
    ids = table[codes].reshape(len(pairs), qw + aw)
    x, t = ids[:, :qw].copy(), ids[:, qw:].copy()
    return x, t, vocab


def load(name: str = "addition.txt", seed: int | None = 1984, data_dir=None, generate: bool = True,
         char_to_id: dict | None = None):
    """``((x_train, t_train), (x_test, t_test)), char_to_id, id_to_char`` of task ``name``.

    ``seed=None`` shuffles with a fresh, unseeded generator. ``char_to_id``: a vocabulary to
    extend in place (the textbook's ``sequence`` module keeps one across calls)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ConfigError(f"seed must be an integer in [0, 2**32) or None, got {seed!r}")
    lines, source = read_lines(name, data_dir, generate)
    x, t, vocab = encode(lines, name if source == "generated" else source, char_to_id)
    x, t, split_at = _shuffled(x, t, seed)
    id_to_char = {i: c for c, i in vocab.items()}
    return ((x[:split_at], t[:split_at]), (x[split_at:], t[split_at:])), vocab, id_to_char


def _shuffled(x, t, seed):
    """``(x, t)`` rows shuffled by ``RandomState(seed)``, and where the last 10% (the test set) start."""
    order = np.arange(x.shape[0])
    np.random.RandomState(seed).shuffle(order)
    return x[order], t[order], x.shape[0] - x.shape[0] // 10


@dataclass
class SequenceData:
    """A task as the trainer takes it: question ids ``x`` (N, T), reversed when ``reverse``
    (the book's ``x[:, ::-1]``), answer ids ``t`` (N, T') starting with the start marker's id,
    and the characters' ids ``char_to_id``."""

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    char_to_id: dict
    reverse: bool
    source: str = "generated"

    @property
    def id_to_char(self) -> dict:
        return {i: c for c, i in self.char_to_id.items()}

    @property
    def start_id(self) -> int:
        return self.char_to_id[START]

    def __repr__(self) -> str:
        return (f"SequenceData({self.name!r}: train {self.x_train.shape}, test {self.x_test.shape}, "
                f"{len(self.char_to_id)} characters, reverse={self.reverse})")


TASK_NAMES = ("addition", "date")


def task(name: str, reverse: bool = True, data_dir=None, seed: int = 1984) -> SequenceData:
    """Task ``name`` (``addition`` or ``date``) split as :func:`load` splits it, questions reversed
    when ``reverse``."""
    if name not in TASK_NAMES:
        raise ConfigError(f"unknown sequence task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    lines, source = read_lines(f"{name}.txt", data_dir)
    x, t, vocab = encode(lines, f"{name}.txt" if source == "generated" else source)
    x, t, at = _shuffled(x, t, seed)
    if reverse:
        x = np.ascontiguousarray(x[:, ::-1])
    return SequenceData(name, x[:at], t[:at], x[at:], t[at:], vocab, bool(reverse), source)


def decode(ids, id_to_char: dict) -> list[str]:
    """Rows of ids as strings (an id with no character is shown as ``?``)."""
    return ["".join(id_to_char.get(int(i), "?") for i in row) for row in np.asarray(ids)]


__all__ = ["GENERATION_SEED", "SIZE", "START", "TASKS", "TASK_NAMES", "SequenceData", "decode", "task",
           "encode", "generate_addition", "generate_date",
           "generated", "load", "read_lines", "split_line"]
