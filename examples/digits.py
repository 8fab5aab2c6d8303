"""Train the default MLP (64-256-10, ReLU, Adam) on the bundled 8x8 handwritten digits.

Run:   python examples/digits.py [OUT_DIR]          (default: runs/digits-example)
GPU:   XPNET_BACKEND=cupy python examples/digits.py  (or XPNET_BACKEND=torch XPNET_DEVICE=cuda)
Quick: XPNET_EXAMPLE_EPOCHS=3 python examples/digits.py
Then:  xpnet eval OUT_DIR/checkpoint.npz   (on any backend)
Writes OUT_DIR/checkpoint.npz, history.json, history.csv and, when matplotlib is installed
(pip install ".[plot]"), curves.png: what `xpnet train` writes.
"""

import os
import sys

import xpnet
from xpnet import plots
from xpnet.train import DEFAULTS, fit

epochs = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", DEFAULTS["epochs"]))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("runs", "digits-example")

print(f"training on {xpnet.get_backend()}")
history = fit("digits", epochs=epochs, out=out, log=print)
print(f"final test accuracy {history.last['test_acc']:.4f}; checkpoint: {history.checkpoint}")
try:
    print(f"curves: {plots.plot_history(history, os.path.join(out, 'curves.png'), title='digits')}")
except plots.PlotUnavailableError as e:
    print(f"no plot drawn: {e}")
