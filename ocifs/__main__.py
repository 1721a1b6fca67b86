"""``python -m ocifs`` is the ``ocifs`` command."""

import sys

from ocifs.run.cli import main

sys.exit(main())
