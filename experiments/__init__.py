"""One-off studies kept reproducible: each module runs with ``python -m experiments.<name>``."""
