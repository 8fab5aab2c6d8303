"""The speed paths give the textbook's numbers on every backend of the parity matrix.

``SGD`` updates writeable arrays in place through ``backend.sub_scaled_`` (torch's fused
``sub_``, numpy/cupy ``out=`` into a reused buffer) and stores new arrays on jax/dask;
``model.gradient`` skips the first layer's input gradient. Each is compared with the plain
formula computed in float64 NumPy.
"""

from __future__ import annotations

import numpy as np
from conftest import assert_close

import xpnet
from xpnet import backend as B


def test_sgd_update_equals_p_minus_lr_g_and_layers_see_it(be, rng):
    model = xpnet.mlp([5, 4, 3], seed=0, backend=be)
    p0 = {k: B.to_numpy(v).astype(np.float64) for k, v in model.params.items()}
    opt = xpnet.SGD(lr=0.1)
    x, t = be.asarray(rng.standard_normal((6, 5))), be.asarray(rng.integers(0, 3, 6))
    expected = dict(p0)
    for _ in range(2):  # the second step reuses the scratch buffers
        grads = model.gradient(x, t)
        g = {k: B.to_numpy(v).astype(np.float64) for k, v in grads.items()}
        opt.update(model.params, grads)
        expected = {k: expected[k] - 0.1 * g[k] for k in expected}
        for k in expected:
            assert_close(model.params[k], expected[k], be)
        assert_close(model.layers[0].params["W"], expected["W1"], be)  # the layer sees it


def test_sgd_with_weight_decay_in_place(be, rng):
    p = rng.standard_normal((3, 4))
    g = rng.standard_normal((3, 4))
    expected = p - 0.5 * (g + 0.01 * p)
    params, grads = {"W": be.asarray(p.copy())}, {"W": be.asarray(g.copy())}
    xpnet.SGD(lr=0.5, weight_decay=0.01).update(params, grads)
    assert_close(params["W"], expected, be)
    assert_close(grads["W"], g, be)  # the caller's gradient is left alone


def test_sub_scaled_changes_writeable_arrays_in_place(be, rng):
    p, g = be.asarray(rng.standard_normal((4, 3)).copy()), be.asarray(rng.standard_normal((4, 3)))
    if not B.is_writeable(p):
        return  # jax, dask: the optimizer stores a new array instead (test above)
    before = B.to_numpy(p).astype(np.float64)
    work = B.sub_scaled_(p, g, 0.25)
    work2 = B.sub_scaled_(p, g, 0.25, work)
    assert work2 is work  # the scratch buffer is reused
    assert_close(p, before - 0.5 * B.to_numpy(g), be)


def test_gradient_skips_the_input_gradient_but_not_the_weights(be, rng):
    model = xpnet.mlp([5, 4, 3], seed=2, backend=be)
    x, t = be.asarray(rng.standard_normal((6, 5))), be.asarray(rng.integers(0, 3, 6))
    fast = {k: B.to_numpy(v) for k, v in model.gradient(x, t).items()}
    model.loss(x, t)
    dx = model.backward()  # full backward, input gradient included
    assert tuple(dx.shape) == (6, 5)
    for k, v in fast.items():
        assert_close(model._grads[k], v, be)
    model.loss(x, t)
    assert model.backward(input_grad=False) is None
