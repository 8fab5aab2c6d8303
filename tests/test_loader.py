"""The loader: same shuffled batches on every backend, data kept on the device."""

import numpy as np
import pytest

from xpnet import backend as B
from xpnet.data import Loader
from xpnet.errors import ConfigError, ShapeError


def make(be, n=10):
    x = be.asarray(np.arange(2 * n, dtype=np.float64).reshape(n, 2))
    t = be.asarray(np.arange(n, dtype=np.int64))
    return x, t


def test_batches_follow_the_host_permutation_on_every_backend(be):
    x, t = make(be)
    loader = Loader(x, t, batch_size=4, seed=3)
    perm = np.random.default_rng(3).permutation(10)
    batches = list(loader)
    assert [tuple(b[1].shape) for b in batches] == [(4,), (4,), (2,)]  # last partial batch kept
    for k, (xb, tb) in enumerate(batches):
        want = perm[4 * k : 4 * k + 4]
        assert B.namespace(xb) is be.xp and B.device(xb) == be.device and xb.dtype == be.dtype
        assert np.array_equal(B.to_numpy(tb), want)
        assert np.array_equal(B.to_numpy(xb), np.stack([2.0 * want, 2.0 * want + 1], axis=1))


def test_each_epoch_is_a_new_permutation_of_all_samples():
    be = B.resolve("numpy")
    loader = Loader(*make(be), batch_size=3, seed=0)
    e1 = np.concatenate([tb for _, tb in loader])
    e2 = np.concatenate([tb for _, tb in loader])
    assert sorted(e1) == list(range(10)) and sorted(e2) == list(range(10))
    assert not np.array_equal(e1, e2)


def test_drop_last_and_len():
    be = B.resolve("numpy")
    x, t = make(be)
    assert len(Loader(x, t, 4)) == 3
    loader = Loader(x, t, 4, drop_last=True)
    assert len(loader) == 2 and [b[0].shape[0] for b in loader] == [4, 4]
    ordered = Loader(x, t, 4, shuffle=False)
    assert np.array_equal(np.concatenate([tb for _, tb in ordered]), np.arange(10))


def test_saved_rng_state_replays_the_same_shuffles():
    be = B.resolve("numpy")
    a = Loader(*make(be), batch_size=4, seed=5)
    list(a)
    state = a.rng_state
    nxt = [tb.tolist() for _, tb in a]
    b = Loader(*make(be), batch_size=4, seed=99)
    b.rng_state = state
    assert [tb.tolist() for _, tb in b] == nxt


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size_is_a_config_error(bad):
    x, t = make(B.resolve("numpy"))
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        Loader(x, t, bad)


def test_mismatched_labels_are_a_shape_error():
    x, t = make(B.resolve("numpy"))
    with pytest.raises(ShapeError, match="10 samples but 9 labels"):
        Loader(x, t[:9], 4)
