"""The photo-check index: each photo's check result, cached by the photo's content.

Fully decoding a photo (1.5-7 ms) is the slow part of loading; hashing costs 0.1 ms, a ``stat``
0.03 ms. So two maps: ``files`` (path -> size, mtime, ctime, inode and sha256: a path whose
``stat`` matches is not read; ctime cannot be set back, so a photo rewritten in place is hashed
again) and ``checks`` (sha256 -> check result: renamed or copied photos are hits, changed bytes
misses). Stored in ``<cache>/photo_checks/index.json``, written atomically and ignored when
written by another check or Pillow version; concurrent writers lose only work (last one wins).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import PIL

from shared import environment
from shared.io import sha256_file, write_text_atomic

#: Bump when :func:`shared.data.dataset.check_photo` changes what it accepts or returns.
CHECK_VERSION = 1
INDEX_FILE = "index.json"


def index_path() -> Path:
    """Where the index lives: ``<cache>/photo_checks/index.json``."""
    return environment.cache_dir() / "photo_checks" / INDEX_FILE


@dataclass
class PhotoCheckIndex:
    """sha256 of a photo's bytes -> ``{"width", "height", "format", "reason" (drop reason or None),
    "converted" (the pipeline reads an RGB JPEG copy)}``; ``hits`` / ``misses`` count this session."""

    path: Path
    entries: dict[str, dict] = field(default_factory=dict)
    files: dict[str, list] = field(default_factory=dict)  # path -> [size, mtime, ctime, ino, sha]
    hits: int = 0
    misses: int = 0
    _dirty: bool = False
    _seen: set = field(default_factory=set)

    @classmethod
    def load(cls, path: Path | None = None) -> PhotoCheckIndex:
        """The index at ``path`` (default :func:`index_path`); empty when absent, unreadable or
        written by another check or Pillow version."""
        path = Path(path) if path is not None else index_path()
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(stored, dict) or stored.get("stamp") != _stamp() \
                or not isinstance(stored.get("checks"), dict) \
                or not isinstance(stored.get("files"), dict):
            return cls(path)
        return cls(path, stored["checks"], stored["files"])

    def content_key(self, photo: Path) -> str:
        """sha256 of the bytes of ``photo``, from the index while its ``stat`` is unchanged.
        Raises OSError when the file cannot be read."""
        info = os.stat(photo)
        signature = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        self._seen.add(str(photo))
        known = self.files.get(str(photo))
        if known is not None and known[:4] == signature:
            return known[4]
        key = sha256_file(photo)
        self.files[str(photo)] = [*signature, key]
        self._dirty = True
        return key

    def get(self, key: str) -> dict | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, entry: dict) -> None:
        if self.entries.get(key) != entry:
            self.entries[key] = entry
            self._dirty = True

    def save(self) -> None:
        """Write the index atomically if something was added; a read-only cache is not an error."""
        if not self._dirty:
            return
        self.files = {name: known for name, known in self.files.items()
                      if name in self._seen or os.path.exists(name)}  # forget deleted photos
        text = json.dumps({"stamp": _stamp(), "checks": self.entries, "files": self.files},
                          separators=(",", ":"))
        try:
            write_text_atomic(self.path, text + "\n")
        except OSError:
            return
        self._dirty = False


def _stamp() -> str:
    return f"check-v{CHECK_VERSION} pillow-{PIL.__version__}"
