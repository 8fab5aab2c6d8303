"""Training the chapter 5 TwoLayerNet with the book's loop, `network.params[key] -= lr * grad[key]`,
on the backend XPNET_BACKEND chooses (jax and dask included).

Data: MNIST when its files are in the data folder (`XPNET_DATA_DIR`), else xpnet's bundled 8x8
digits, announced; `XPNET_BOOK_DATA=mnist|digits|auto` chooses. `XPNET_EXAMPLE_ITERS` sets the
iterations (the book: 10000).
"""

import os

from two_layer_net import TwoLayerNet

from xpnet.dlfs1 import np
from xpnet.dlfs1.dataset import load_book_data

name, ((x_train, t_train), (x_test, t_test)) = load_book_data(
    normalize=True, one_hot_label=True, data=os.environ.get("XPNET_BOOK_DATA", "auto"))
if name == "digits":
    print("MNIST files not found in the data folder: using xpnet's bundled 8x8 digits instead")
print("data:", name, x_train.shape, "backend:", os.environ.get("XPNET_BACKEND", "numpy"))

np.random.seed(0)
network = TwoLayerNet(input_size=x_train.shape[1], hidden_size=50, output_size=10)

iters_num = int(os.environ.get("XPNET_EXAMPLE_ITERS", 10000))
train_size = x_train.shape[0]
batch_size = 100
learning_rate = 0.1

train_loss_list = []
train_acc_list = []
test_acc_list = []

iter_per_epoch = max(train_size / batch_size, 1)

for i in range(iters_num):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch = x_train[batch_mask]
    t_batch = t_train[batch_mask]

    grad = network.gradient(x_batch, t_batch)

    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= learning_rate * grad[key]

    loss = network.loss(x_batch, t_batch)
    train_loss_list.append(loss)

    if i % iter_per_epoch == 0:
        train_acc = network.accuracy(x_train, t_train)
        test_acc = network.accuracy(x_test, t_test)
        train_acc_list.append(train_acc)
        test_acc_list.append(test_acc)
        print(train_acc, test_acc)

print("final loss:", train_loss_list[-1])
print("final test acc:", network.accuracy(x_test, t_test))
