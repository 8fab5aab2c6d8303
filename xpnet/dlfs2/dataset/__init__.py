"""The second book's ``dataset`` package: ``from xpnet.dlfs2.dataset import spiral, ptb, sequence``.

Each module keeps the book's function names and return values (host NumPy arrays, as the book's
``dataset`` gives them even in its GPU mode); the data come from :mod:`xpnet.datasets`.
"""
