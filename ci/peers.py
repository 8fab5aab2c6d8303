"""xpnet beside scikit-learn's MLPClassifier and a PyTorch MLP: same digits split, same network.

    python ci/peers.py                 # 40 epochs, seeds 0 1 2, one BLAS thread each
    python ci/peers.py --epochs 30 --seeds 0 1 2 3 4

All three train a 64-256-10 ReLU MLP with Adam (learning rate 0.002, batch 64, no weight decay)
on xpnet's stratified 80/20 digits split, features scaled to [0, 1] (``xpnet.datasets.load``),
for the same number of epochs, and report test accuracy (mean, lowest, highest over the seeds)
and training seconds per run (wall clock and CPU time: on a loaded machine the CPU time is the
fairer one). Needs scikit-learn and torch (neither is an xpnet dependency).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: the same one thread for everyone

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet import datasets  # noqa: E402
from xpnet import train as T  # noqa: E402

HIDDEN, LR, BATCH = 256, 0.002, 64


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def run_xpnet(data, epochs: int, seed: int) -> float:
    trainer = T.build("digits", hidden=[HIDDEN], optimizer="adam", lr=LR, batch_size=BATCH, seed=seed,
                      backend="numpy", dtype="float32", quiet=True)
    trainer.fit(epochs)
    return trainer.model.accuracy(*(xpnet.get_backend("numpy", dtype="float32").asarray(a)
                                    for a in (flat(data.x_test), data.t_test)))


def run_sklearn(data, epochs: int, seed: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam", alpha=0.0,
                        batch_size=BATCH, learning_rate_init=LR, max_iter=epochs, shuffle=True,
                        random_state=seed, tol=0.0, n_iter_no_change=epochs + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch count, as for the others
        clf.fit(flat(data.x_train), data.t_train)
    return float(clf.score(flat(data.x_test), data.t_test))


def run_torch(data, epochs: int, seed: int) -> float:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    x = torch.tensor(flat(data.x_train), dtype=torch.float32)
    t = torch.tensor(data.t_train)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(x.shape[0]))
        for i in range(0, x.shape[0], BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), t[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = net(torch.tensor(flat(data.x_test), dtype=torch.float32)).argmax(dim=1).numpy()
    return float((pred == data.t_test).mean())


def version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    data = datasets.load("digits")
    print(f"digits: {data.x_train.shape[0]} train / {data.x_test.shape[0]} test, 64-{HIDDEN}-10 ReLU MLP, "
          f"Adam lr {LR}, batch {BATCH}, {args.epochs} epochs, seeds {' '.join(map(str, args.seeds))}, "
          f"1 thread\n")
    print("| library | version | test accuracy: mean (lowest-highest) | seconds per run (wall / CPU) |")
    print("|---|---|---|---|")
    for name, module, fn in (("xpnet (numpy, float32)", "xpnet", run_xpnet),
                             ("scikit-learn MLPClassifier", "sklearn", run_sklearn),
                             ("PyTorch nn.Sequential", "torch", run_torch)):
        if version(module) == "not installed":
            print(f"| {name} | not installed | - | - |")
            continue
        accs, secs, cpu = [], [], []
        for seed in args.seeds:
            t0, c0 = time.perf_counter(), time.process_time()
            accs.append(fn(data, args.epochs, seed))
            secs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"| {name} | {version(module)} | {100 * np.mean(accs):.2f}% ({100 * min(accs):.2f}-"
              f"{100 * max(accs):.2f}%) | {np.mean(secs):.2f} / {np.mean(cpu):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
