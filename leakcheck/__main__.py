"""``python -m leakcheck`` = the ``leakcheck`` command."""

import sys

from leakcheck.cli import main

sys.exit(main())
