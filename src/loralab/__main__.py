"""``python -m loralab`` is the same as the ``loralab`` console script."""

import sys

from .cli import main

sys.exit(main())
