"""``python -m benchmarks [--quick]``: see :mod:`benchmarks` and ``--help``."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
