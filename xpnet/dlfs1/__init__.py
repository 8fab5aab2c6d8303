"""The first "Deep Learning from Scratch" book's ``common`` and ``dataset`` packages on xpnet.

A script of the book runs on any backend with its imports rewritten (docs/book.md):
``from common.layers import Affine`` -> ``from xpnet.dlfs1.layers import Affine``,
``from dataset.mnist import load_mnist`` -> ``from xpnet.dlfs1.dataset.mnist import load_mnist``,
``import numpy as np`` -> ``from xpnet.dlfs1 import np``. ``XPNET_BACKEND`` chooses the backend.
"""
