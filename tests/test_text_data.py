"""Text and sequence data: PTB from the data folder (or a clear error offline), the offline pydoc
corpus, the book's addition/date tasks (from the book's files, or generated in their format),
and the book-shaped ``xpnet.dlfs2.dataset`` modules. Host data only: no backend is involved."""

import hashlib
import importlib

import numpy as np
import pytest

from xpnet.datasets import download as D
from xpnet.datasets import seqtasks, text
from xpnet.errors import ConfigError, DataError

TRAIN = " the cat sat on the mat \n a dog sat \n the end \n"
VALID = " the dog sat \n"


@pytest.fixture
def ptb_dir(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "ptb.train.txt").write_text(TRAIN)
    (tmp_path / "ptb.valid.txt").write_text(VALID)  # the folder itself is searched too
    return tmp_path


# ------------------------------------------------------------------ PTB
def test_ptb_reads_local_files_with_one_eos_per_line_and_the_train_vocabulary(ptb_dir):
    ids, w2i, i2w = text.ptb("train", data_dir=ptb_dir, download=False)
    words = "the cat sat on the mat <eos> a dog sat <eos> the end <eos>".split()
    assert [i2w[int(i)] for i in ids] == words
    assert w2i["the"] == 0 and w2i["cat"] == 1 and w2i["<eos>"] == 5  # order of first appearance
    assert ids.dtype == np.int64 and ids.ndim == 1
    v_ids, v_w2i, _ = text.ptb("val", data_dir=ptb_dir, download=False)
    assert v_w2i == w2i and [i2w[int(i)] for i in v_ids] == ["the", "dog", "sat", "<eos>"]


def test_ptb_offline_without_files_names_the_folder_and_the_files(tmp_path):
    with pytest.raises(DataError) as e:
        text.ptb("test", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and "ptb.train.txt" in msg and "ptb.test.txt" in msg


def test_ptb_download_failure_is_a_data_error_with_the_offline_hint(tmp_path):
    with pytest.raises(DataError) as e:
        text.ptb("train", data_dir=tmp_path, mirrors=["http://127.0.0.1:9/"])
    assert "Offline? Copy ptb.train.txt" in str(e.value) and str(tmp_path) in str(e.value)


def test_ptb_word_outside_the_training_vocabulary_is_refused(ptb_dir):
    (ptb_dir / "ptb.test.txt").write_text(" the zebra \n")
    with pytest.raises(DataError, match="'zebra'.*not in the training vocabulary"):
        text.ptb("test", data_dir=ptb_dir, download=False)


def test_a_data_folder_that_is_a_file_is_refused_for_every_kind_of_data(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        text.ptb("train", data_dir=f, download=False)
    with pytest.raises(DataError, match="is a file"):
        seqtasks.load("addition.txt", data_dir=f)


@pytest.mark.parametrize("split", ["training", 3, None])
def test_ptb_unknown_split_is_a_config_error(split):
    with pytest.raises(ConfigError, match="unknown PTB split"):
        text.ptb(split, download=False)


def test_ptb_digests_of_the_known_files_are_checked_on_download(tmp_path, monkeypatch):
    """A download whose bytes do not match the published digest is refused and not kept."""
    seen = {}

    def fake_download(url, dest, sha256, timeout=30.0, md5=None):
        seen.update(url=url, sha256=sha256, md5=md5)
        raise DataError(f"{url}: MD5 mismatch")

    monkeypatch.setattr(D, "download", fake_download)
    with pytest.raises(DataError, match="MD5 mismatch"):
        text.ptb_path("valid", data_dir=tmp_path)
    assert seen["url"].startswith(text.PTB_MIRRORS[1]) and seen["md5"] == text.PTB_MD5["ptb.valid.txt"]
    assert seen["sha256"] == text.PTB_SHA256["ptb.valid.txt"]
    assert not list(tmp_path.rglob("ptb.valid.txt"))


def test_download_checks_an_md5_before_keeping_the_file(tmp_path, monkeypatch):
    body = b"hello\n"

    class Resp:
        headers = {"Content-Length": str(len(body))}

        def __init__(self):
            self.left = body

        def read(self, n):
            out, self.left = self.left, b""
            return out

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(D.urllib.request, "urlopen", lambda url, timeout: Resp())
    with pytest.raises(DataError, match="MD5 mismatch"):
        D.download("http://x/f.txt", tmp_path / "f.txt", None, md5="0" * 32)
    assert not (tmp_path / "f.txt").exists()
    good = hashlib.md5(body).hexdigest()
    assert D.download("http://x/f.txt", tmp_path / "f.txt", None, md5=good).read_bytes() == body


# ------------------------------------------------------------------ the offline corpus
def test_pydoc_corpus_loads_offline_lower_case_with_eos():
    c = text.pydoc_corpus()
    assert c.ids.shape[0] > 20_000 and 1_000 < c.vocab_size < c.ids.shape[0]
    words = set(c.word_to_id)
    assert "<eos>" in words and "the" in words and "N" in words
    assert all(w == "N" or w == "<eos>" or w == w.lower() for w in words)
    assert [c.id_to_word[int(i)] for i in c.ids[:3]] == text.pydoc_words()[:3]
    small = text.pydoc_corpus(max_words=1000)
    assert small.ids.shape == (1000,) and int(small.ids.max()) == small.vocab_size - 1


def test_corpora_by_name(ptb_dir):
    assert text.corpus("ptb", "valid", data_dir=ptb_dir, download=False).ids.shape == (4,)
    assert text.corpus("PyDoc").vocab_size == text.pydoc_corpus().vocab_size
    with pytest.raises(ConfigError, match="one part"):
        text.corpus("pydoc", split="test")
    with pytest.raises(ConfigError, match="valid corpora: ptb, pydoc"):
        text.corpus("wikitext")


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_pydoc_corpus_refuses_a_bad_word_count(bad):
    with pytest.raises(ConfigError, match="max_words"):
        text.pydoc_corpus(max_words=bad)


def test_tokenize_follows_ptb_conventions():
    assert text.tokenize("The 3 cats' 1,000 toys.\n\nDon't stop") == [
        "the", "N", "cats", "N", "toys", "<eos>", "don't", "stop", "<eos>"]


# ------------------------------------------------------------------ addition and date
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    empty = tmp_path_factory.mktemp("nodata")
    return {name: seqtasks.load(name, data_dir=empty) for name in ("addition.txt", "date.txt")}


@pytest.mark.parametrize("name, qw, aw", [("addition.txt", 7, 5), ("date.txt", 29, 11)])
def test_generated_tasks_have_the_book_format_and_size(generated, name, qw, aw):
    ((x, t), (xt, tt)), c2i, i2c = generated[name]
    assert x.shape == (45_000, qw) and t.shape == (45_000, aw) and xt.shape == (5_000, qw)
    assert tt.shape == (5_000, aw) and x.dtype == t.dtype == np.int64
    assert np.all(t[:, 0] == c2i["_"]) and np.all(tt[:, 0] == c2i["_"])
    assert i2c == {i: ch for ch, i in c2i.items()}
    for row in range(50):
        q = "".join(i2c[int(i)] for i in x[row])
        a = "".join(i2c[int(i)] for i in t[row])[1:].strip()
        if name == "addition.txt":
            left, right = q.strip().split("+")
            assert int(left) + int(right) == int(a) and len(left) <= 3 and len(right) <= 3
        else:
            assert len(a) == 10 and a[4] == a[7] == "-" and 1970 <= int(a[:4]) <= 2017


def test_generated_tasks_are_reproducible_and_the_seed_shuffles(generated, tmp_path):
    ((x, t), (xt, _)), _, _ = generated["addition.txt"]
    ((x2, t2), _), _, _ = seqtasks.load("addition.txt", data_dir=tmp_path)
    ((x3, _), (xt3, _)), _, _ = seqtasks.load("addition.txt", seed=7, data_dir=tmp_path)
    assert np.array_equal(x, x2) and np.array_equal(t, t2) and not np.array_equal(x, x3)
    rows = lambda a, b: sorted(map(tuple, np.concatenate([a, b]).tolist()))  # noqa: E731
    assert rows(x, xt) == rows(x3, xt3)  # the same lines, in another order


def test_generated_data_is_announced_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(seqtasks, "_told", set())
    seqtasks.load("date.txt", data_dir=tmp_path)
    seqtasks.load("date.txt", data_dir=tmp_path)
    err = capsys.readouterr().err
    assert err.count("date.txt not found") == 1 and "generated" in err and str(tmp_path) in err


def test_the_book_file_in_the_data_folder_is_read_not_generated(tmp_path, capsys):
    lines = [f"{a}+{b}".ljust(7) + f"_{a + b}".ljust(5) for a, b in [(1, 2), (10, 20), (300, 400)] * 10]
    (tmp_path / "sequence").mkdir()
    (tmp_path / "sequence" / "addition.txt").write_text("\n".join(lines) + "\n")
    ((x, t), (xt, tt)), c2i, i2c = seqtasks.load("addition.txt", data_dir=tmp_path)
    assert "not found" not in capsys.readouterr().err
    assert x.shape == (27, 7) and xt.shape == (3, 7)
    got = {"".join(i2c[int(i)] for i in row) for row in np.concatenate([x, xt])}
    assert got == {"1+2    ", "10+20  ", "300+400"}
    assert list(c2i)[:4] == ["1", "+", "2", " "]  # ids in order of first appearance, as the book's


@pytest.mark.parametrize("body, match", [
    ("1+2    3    \n", "no question before a '_'"),
    ("1+2    _3   \n10+20 _30  \n", "line 2: question of 6"),
    ("", "holds no lines"),
])
def test_a_malformed_task_file_is_refused_with_the_line(tmp_path, body, match):
    (tmp_path / "addition.txt").write_text(body)
    with pytest.raises(DataError, match=match):
        seqtasks.load("addition.txt", data_dir=tmp_path)


def test_an_unknown_task_without_its_file_names_the_folder(tmp_path):
    with pytest.raises(DataError, match="reverse.txt is not in") as e:
        seqtasks.load("reverse.txt", data_dir=tmp_path)
    assert str(tmp_path) in str(e.value)


@pytest.mark.parametrize("bad", [-1, 1.5, "1984", True])
def test_a_bad_shuffle_seed_is_refused(bad):
    with pytest.raises(ConfigError, match="seed"):
        seqtasks.load("addition.txt", seed=bad)


# ------------------------------------------------------------------ the book's dataset modules
def test_book_spiral_has_the_book_shapes_and_one_hot_labels():
    from xpnet.dlfs2.dataset import spiral

    x, t = spiral.load_data()
    assert x.shape == (300, 2) and x.dtype == np.float64 and t.shape == (300, 3)
    assert np.array_equal(t.sum(axis=1), np.ones(300)) and np.array_equal(t.sum(axis=0), [100, 100, 100])
    assert np.abs(x).max() <= 1.0 and np.array_equal(spiral.load_data()[0], x)


def test_book_sequence_keeps_one_vocabulary_across_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    from xpnet.dlfs2.dataset import sequence

    sequence = importlib.reload(sequence)
    (x, t), (xt, tt) = sequence.load_data("addition.txt")
    c2i, i2c = sequence.get_vocab()
    assert len(c2i) == 13 and set(c2i) == set("0123456789+ _")
    sequence.load_data("date.txt")
    assert len(c2i) > 13 and c2i["_"] == sequence.get_vocab()[0]["_"] and i2c[c2i["-"]] == "-"


def test_book_ptb_returns_the_book_triple(ptb_dir, monkeypatch):
    monkeypatch.setenv("XPNET_DATA_DIR", str(ptb_dir))
    from xpnet.dlfs2.dataset import ptb

    corpus, w2i, i2w = ptb.load_data("train")
    assert isinstance(corpus, np.ndarray) and len(corpus) == 14 and i2w[int(corpus[-1])] == "<eos>"
    assert ptb.load_vocab() == (w2i, i2w)
