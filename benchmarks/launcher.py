"""Run one command and report its peak RSS: ``python -m benchmarks.launcher PROGRAM [ARGS...]``.

Why a launcher: Linux charges a program started by ``exec`` with the peak RSS of the process that
started it (``ru_maxrss`` keeps the larger of the two), so a child started directly by the
benchmark process, which holds TensorFlow and several models, would report at least that
process's peak. This launcher is a small interpreter importing nothing but the standard library:
the command it starts begins with the launcher's few MiB, so the kernel's peak RSS of that
command (``RUSAGE_CHILDREN`` once it has exited, or ``RUSAGE_SELF`` inside it) is its own.

The command's output passes through unchanged; the launcher then prints one line
``BENCH-PEAK {"peak_rss_mib": ...}`` and exits with the command's exit status.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

PEAK_PREFIX = "BENCH-PEAK "


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (MiB) of this process (``RUSAGE_SELF``) or of its largest waited-for
    descendant (``RUSAGE_CHILDREN``), from ``getrusage`` (KiB on Linux, bytes on macOS)."""
    value = resource.getrusage(who).ru_maxrss
    return round(value / (2**20 if sys.platform == "darwin" else 2**10), 1)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m benchmarks.launcher PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    returncode = subprocess.run(argv).returncode
    print(PEAK_PREFIX + json.dumps({"peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN)}),
          flush=True)
    return returncode if returncode >= 0 else 128 - returncode  # killed by a signal: 128 + signal


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
