"""``python -m vidloader``: the command line (see :mod:`vidloader.cli`)."""

import sys

from .cli import main

sys.exit(main())
