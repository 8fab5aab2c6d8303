"""The textbook's spiral: a 2-10-3 network with sigmoid, SGD lr 1.0, batch 30, 300 epochs.

Run:   python examples/spiral.py [OUT_DIR]       (default OUT_DIR: runs/spiral-example)
GPU:   XPNET_BACKEND=cupy python examples/spiral.py
Quick: XPNET_EXAMPLE_EPOCHS=20 python examples/spiral.py
Writes OUT_DIR/spiral_regions.png (the decision regions) and OUT_DIR/spiral_curves.png
when matplotlib is installed (pip install ".[plot]").
The book reports training accuracy; the "test" curve here is a held-out set: 300 new points
of the same spiral (another seed for the angle noise), never trained on.
"""

import dataclasses
import os
import sys

import xpnet
from xpnet import datasets
from xpnet.train import Trainer

epochs = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "300"))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("runs", "spiral-example")

train = datasets.spiral(seed=1984)  # 3 classes x 100 points, angle noise 0.2
held_out = datasets.spiral(seed=2024)  # the same spiral, new noise
data = dataclasses.replace(train, x_test=held_out.x_train, t_test=held_out.t_train)
model = xpnet.mlp([2, 10, 3], activation="sigmoid", seed=0)
trainer = Trainer(model, xpnet.SGD(lr=1.0), data, batch_size=30, seed=0, log=None)
history = trainer.fit(epochs)
acc = history.last["train_acc"]
print(f"spiral: training accuracy {acc:.4f} after {epochs} epochs on {xpnet.get_backend()}")
print(f"spiral: held-out accuracy {history.last['test_acc']:.4f} on {data.x_test.shape[0]} new points")

try:
    from xpnet import plots

    os.makedirs(out, exist_ok=True)
    plots.plot_decision_regions(
        model,
        data.x_train,
        data.t_train,
        os.path.join(out, "spiral_regions.png"),
        title=f"spiral, train accuracy {acc:.3f}",
    )
    plots.plot_history(history, os.path.join(out, "spiral_curves.png"), title="spiral (test: held-out points)")
    print(f"plots written to {out}")
except plots.PlotUnavailableError as e:
    print(f"no plots: {e}")
