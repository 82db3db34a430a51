"""Load ``.npy`` files without trusting them: a restricted unpickler for object arrays.

``np.load(allow_pickle=True)`` on a downloaded file can run arbitrary code. Here the header is
parsed with :mod:`numpy.lib.format` and an object array's pickle is read by
:class:`NumpyArrayUnpickler`, which resolves only the globals a numpy array of plain values
needs and raises :class:`UnsafePickleError` on any other *before* anything is called. Plain
dtypes are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import builtins
import codecs
import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from shared.io import RestrictedUnpickler, UnsafePickleError

__all__ = ["NpyFormatError", "NpyHeader", "NpyTruncatedError", "NumpyArrayUnpickler",
           "UnsafePickleError", "inspect_npy", "load_npy", "read_npy_header"]

#: Largest .npy header accepted (numpy's own default limit).
MAX_HEADER_SIZE = 10_000

_NPY_MAGIC = b"\x93NUMPY"


class NpyFormatError(ValueError):
    """The file is not a readable ``.npy`` file; ``looks_like_html`` flags an error page."""

    def __init__(self, message: str, looks_like_html: bool = False) -> None:
        super().__init__(message)
        self.looks_like_html = looks_like_html


class NpyTruncatedError(NpyFormatError):
    """The ``.npy`` file ends before the data its header announces (an interrupted download?)."""


def _numpy_core(module: str) -> Any:
    """``numpy._core.<module>`` (numpy >= 2), falling back to ``numpy.core.<module>`` (numpy 1)."""
    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{module}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The (module, name) pairs a pickled object array of plain values may reference."""
    multiarray = _numpy_core("multiarray")
    numeric = _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype}
    # numpy 1.x pickles say "numpy.core", numpy 2.x "numpy._core": same functions.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    for name in ("int", "float", "complex", "bool", "str", "bytes", "bytearray",
                 "list", "tuple", "dict", "set", "frozenset"):
        allowed[("builtins", name)] = getattr(builtins, name)
        allowed[("__builtin__", name)] = getattr(builtins, name)  # Python 2 era pickles
    allowed[("_codecs", "encode")] = codecs.encode  # how protocol-2 pickles store bytes
    return allowed


class NumpyArrayUnpickler(RestrictedUnpickler):
    """Resolves only the globals needed by numpy object arrays of plain values."""

    allowed = _allowed_globals()

    def refusal(self, module: str, name: str) -> str:
        return (f"refused to load '{module}.{name}': only numpy arrays of plain values "
                "(numbers, strings, None) are accepted, so this pickle was not executed")


@dataclass(frozen=True)
class NpyHeader:
    """What the header of a ``.npy`` file declares."""

    version: tuple[int, int]
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    data_offset: int

    @property
    def data_bytes(self) -> int:
        """Size of the raw data that must follow the header (not meaningful for object arrays)."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def expected_file_size(self) -> int:
        """Exact size of a complete file holding a non-object array."""
        return self.data_offset + self.data_bytes


def read_npy_header(fp: BinaryIO, name: str = "file") -> NpyHeader:
    """Parse the ``.npy`` header at the start of ``fp``, leaving ``fp`` at the start of the data."""
    start = fp.read(len(_NPY_MAGIC))
    if start != _NPY_MAGIC:
        _raise_not_npy(start + fp.read(200), name)
    fp.seek(0)
    try:
        version = npy_format.read_magic(fp)
        shape, fortran_order, dtype = _read_header_fields(fp, version)
    except (ValueError, SyntaxError, EOFError, OSError) as error:
        raise NpyFormatError(f"{name}: unreadable .npy header: {error}") from error
    return NpyHeader(version, tuple(shape), bool(fortran_order), dtype, fp.tell())


def _read_header_fields(fp: BinaryIO, version: tuple[int, int]) -> tuple:
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp, max_header_size=MAX_HEADER_SIZE)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fp, max_header_size=MAX_HEADER_SIZE)
    reader = getattr(npy_format, "_read_array_header", None)  # 3.0: UTF-8 header, no public API
    if version == (3, 0) and reader is not None:
        return reader(fp, version, max_header_size=MAX_HEADER_SIZE)
    raise ValueError(f"unsupported .npy format version {version}")


def _raise_not_npy(start: bytes, name: str) -> None:
    text = start.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<")):
        raise NpyFormatError(f"{name}: got an HTML page instead of a .npy file "
                             "(an error, login or quota page?)", looks_like_html=True)
    if text.startswith(b"version https://git-lfs"):
        raise NpyFormatError(f"{name}: got a Git LFS pointer instead of the .npy file itself")
    raise NpyFormatError(f"{name}: not a .npy file (starts with {start[:16]!r})")


def inspect_npy(path: Path) -> NpyHeader:
    """Read the header of ``path`` and, for a plain-dtype array, check the file size matches it.

    Raises :class:`NpyTruncatedError` when data is missing, :class:`NpyFormatError` otherwise.
    """
    path = Path(path)
    with open(path, "rb") as fp:
        header = read_npy_header(fp, path.name)
    if not header.dtype.hasobject:
        size, expected = path.stat().st_size, header.expected_file_size
        if size < expected:
            raise NpyTruncatedError(f"{path.name}: {size} bytes but its header announces "
                                    f"{expected}: the file is truncated")
        if size > expected:
            raise NpyFormatError(f"{path.name}: {size - expected} unexpected bytes after the data")
    return header


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """Load a ``.npy`` file safely: object arrays through :class:`NumpyArrayUnpickler`.

    Raises :class:`UnsafePickleError` (refused pickle, nothing executed),
    :class:`NpyTruncatedError` or :class:`NpyFormatError`. ``mmap_mode``: plain dtypes only.
    """
    path = Path(path)
    header = inspect_npy(path)
    if not header.dtype.hasobject:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    with open(path, "rb") as fp:
        fp.seek(header.data_offset)
        return _unpickle_array(fp, header, path.name)


def _unpickle_array(fp: BinaryIO, header: NpyHeader, name: str) -> np.ndarray:
    try:
        array = NumpyArrayUnpickler(fp).load()
    except UnsafePickleError:
        raise
    except EOFError as error:
        raise NpyTruncatedError(f"{name}: the pickled data ends early: truncated") from error
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as error:
        if "truncated" in str(error):
            raise NpyTruncatedError(f"{name}: the pickled data is truncated ({error})") from error
        raise NpyFormatError(f"{name}: corrupt pickled data ({type(error).__name__}: "
                             f"{error})") from error
    if not isinstance(array, np.ndarray):
        raise NpyFormatError(f"{name}: the pickle holds a {type(array).__name__}, not an array")
    if array.shape != header.shape:
        raise NpyFormatError(f"{name}: header says shape {header.shape}, data has {array.shape}")
    return array
