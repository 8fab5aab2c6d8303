"""Softmax and Softmax-with-Loss, step by step, with the textbook's numbers.

Run: python examples/softmax_walkthrough.py   (any backend: XPNET_BACKEND=torch ...)
"""

import numpy as np

import xpnet
from xpnet import SoftmaxWithLoss, cross_entropy, softmax, to_numpy

be = xpnet.get_backend()  # numpy unless XPNET_BACKEND says otherwise
print(f"backend: {be}")

# 1. softmax turns scores into probabilities that sum to 1
a = be.asarray(np.array([0.3, 2.9, 4.0]))
y = softmax(a)
print("softmax([0.3, 2.9, 4.0])      =", np.round(to_numpy(y), 8))  # [0.01821127 0.24519181 0.73659691]
assert np.allclose(to_numpy(y), [0.01821127, 0.24519181, 0.73659691], atol=1e-6)

# 2. it is safe for large scores (the max is subtracted first)
big = to_numpy(softmax(be.asarray(np.array([1010.0, 1000.0, 990.0]))))
# in scientific notation: rounded to 8 decimals, the last one (exp(-20) / ...) would print as 0
print("softmax([1010, 1000, 990])    = [" + " ".join(f"{p:.4e}" for p in big) + "]")  # ... 2.0611e-09]
assert np.isfinite(big).all()
assert np.allclose(big, [9.99954600e-01, 4.53978686e-05, 2.06106005e-09], rtol=1e-4, atol=0)

# 3. cross-entropy error: small when the right class gets a high probability
t = be.asarray(np.array([2]))  # the answer is class 2 ("one-hot" [0, 0, 1, 0, ...])
good = np.array([[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]])
bad = np.array([[0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]])
for name, probs in (("class 2 at 0.6", good), ("class 2 at 0.1", bad)):
    # cross_entropy takes scores; log(p) are scores whose softmax is p (the rows sum to 1)
    scores = be.asarray(np.log(probs + 1e-7))
    e = float(to_numpy(cross_entropy(scores, t)))
    print(f"cross-entropy, {name}: {e:.4f}")  # 0.5108 and 2.3026
expected = -np.log(0.6 + 1e-7)
assert abs(float(to_numpy(cross_entropy(be.asarray(np.log(good + 1e-7)), t))) - expected) < 1e-4

# 4. Softmax-with-Loss: forward gives the mean loss, backward gives (y - t) / N
layer = SoftmaxWithLoss()
x = be.asarray(np.array([[0.3, 2.9, 4.0], [1.0, 0.0, -1.0]]))
labels = be.asarray(np.array([2, 0]))
loss = layer.forward(x, labels)
dx = to_numpy(layer.backward())
y = to_numpy(softmax(x))
onehot = np.eye(3)[[2, 0]]
print(f"Softmax-with-Loss forward: {float(to_numpy(loss)):.6f}")
print("backward (y - t) / N:\n", np.round(dx, 6))
assert np.allclose(dx, (y - onehot) / 2, atol=1e-6)
print("ok: backward equals (y - t) / N")
