"""Reading and writing files safely: atomic writes, digests, and restricted unpickling.

A file is written to a temporary sibling and renamed into place with :func:`os.replace`, so an
interrupted run never leaves a half-written file that later looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

#: Suffix of the temporary files :func:`atomic_path` creates (``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    The temporary ``.<name>.<random><suffix>`` sits in the target's folder, so the rename never
    crosses file systems; it is deleted if the block raises. ``fsync`` flushes it before the rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or TEMP_SUFFIX,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def remove_stale_temporaries(folder: str | os.PathLike, suffix: str = TEMP_SUFFIX) -> int:
    """Delete temporary files ``.*<suffix>`` left in ``folder`` by a killed run; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for stale in folder.glob(f".*{suffix}"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def write_json_atomic(target: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``target`` atomically."""
    return write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- restricted unpickling
# A pickle can name any importable callable (``os.system``...) and call it while it loads: each
# use declares its own allow-list in a subclass of RestrictedUnpickler.


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the allow-list; nothing was executed."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :attr:`allowed` (empty here: subclass it)."""

    #: ``{(module, name): the object to return}``; the only globals a pickle may reference.
    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(self.refusal(module, name)) from None

    def refusal(self, module: str, name: str) -> str:
        """The error message for a refused global (subclasses say what they accept)."""
        return f"refused to load '{module}.{name}': not in the allow-list, nothing was executed"

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused persistent id {pid!r} in pickle")
