"""MNIST (or Fashion-MNIST) from a local copy of the four IDX files; nothing is downloaded.

Run:   python examples/mnist_local.py DATA_DIR [OUT_DIR] [mnist|fashion-mnist]
DATA_DIR holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not; also looked
for in DATA_DIR/mnist/, or DATA_DIR/fashion-mnist/). Without a local copy,
`xpnet train --dataset mnist` downloads them (the network is needed then).
GPU:   XPNET_BACKEND=cupy python examples/mnist_local.py DATA_DIR
Quick: XPNET_EXAMPLE_EPOCHS=1 python examples/mnist_local.py DATA_DIR
"""

import os
import sys

import xpnet
from xpnet.datasets.download import FILES, fetch
from xpnet.train import fit

if len(sys.argv) < 2:
    sys.exit(__doc__)
data_dir = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join("runs", "mnist-example")
variant = sys.argv[3] if len(sys.argv) > 3 else "mnist"
epochs = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "10"))

if variant not in ("mnist", "fashion-mnist"):
    sys.exit(f"mnist_local.py: the third argument is {variant!r}; expected mnist or fashion-mnist")
if not os.path.isdir(data_dir):
    sys.exit(f"mnist_local.py: DATA_DIR {data_dir!r} is not a folder; give the folder that holds the four "
             f"{variant} IDX files")
missing = []
for name in FILES.values():  # look only: fetch(..., download_missing=False) never downloads
    try:
        fetch(name, variant, data_dir, download_missing=False)
    except xpnet.DataError:
        missing.append(name)
if missing:
    sys.exit(
        f"mnist_local.py: {len(missing)} of the 4 {variant} IDX files are not in {data_dir!r} "
        f"(nor in {os.path.join(data_dir, variant)!r}): {', '.join(missing)}. Copy them there (gzipped or "
        f"not), or let `xpnet train --dataset {variant}` download them (it needs the network)"
    )

try:
    history = fit(variant, epochs=epochs, hidden=(100,), batch_size=100, data_dir=data_dir, out=out, log=print)
except xpnet.XPNetError as e:  # e.g. files that are not IDX, or that disagree: a sentence, no traceback
    sys.exit(f"mnist_local.py: {e}")
print(f"final test accuracy {history.last['test_acc']:.4f}")
