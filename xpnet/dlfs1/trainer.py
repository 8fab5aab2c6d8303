"""The book's ``common/trainer.py``: minibatch training that prints what the book prints.

Per iteration ``train loss:...``; per epoch ``=== epoch:N, train acc:X, test acc:Y ===``; at the
end ``=============== Final Test Accuracy ===============`` and ``test acc:...``. Minibatches are
drawn with ``np.random.choice`` (host indices), so ``np.random.seed`` fixes them on every backend.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import np
from .optimizer import OPTIMIZERS


class Trainer:
    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param=None, evaluate_sample_num_per_epoch=None, verbose=True):
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        cls = OPTIMIZERS.get(str(optimizer).lower())
        if cls is None:
            raise ConfigError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        param = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
        try:
            self.optimizer = cls(**param)
        except TypeError as e:
            raise ConfigError(f"optimizer {optimizer!r} does not take {param}: {e}") from None
        self.train_size = x_train.shape[0]
        if self.train_size == 0 or mini_batch_size < 1:
            raise ConfigError(f"Trainer needs training data and mini_batch_size >= 1, got {self.train_size} "
                              f"samples and mini_batch_size={mini_batch_size!r}")
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list, self.train_acc_list, self.test_acc_list = [], [], []

    def train_step(self):
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch, t_batch = self.x_train[batch_mask], self.t_train[batch_mask]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = float(self.network.loss(x_batch, t_batch))
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))
        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            xs, ts, xt, tt = self.x_train, self.t_train, self.x_test, self.t_test
            n = self.evaluate_sample_num_per_epoch
            if n is not None:
                xs, ts, xt, tt = xs[:n], ts[:n], xt[:n], tt[:n]
            train_acc = float(self.network.accuracy(xs, ts))
            test_acc = float(self.network.accuracy(xt, tt))
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print("=== epoch:" + str(self.current_epoch) + ", train acc:" + str(train_acc)
                      + ", test acc:" + str(test_acc) + " ===")
        self.current_iter += 1

    def train(self):
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = float(self.network.accuracy(self.x_test, self.t_test))
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
        return test_acc
