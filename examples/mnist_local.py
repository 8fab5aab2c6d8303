"""MNIST (or Fashion-MNIST) from a local copy of the four IDX files, no network needed.

Run:   python examples/mnist_local.py DATA_DIR [OUT_DIR] [mnist|fashion-mnist]
DATA_DIR holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not; also looked
for in DATA_DIR/mnist/). Without a local copy, `xpnet train --dataset mnist` downloads them.
GPU:   XPNET_BACKEND=cupy python examples/mnist_local.py DATA_DIR
Quick: XPNET_EXAMPLE_EPOCHS=1 python examples/mnist_local.py DATA_DIR
"""

import os
import sys

from xpnet.train import fit

if len(sys.argv) < 2:
    sys.exit(__doc__)
data_dir = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join("runs", "mnist-example")
variant = sys.argv[3] if len(sys.argv) > 3 else "mnist"
epochs = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "10"))

history = fit(variant, epochs=epochs, hidden=(100,), batch_size=100, data_dir=data_dir, out=out, log=print)
print(f"final test accuracy {history.last['test_acc']:.4f}")
