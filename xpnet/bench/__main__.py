"""``python -m xpnet.bench``: the same as ``xpnet bench``."""

import sys

from . import main

sys.exit(main())
