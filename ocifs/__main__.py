"""``python -m ocifs`` is the ``ocifs`` command."""

import sys

from .cli import main

sys.exit(main())
