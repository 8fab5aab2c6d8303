"""Plain functions follow their input: same namespace, device and dtype out; textbook values."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import functional as F


def test_softmax_golden_3_1_minus3(be):
    y = xpnet.softmax(be.asarray([3.0, 1.0, -3.0]))
    assert_close(y, [0.88, 0.12, 0.00], be, rtol=0, atol=0.005)


def test_softmax_golden_3_0_minus3(be):
    y = xpnet.softmax(be.asarray([3.0, 0.0, -3.0]))
    assert_close(y, [0.95033021, 0.04731416, 0.00235563], be, rtol=1e-6, atol=1e-7)


def test_softmax_rows_sum_to_one_and_match_reference(be, rng):
    x = rng.standard_normal((5, 7)) * 10
    y = xpnet.softmax(be.asarray(x))
    assert_close(y, ref.softmax(x), be)
    assert_close(be.xp.sum(y, axis=-1), np.ones(5), be)


def test_softmax_of_huge_logits_is_finite(be):
    y = xpnet.softmax(be.asarray([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]]))
    assert_close(y, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], be)


def test_log_softmax_and_logsumexp_match_reference(be, rng):
    x = rng.standard_normal((4, 6)) * 30
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    assert_close(xpnet.logsumexp(be.asarray(x)), lse, be)
    assert_close(xpnet.logsumexp(be.asarray(x), keepdims=True), lse[:, None], be)
    assert_close(xpnet.log_softmax(be.asarray(x)), x - lse[:, None], be)


def test_sigmoid_matches_reference_and_is_stable(be):
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    assert_close(xpnet.sigmoid(be.asarray(x)), ref.sigmoid(x), be)


def test_relu(be, rng):
    x = rng.standard_normal((3, 4))
    assert_close(xpnet.relu(be.asarray(x)), np.maximum(x, 0), be)


def test_one_hot(be):
    t = be.asarray(np.array([2, 0, 1]))
    oh = xpnet.one_hot(t, 4, dtype=be.dtype)
    assert_close(oh, ref.one_hot(np.array([2, 0, 1]), 4), be)


def test_cross_entropy_integer_and_one_hot_targets_agree(be, rng):
    s = rng.standard_normal((6, 4)) * 3
    t = np.array([0, 1, 2, 3, 3, 1])
    expected = ref.cross_entropy(s, t)
    assert_close(xpnet.cross_entropy(be.asarray(s), be.asarray(t)), expected, be)
    assert_close(xpnet.cross_entropy(be.asarray(s), be.asarray(ref.one_hot(t, 4))), expected, be)


def test_cross_entropy_single_sample_as_in_the_textbook(be):
    """Output (0.1, 0.05, 0.6, 0, ...) with label 2 gives -ln 0.6 = 0.5108 (the book's 0.51)."""
    s = np.log(np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]) + 1e-12)
    t = np.zeros(10)
    t[2] = 1
    loss = xpnet.cross_entropy(be.asarray(s), be.asarray(t))
    assert_close(loss, -math.log(0.6), be, rtol=1e-6)


def test_cross_entropy_of_huge_logits_is_finite(be):
    s = be.asarray([[1000.0, -1000.0], [-1000.0, 1000.0]])
    loss = xpnet.cross_entropy(s, be.asarray(np.array([1, 1])))
    assert_close(loss, 1000.0, be)


def test_cross_entropy_rejects_out_of_range_labels(be):
    with pytest.raises(xpnet.LabelError, match=r"\[0, 2\].*from 0 to 3"):
        xpnet.cross_entropy(be.asarray(np.zeros((2, 3))), be.asarray(np.array([0, 3])))


def test_accuracy(be):
    s = be.asarray([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert_close(xpnet.accuracy(s, be.asarray(np.array([1, 0, 0, 0]))), 0.75, be)
    assert_close(xpnet.accuracy(s, be.asarray(ref.one_hot(np.array([1, 1, 1, 1]), 2))), 0.5, be)


def test_functions_do_not_need_a_backend_switch(be, rng):
    """A torch tensor in gives a torch tensor out, whatever XPNET_BACKEND says."""
    x = be.asarray(rng.standard_normal((2, 3)))
    with xpnet.use_backend("numpy"):
        for f in (F.softmax, F.log_softmax, F.sigmoid, F.relu):
            y = f(x)
            assert xpnet.backend_name(y) == be.name and y.dtype == be.dtype
