"""``python -m shared.cli``: the ``airbnb-dl`` command (what the nox sessions run)."""

import sys

from shared.cli import main

sys.exit(main())
