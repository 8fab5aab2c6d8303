"""Teach an encoder-decoder to add: chapter 7 of "Deep Learning from Scratch 2".

The book's settings: Peeky seq2seq, reversed questions, word vectors 16, hidden 128,
batch 128, Adam (lr 0.001), gradients clipped to a global norm of 5, 25 epochs (with
--dataset date, hidden 256 as in chapter 8). After each epoch it prints the fraction of
test questions answered exactly (the whole answer right).

Run:   python examples/seq2seq_addition.py [--model seq2seq|peeky-seq2seq|attention-seq2seq]
                                           [--dataset addition|date] [--no-reverse]
Other backends: XPNET_BACKEND=jax python examples/seq2seq_addition.py
Quick: XPNET_EXAMPLE_EPOCHS=1 XPNET_EXAMPLE_SIZE=2000 python examples/seq2seq_addition.py
The data are the book's addition.txt / date.txt from the data folder when present, else a
generated set of the same format (see docs/datasets).
"""

import argparse
import os
import time

import numpy as np

import xpnet
from xpnet.datasets import seqtasks
from xpnet.optimizers import clip_grads
from xpnet.seq2seq import MODELS

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", choices=sorted(MODELS), default="peeky-seq2seq")
parser.add_argument("--dataset", choices=["addition", "date"], default="addition")
parser.add_argument("--no-reverse", dest="reverse", action="store_false", help="keep the questions' order")
args = parser.parse_args()
epochs = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "25"))
size = int(os.environ.get("XPNET_EXAMPLE_SIZE", "0"))  # training questions used (0: all 45,000)
batch_size, max_grad = 128, 5.0
hidden = 256 if args.dataset == "date" else 128  # the book's chapter 8 uses 256 on the dates

(x_train, t_train), (x_test, t_test), char_to_id, id_to_char = (lambda d: (*d[0], d[1], d[2]))(
    seqtasks.load(f"{args.dataset}.txt"))
if size:
    x_train, t_train = x_train[:size], t_train[:size]
    x_test, t_test = x_test[:max(size // 10, 1)], t_test[:max(size // 10, 1)]
if args.reverse:  # the book's trick: x[:, ::-1]
    x_train, x_test = x_train[:, ::-1].copy(), x_test[:, ::-1].copy()

be = xpnet.get_backend()
print(f"{args.model} on {args.dataset} ({len(x_train)} training, {len(x_test)} test questions), "
      f"reversed={args.reverse}, {be}")
model = MODELS[args.model].create(len(char_to_id), 16, hidden, rng=0, backend=be)
optimizer = xpnet.Adam(lr=0.001)
xs_test, ts_test = be.asarray(x_test), be.asarray(t_test)
rng = np.random.default_rng(1)

for epoch in range(1, epochs + 1):
    t0 = time.perf_counter()
    order = rng.permutation(len(x_train))
    losses = []
    steps = len(x_train) // batch_size or 1
    for i in range(steps):
        pick = order[i * batch_size:(i + 1) * batch_size]
        x, t = be.asarray(x_train[pick]), be.asarray(t_train[pick])
        losses.append(model.loss(x, t, check=(epoch == 1 and i == 0)))  # the ids are checked once
        model.backward()
        optimizer.update(model.params, clip_grads(model.grads, max_grad))
    loss = float(xpnet.to_numpy(sum(losses))) / len(losses)  # one read back per epoch
    seconds = time.perf_counter() - t0
    acc = model.accuracy(xs_test, ts_test, batch_size=1000)
    print(f"epoch {epoch:2d}  loss {loss:.4f}  exact answers {acc * 100:6.2f}%  ({seconds:.1f} s training)",
          flush=True)

question = xs_test[:3, ...]
answer = xpnet.to_numpy(model.generate(question, char_to_id["_"], t_test.shape[1] - 1))
for q, a, t in zip(x_test[:3], answer, t_test[:3]):
    q = q[::-1] if args.reverse else q
    print("Q", "".join(id_to_char[int(c)] for c in q), " T", "".join(id_to_char[int(c)] for c in t[1:]),
          " ->", "".join(id_to_char[int(c)] for c in a))
