"""The second book's ``common`` and ``dataset`` packages on any backend.

"Deep Learning from Scratch 2" has its readers import ``common.*`` and ``dataset.*``; with the
imports rewritten (``from common.layers import Affine`` -> ``from xpnet.dlfs2.layers import
Affine``, ``from dataset import ptb`` -> ``from xpnet.dlfs2.dataset import ptb``) the same
scripts run on the backend that ``XPNET_BACKEND`` chooses. The import table and what differs on
jax and dask: docs/book.md.

Nothing is imported here: ``xpnet.dlfs2.dataset`` loads no backend; the other modules use the
chosen one.
"""
