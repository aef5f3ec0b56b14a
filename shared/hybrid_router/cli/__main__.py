"""``python -m hybrid_router.cli``: the console script."""

import sys

from . import main

sys.exit(main())
