"""``airbnb-dl``, the project's command line: :mod:`shared.cli.main` (the parser and the
``data``, ``report``, ``predict``, ``reproduce`` and ``serve`` commands), :mod:`shared.cli.predict`
and :mod:`shared.cli.serve` (the price-estimate page)."""

from shared.cli.main import EXIT_INPUT_ERROR, build_parser, main

__all__ = ["EXIT_INPUT_ERROR", "build_parser", "main"]
