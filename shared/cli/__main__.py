"""``python -m shared.cli``: the ``airbnb-dl`` command line."""

import sys

from shared.cli import main

sys.exit(main())
