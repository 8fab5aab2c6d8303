"""A deeper network with Batch Normalization and Dropout, trained by the book's Trainer (chapter 6
style): `MultiLayerNetExtend` + `Trainer`, small enough for a CPU.

Data as in train_neuralnet.py (`XPNET_BOOK_DATA`); `XPNET_EXAMPLE_EPOCHS` sets the epochs.
"""

import os

from xpnet.dlfs1 import np
from xpnet.dlfs1.dataset import load_book_data
from xpnet.dlfs1.multi_layer_net_extend import MultiLayerNetExtend
from xpnet.dlfs1.trainer import Trainer

name, ((x_train, t_train), (x_test, t_test)) = load_book_data(
    normalize=True, data=os.environ.get("XPNET_BOOK_DATA", "auto"))
if name == "digits":
    print("MNIST files not found in the data folder: using xpnet's bundled 8x8 digits instead")

np.random.seed(0)
network = MultiLayerNetExtend(input_size=x_train.shape[1], hidden_size_list=[100, 100, 100],
                              output_size=10, weight_init_std="he", use_batchnorm=True,
                              use_dropout=True, dropout_ration=0.1, weight_decay_lambda=1e-4)
trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=int(os.environ.get("XPNET_EXAMPLE_EPOCHS", 10)), mini_batch_size=100,
                  optimizer="Adam", optimizer_param={"lr": 0.001},
                  evaluate_sample_num_per_epoch=1000)
trainer.train()
