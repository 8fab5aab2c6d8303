"""Training the sequence models as the MLP is trained: the Trainer (the same curve on every
backend, compiled on jax), gradient clipping in the optimizer, checkpoints and resume, and
``xpnet train / eval / predict`` on the addition and date tasks (small task files written here)."""

import functools
import json

import numpy as np
import pytest

import xpnet
from xpnet import backend as B
from xpnet import checkpoint as C
from xpnet import cli
from xpnet.errors import CheckpointError, ConfigError, IndexRangeError, LabelError, ShapeError
from xpnet.optimizers import clip_grads
from xpnet.seq2seq import MODELS
from xpnet.train import Trainer

# tiny: two steps of 12 an epoch; a test set of the training set's shape (jax compiles per shape)
N, NT, TQ, TA, V, D, H = 24, 24, 4, 4, 7, 3, 5


@functools.cache
def _data():
    rng = np.random.default_rng(11)
    x, t = rng.integers(0, V, (N + NT, TQ)), rng.integers(0, V, (N + NT, TA))
    return x[:N], t[:N], x[N:], t[N:]


def _trainer(kind, be, compile="auto", **kw):
    model = MODELS[kind].create(V, D, H, rng=3, backend=be)
    data = tuple(be.asarray(a) for a in _data())
    return Trainer(model, xpnet.Adam(lr=0.05, clip_norm=1.0), data, batch_size=12, seed=5, log=None,
                   compile=compile, **kw)


@functools.cache
def _reference(kind):
    """The float64 NumPy run of one epoch (two steps): its record and final weights."""
    tr = _trainer(kind, B.resolve("numpy", None, "float64"))
    hist = tr.fit(1)
    return hist.records, {k: B.to_numpy(v) for k, v in tr.model.params.items()}


def test_the_trainer_trains_peeky_seq2seq_alike_on_every_backend(be):
    """An epoch of Peeky seq2seq through the Trainer (compiled on jax: one lax.scan) gives the
    float64 NumPy run's losses and weights: clipping, Adam, teacher forcing and the
    exact-answer metric."""
    records, weights = _reference("peeky-seq2seq")
    tr = _trainer("peeky-seq2seq", be)
    assert tr.step.compiled == (be.name == "jax")
    hist = tr.fit(1)
    rtol = 1e-3 if be.dtype_name == "float32" else 1e-8
    for got, want in zip(hist.records, records, strict=True):
        for col in ("train_loss", "test_loss"):
            assert got[col] == pytest.approx(want[col], rel=rtol), (col, got, want)
        if be.dtype_name == "float64":
            assert (got["train_acc"], got["test_acc"]) == (want["train_acc"], want["test_acc"])
    for k, w in weights.items():
        np.testing.assert_allclose(B.to_numpy(tr.model.params[k]), w, rtol=rtol * 10, atol=rtol)


def test_the_compiled_attention_step_equals_numpy():
    """jax: the attention model's compiled epoch leaves the weights and the metrics of the
    float64 NumPy run (the attention's traced values are dropped after each trace)."""
    pytest.importorskip("jax", reason="jax is not installed")
    records, weights = _reference("attention-seq2seq")
    tr = _trainer("attention-seq2seq", B.resolve("jax", None, "float64"), compile="on")
    rec = tr.fit(1).records[0]
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert rec[col] == pytest.approx(records[0][col], rel=1e-9, abs=1e-12)
    for k, w in weights.items():
        np.testing.assert_allclose(B.to_numpy(tr.model.params[k]), w, rtol=1e-8, atol=1e-11)
    assert all(v is None or not hasattr(v, "aval") for v in vars(tr.model.attention).values())


def test_metrics_count_exact_answers_as_generate_does():
    """``metrics`` (the epoch's accuracy) equals ``accuracy`` (generate, one host read a batch),
    and its loss equals ``loss``, for every model, in batches or not."""
    be = B.resolve("numpy", None, "float64")
    x, t, _, _ = (be.asarray(a) for a in _data())
    for kind in sorted(MODELS):
        model = MODELS[kind].create(V, D, H, rng=8, backend=be)
        opt = xpnet.Adam(lr=0.1)
        for _ in range(4):  # a few steps, so that some answers come out right
            opt.update(model.params, model.gradient(x, t))
        loss, acc = model.metrics(x, t, batch_size=5)
        assert float(acc) == pytest.approx(model.accuracy(x, t))
        assert float(loss) == pytest.approx(float(model.loss(x, t, train=False)), rel=1e-12)


def test_clip_norm_in_the_optimizer_is_clip_grads_then_the_step(be):
    """``Adam(clip_norm=c)`` makes the step ``clip_grads(grads, c)`` then Adam's; 0 (the default)
    clips nothing and is left out of ``config`` (checkpoints of unclipped runs are unchanged)."""
    rng = np.random.default_rng(2)
    p0, g0 = rng.standard_normal((3, 4)), 10 * rng.standard_normal((3, 4))
    runs = []
    for opt, clip in ((xpnet.Adam(lr=0.1, clip_norm=0.5), False), (xpnet.Adam(lr=0.1), True)):
        params, grads = {"W": be.asarray(p0.copy())}, {"W": be.asarray(g0.copy())}
        opt.update(params, clip_grads(grads, 0.5) if clip else grads)
        runs.append(B.to_numpy(params["W"]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
    params = {"W": be.asarray(p0.copy())}  # torch and strict share a NumPy array's memory: updated in place
    xpnet.SGD(lr=0.1, clip_norm=0.5).update(params, {"W": be.asarray(g0.copy())})
    np.testing.assert_allclose(B.to_numpy(params["W"]), p0 - 0.1 * g0 * 0.5 / (np.linalg.norm(g0) + 1e-6),
                               rtol=1e-5)
    assert "clip_norm" not in xpnet.Adam().config() and xpnet.SGD(clip_norm=2).config()["clip_norm"] == 2
    with pytest.raises(ConfigError, match="clip_norm"):
        xpnet.Momentum(clip_norm=-1)


def test_checkpoints_rebuild_each_model_and_resume_continues_the_run(tmp_path):
    """Each model saves and loads (its kind in the file, the same loss after); a run resumed
    from its first epoch ends where the uninterrupted run ends."""
    be = B.resolve("numpy", None, "float64")
    x, t, _, _ = _data()
    for kind in sorted(MODELS):
        model = MODELS[kind].create(V, D, H, rng=1, backend=be)
        C.save(tmp_path / f"{kind}.npz", model, xpnet.Adam(clip_norm=5.0))
        back, opt, _ = C.load(tmp_path / f"{kind}.npz", backend="numpy")
        assert type(back) is type(model) and opt.clip_norm == 5.0
        assert C.describe_file(tmp_path / f"{kind}.npz")["model"] == kind
        assert float(back.loss(be.asarray(x), be.asarray(t))) == float(model.loss(be.asarray(x), be.asarray(t)))
    first = _trainer("seq2seq", be, out=tmp_path / "run")
    first.fit(1)
    first.close()
    resumed = Trainer.resume(tmp_path / "run" / "checkpoint.npz", tuple(be.asarray(a) for a in _data()),
                             backend="numpy", log=None)
    resumed.fit(2)
    whole = _trainer("seq2seq", be)
    whole.fit(2)
    assert resumed.history.records[-1]["train_loss"] == whole.history.records[-1]["train_loss"]
    for k, v in whole.model.params.items():
        np.testing.assert_array_equal(B.to_numpy(resumed.model.params[k]), B.to_numpy(v))


def test_a_hand_edited_sequence_checkpoint_is_refused(tmp_path):
    """A file whose model kind or layers were changed names what does not fit, and builds nothing."""
    model = MODELS["peeky-seq2seq"].create(V, D, H, rng=1, backend="numpy")
    C.save(tmp_path / "p.npz", model)
    desc, arrays = C.read(tmp_path / "p.npz")
    for edit, needle in (({"model": "seq2seq"}, "do not make a seq2seq model: .*decoder LSTM input"),
                         ({"model": "transformer"}, "model"),
                         ({"layers": desc["layers"][:4]}, "five layers")):
        bad = {**desc, **edit}
        arrays_bad = {k: v for k, v in arrays.items() if edit.get("layers") is None or not k.endswith("5")}
        blob = {f"{k}": v for k, v in arrays_bad.items()}
        blob[C.META_KEY] = np.frombuffer(json.dumps(bad).encode(), dtype=np.uint8)
        np.savez(tmp_path / "bad.npz", **blob)
        with pytest.raises(CheckpointError, match=needle):
            C.load(tmp_path / "bad.npz")


def test_the_trainer_refuses_data_a_sequence_model_cannot_take():
    be = B.resolve("numpy", None, "float32")
    x, t, xt, tt = _data()
    model = MODELS["seq2seq"].create(V, D, H, rng=1, backend=be)
    cases = [((x.astype(np.float32), t), (LabelError, ShapeError, xpnet.errors.DTypeError), "integer"),
             ((x + V, t), IndexRangeError, "questions"),
             ((x, t[:5]), ShapeError, "answer row per question"),
             ((x, t[:, :1]), ShapeError, "T >= 2")]
    for (xa, ta), err, needle in cases:
        with pytest.raises(err, match=needle):
            Trainer(model, xpnet.Adam(), (be.asarray(xa), be.asarray(ta)), log=None)
    with pytest.raises(LabelError, match="word ids"):  # a host dataset of float questions
        from xpnet.datasets.seqtasks import SequenceData

        Trainer(model, xpnet.Adam(), SequenceData("addition", x * 1.0, t, xt, tt, {}, False), log=None)


# ---------------------------------------------------------------------- the command line
def _task_file(folder, name: str, lines: int) -> None:
    from xpnet.datasets.seqtasks import generated

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join(generated(f"{name}.txt")[:lines]) + "\n")


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    """``xpnet train --dataset addition --model peeky-seq2seq`` for 2 epochs on 400 lines."""
    data = tmp_path_factory.mktemp("data")
    _task_file(data, "addition", 400)
    out = tmp_path_factory.mktemp("run") / "r"
    code = cli.main(["train", "--dataset", "addition", "--model", "peeky-seq2seq", "--data-dir", str(data),
                     "--epochs", "2", "--hidden", "16", "--out", str(out), "--no-plot", "--quiet"])
    assert code == 0
    return data, out


def test_train_writes_a_sequence_checkpoint_that_eval_and_predict_use(addition_run, capsys, tmp_path):
    data, out = addition_run
    desc = C.describe_file(out / "checkpoint.npz")
    meta = desc["meta"]
    assert desc["model"] == "peeky-seq2seq" and meta["reverse"] is True and meta["hidden"] == [16]
    assert desc["optimizer"]["config"]["clip_norm"] == 5.0 and meta["char_to_id"]["_"] >= 0
    last = json.loads((out / "history.json").read_text())["epochs"][-1]
    code, text, _ = run(["eval", out / "checkpoint.npz", "--data-dir", data, "--json"], capsys)
    got = json.loads(text)
    assert code == 0 and got["samples"] == 40
    assert got["test_acc"] == pytest.approx(last["test_acc"]) and got["test_loss"] == pytest.approx(last["test_loss"])
    code, text, _ = run(["predict", out / "checkpoint.npz", "--data-dir", data, "--limit", "3"], capsys)
    rows = text.strip().splitlines()
    assert code == 0 and len(rows) == 3 and all("true" in r and "+" in r.split("\t")[1] for r in rows)
    (tmp_path / "q.txt").write_text("16+75\n1+1\n")
    code, text, _ = run(["predict", out / "checkpoint.npz", tmp_path / "q.txt", "--data-dir", data], capsys)
    assert code == 0 and [r.split("\t")[1] for r in text.strip().splitlines()] == ["16+75", "1+1"]


def test_bad_questions_are_refused_with_what_the_model_takes(addition_run, capsys, tmp_path):
    data, out = addition_run
    for text, needle in (("16+75a\n", "holds 'a', which the model never saw"),
                         ("1234+5678\n", "at most 7"), ("\n\n", "no questions")):
        (tmp_path / "q.txt").write_text(text)
        code, _, err = run(["predict", out / "checkpoint.npz", tmp_path / "q.txt", "--data-dir", data], capsys)
        assert code == 1 and needle in err and "Traceback" not in err


def test_resume_keeps_what_the_checkpoint_fixes(addition_run, capsys, tmp_path):
    """--no-reverse or another hidden size cannot change a resumed run; --epochs continues it."""
    data, out = addition_run
    ck = out / "checkpoint.npz"
    for flags, needle in ((["--no-reverse"], "reverse=False cannot be changed"),
                          (["--hidden", "8"], "hidden=[8] cannot be changed")):
        code, _, err = run(["train", "--resume", ck, "--data-dir", data, "--epochs", "3", *flags], capsys)
        assert code == 1 and needle in err
    import shutil

    shutil.copytree(out, tmp_path / "r")
    code, text, err = run(["train", "--resume", tmp_path / "r" / "checkpoint.npz", "--data-dir", data,
                           "--epochs", "3", "--no-plot"], capsys)
    assert code == 0, err
    assert "epoch 3/3" in text and "PeekySeq2seq" in text and "reversed questions" in text


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "addition"], "sequence task: train it with a sequence model"),
    (["--model", "seq2seq"], "trains on a sequence task (addition, date), not on digits"),
    (["--model", "seq2seq", "--dataset", "iris"], "not on iris"),
    (["--model", "seq2seq", "--dataset", "date", "--hidden", "3,4"], "one hidden size"),
    (["--model", "peeky-seq2seq", "--dataset", "addition", "--activation", "tanh"], "do not apply"),
    (["--model", "peeky-seq2seq", "--dataset", "addition", "--scale", "standard"], "do not apply"),
    (["--reverse"], "applies to the sequence models only"),
    (["--model", "simple-cnn", "--no-reverse"], "applies to the sequence models only"),
])
def test_settings_that_do_not_fit_a_sequence_model_are_usage_errors(argv, needle, capsys):
    code, _, err = run(["train", *argv], capsys)
    assert code == 2 and needle in err


def test_attention_on_dates_trains_from_the_command_line(tmp_path, capsys):
    _task_file(tmp_path / "data", "date", 300)
    code, text, err = run(["train", "--dataset", "date", "--model", "attention-seq2seq", "--data-dir",
                           tmp_path / "data", "--epochs", "1", "--hidden", "8", "--out", tmp_path / "r",
                           "--no-plot"], capsys)
    assert code == 0, err
    assert "AttentionSeq2seq" in text and "270 train / 30 test" in text and "epoch 1/1" in text
    code, text, _ = run(["predict", tmp_path / "r" / "checkpoint.npz", "--data-dir", tmp_path / "data",
                         "--limit", "2"], capsys)
    assert code == 0 and len(text.strip().splitlines()) == 2


# ---------------------------------------------------------------------- the language model
@pytest.mark.parametrize("tie", [True, False])
def test_the_language_model_equals_the_reference_and_its_gradient_central_differences(be, tie):
    """The loss equals a float64 NumPy BetterRnnlm (tied: the table transposed is the output
    weight, one array); the gradient, the table's summed over its two uses, equals central
    differences along a random direction (float64 rows)."""
    import reference as ref

    from xpnet.lm import LanguageModel

    rng = np.random.default_rng(4)
    x, t = rng.integers(0, V, (2, 3)), rng.integers(0, V, (2, 3))
    model = LanguageModel.create(V, 4, 4 if tie else 5, dropout=0.0, tie=tie, rng=6, backend=be)
    assert ("W2" in model.params) != tie and model.tied == tie
    p0 = {k: B.to_numpy(v).astype(np.float64) for k, v in model.params.items()}
    loss = model.loss(be.asarray(x), be.asarray(t), train=False)
    assert float(B.to_numpy(loss)) == pytest.approx(ref.lm_loss(p0, x, t), rel=1e-4 if be.dtype_name == "float32"
                                                    else 1e-10)
    if be.dtype_name != "float64":
        return
    g = model.gradient(be.asarray(x), be.asarray(t))
    d = {k: rng.standard_normal(v.shape) for k, v in p0.items()}
    eps = 1e-6
    num = (ref.lm_loss({k: p0[k] + eps * d[k] for k in p0}, x, t)
           - ref.lm_loss({k: p0[k] - eps * d[k] for k in p0}, x, t)) / (2 * eps)
    assert sum(float(np.sum(B.to_numpy(g[k]) * d[k])) for k in g) == pytest.approx(num, rel=1e-6)


def test_a_language_model_trains_and_its_checkpoint_keeps_one_table(tmp_path):
    """Through the Trainer (dropout masks drawn on the host): perplexity recorded per epoch and
    falling; the tied table is saved once and comes back tied; a compiled jax epoch equals it."""
    from xpnet.lm import LanguageModel

    rng = np.random.default_rng(3)
    ids = rng.integers(0, V, 400)
    ids[1::2] = (ids[::2] + 1) % V  # every other word follows from the one before: learnable
    xs, ts = ids[:-1][:390].reshape(-1, 6), ids[1:][:390].reshape(-1, 6)
    runs = {}
    for name in ("numpy", "jax"):
        if not B.installed(name):
            continue
        be = B.resolve(name, None, "float64")
        model = LanguageModel.create(V, 6, 6, dropout=0.3, rng=2, backend=be)
        tr = Trainer(model, xpnet.SGD(lr=1.0, clip_norm=0.25), tuple(be.asarray(a) for a in (xs[:30], ts[:30],
                     xs[30:60], ts[30:60])), batch_size=10, log=None, out=tmp_path / name)
        hist = tr.fit(3)
        runs[name] = hist
        assert tr.step.compiled == (name == "jax")
    recs = runs["numpy"].records
    assert recs[-1]["test_ppl"] < recs[0]["test_ppl"] and recs[0]["test_ppl"] == pytest.approx(
        np.exp(recs[0]["test_loss"]))
    desc = C.describe_file(tmp_path / "numpy" / "checkpoint.npz")
    assert desc["model"] == "lstm-lm" and desc["params"] == ["W1", "Wx1", "Wh1", "b1", "Wx2", "Wh2", "b2", "b3"]
    back, _, _ = C.load(tmp_path / "numpy" / "checkpoint.npz")
    assert back.tied and back.out.W is back.params["W1"]
    if "jax" in runs:
        for a, b in zip(runs["jax"].records, recs, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
            assert a["test_ppl"] == pytest.approx(b["test_ppl"], rel=1e-9)


def test_generate_samples_text_from_a_language_model_checkpoint(tmp_path, capsys):
    """xpnet train --model lstm-lm on PTB files in the data folder (small ones written here) writes
    perplexities; xpnet generate samples the same words for a seed and refuses unknown words;
    eval reports the perplexity; predict points to generate."""
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "N", "<unk>"]
    for name, n in (("train", 80), ("test", 12)):
        lines = [" ".join(rng.choice(words, 8)) for _ in range(n)]
        (tmp_path / f"ptb.{name}.txt").write_text("\n".join(f" {line} " for line in lines) + "\n")
    code, text, err = run(["train", "--dataset", "ptb", "--data-dir", tmp_path, "--model", "lstm-lm", "--hidden",
                           "8", "--epochs", "1", "--out", tmp_path / "r", "--no-plot"], capsys)
    assert code == 0, err
    assert "ppl" in text and "final test perplexity" in text
    ck = tmp_path / "r" / "checkpoint.npz"
    outs = [run(["generate", ck, "--start", "the cat", "--length", "12", "--seed", "3"], capsys) for _ in range(2)]
    assert outs[0][0] == 0 and outs[0][1] == outs[1][1] and outs[0][1].startswith("the cat")
    assert "<unk>" not in outs[0][1] and set(outs[0][1].split()) <= set(words)
    code, _, err = run(["generate", ck, "--start", "Zebra"], capsys)
    assert code == 1 and "unknown word(s) 'Zebra'" in err
    code, text, _ = run(["eval", ck, "--json", "--data-dir", tmp_path], capsys)
    last = json.loads((tmp_path / "r" / "history.json").read_text())["epochs"][-1]
    assert code == 0 and json.loads(text)["test_ppl"] == pytest.approx(last["test_ppl"])
    code, _, err = run(["predict", ck], capsys)
    assert code == 1 and "xpnet generate" in err


def test_two_mpi_ranks_train_a_language_model_with_dropout_as_one_process(tmp_path, capsys):
    """``mpiexec -n 2 xpnet train --model lstm-lm`` (each rank its rows of the one dropout mask,
    the gradients averaged) writes the history one process writes, float64."""
    import os
    import shutil
    import sys

    from procs import run as run_process

    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    pytest.importorskip("mpi4py", reason="needs mpi4py and an mpiexec (pip install 'xpnet[mpi]' mpich)")
    if mpiexec is None:
        pytest.skip("needs an mpiexec on PATH (pip install mpich)")
    rng = np.random.default_rng(1)
    for name, n in (("train", 60), ("test", 10)):
        lines = [" ".join(rng.choice(["a", "b", "c", "d", "e"], 6)) for _ in range(n)]
        (tmp_path / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
    argv = ["train", "--dataset", "ptb", "--data-dir", tmp_path, "--model", "lstm-lm", "--hidden", "6", "--epochs",
            "2", "--batch-size", "4", "--dtype", "float64", "--no-plot", "--compile", "off"]
    assert run(argv + ["--out", tmp_path / "one"], capsys)[0] == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = run_process([mpiexec, "-n", "2", sys.executable, "-m", "xpnet", *map(str, argv), "--out", tmp_path / "two"],
                       timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "2 MPI ranks" in done.stdout
    one, two = (json.loads((tmp_path / d / "history.json").read_text())["epochs"] for d in ("one", "two"))
    for a, b in zip(one, two, strict=True):
        for col in ("train_loss", "test_loss", "train_acc", "test_ppl"):
            assert b[col] == pytest.approx(a[col], rel=1e-10), col


def test_ctrl_c_in_an_epoch_rolls_a_sequence_model_back_and_keeps_the_last_epoch(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the middle of epoch 2 leaves the model as epoch 1 left it, writes
    that state, and a resume from it ends where an uninterrupted run ends."""
    be = B.resolve("numpy", None, "float64")
    whole = _trainer("attention-seq2seq", be)
    whole.fit(2)
    tr = _trainer("attention-seq2seq", be, out=tmp_path / "r")
    tr.fit(1)
    after_one = {k: B.to_numpy(v).copy() for k, v in tr.model.params.items()}
    real, calls = type(tr.model).loss, []

    def interrupted(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the second step of epoch 2
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(type(tr.model), "loss", interrupted)
    hist = tr.fit(2)
    monkeypatch.undo()
    tr.close()
    assert hist.stopped == "interrupted" and tr.epoch == 1
    for k, v in after_one.items():
        np.testing.assert_array_equal(B.to_numpy(tr.model.params[k]), v)
    resumed = Trainer.resume(tmp_path / "r" / "checkpoint.npz", tuple(be.asarray(a) for a in _data()),
                             backend="numpy", log=None)
    resumed.fit(2)
    for k, v in whole.model.params.items():
        np.testing.assert_array_equal(B.to_numpy(resumed.model.params[k]), B.to_numpy(v))
