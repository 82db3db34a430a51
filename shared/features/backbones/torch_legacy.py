"""Read PyTorch state dicts saved in the *legacy* (pre-1.6, non-zip) format, without torch.

The stream: pickles of the magic number, protocol version and sys_info, of the object (tensors
name their storages by persistent id) and of the storage keys, then per key an int64
little-endian element count and the raw bytes. Every pickle is read by
:class:`StateDictUnpickler`, which resolves only the globals a plain state dict needs (anything
else raises :class:`UnsafePickleError` before any code runs); tensors are built with numpy.
"""

from __future__ import annotations

import collections
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.io import RestrictedUnpickler, UnsafePickleError

__all__ = [
    "ALLOWED_GLOBALS",
    "LegacyFormatError",
    "StateDictUnpickler",
    "UnsafePickleError",
    "load_legacy_state_dict",
]

# Constants of torch/serialization.py for the legacy format.
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"

# torch storage type name -> numpy dtype (byte order applied later from sys_info).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class LegacyFormatError(ValueError):
    """The file is not a well-formed legacy torch state dict."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    name: str
    dtype: np.dtype


class _Storage:
    """A flat storage: ``numel`` elements of ``dtype``, filled after the object pickle."""

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView:
    """A contiguous window [offset, offset + numel) of a root storage, in elements."""

    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True)
class _LazyTensor:
    """What the rebuild functions return: a strided view description of a storage."""

    storage: _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) for v in value):
        raise LegacyFormatError(f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _LazyTensor:
    """Inert replacement of ``torch._utils._rebuild_tensor``."""
    if not isinstance(storage, _StorageView):
        raise LegacyFormatError(f"tensor storage must be a persistent storage, got {type(storage)!r}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise LegacyFormatError(f"invalid storage offset {storage_offset!r}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise LegacyFormatError(f"size {size} and stride {stride} differ in length")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
    backward_hooks: Any = None, metadata: Any = None,
) -> _LazyTensor:
    """Inert replacement of ``torch._utils._rebuild_tensor_v2`` (grad flags and hooks ignored)."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(name, dtype)
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class StateDictUnpickler(RestrictedUnpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` and collects legacy storages
    (``storages``: key -> :class:`_Storage`, data read afterwards)."""

    allowed = ALLOWED_GLOBALS

    def __init__(self, file: io.BufferedIOBase, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def refusal(self, module: str, name: str) -> str:
        return (f"refusing to load global {module}.{name}: only plain tensor state dicts are "
                f"allowed ({', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))})")

    def persistent_load(self, pid: Any) -> _StorageView:
        """Resolve ``('storage', type, key, location, numel, view_metadata)`` ids."""
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise LegacyFormatError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise LegacyFormatError(f"malformed storage id {pid!r}")
        if not isinstance(numel, int) or numel < 0:
            raise LegacyFormatError(f"invalid storage size in {pid!r}")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise LegacyFormatError(f"storage {key} declared twice with different types or sizes")
        if view_metadata is None:
            return _StorageView(root, 0, numel)
        # Pre-0.4 files may reference a sub-range of a root storage: (view_key, offset, size).
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
            raise LegacyFormatError(f"malformed storage view {view_metadata!r} of {key}")
        _view_key, offset, view_numel = view_metadata
        if not (isinstance(offset, int) and isinstance(view_numel, int)
                and offset >= 0 and view_numel >= 0 and offset + view_numel <= numel):
            raise LegacyFormatError(f"invalid storage view {view_metadata!r} of {key}")
        return _StorageView(root, offset, view_numel)


def _read_header(stream: io.BytesIO) -> str:
    """Check magic number and protocol; return the byte order of the data ("<" or ">")."""
    magic = StateDictUnpickler(stream).load()
    if magic != MAGIC_NUMBER:
        raise LegacyFormatError("not a legacy torch file (wrong magic number)")
    protocol = StateDictUnpickler(stream).load()
    if protocol != PROTOCOL_VERSION:
        raise LegacyFormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = StateDictUnpickler(stream).load()
    little_endian = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    return "<" if little_endian else ">"


def _read_storage_data(stream: io.BytesIO, storages: dict[str, _Storage], byte_order: str) -> None:
    """Read the storage-key list and the raw bytes of each storage, in file order."""
    keys = StateDictUnpickler(stream).load()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise LegacyFormatError("storage key list does not match the storages referenced by tensors")
    for key in keys:
        storage = storages[key]
        header = stream.read(8)
        if len(header) != 8:
            raise LegacyFormatError(f"truncated file: no size header for storage {key}")
        (numel,) = struct.unpack(byte_order + "q", header)
        if numel != storage.numel:
            raise LegacyFormatError(f"storage {key}: {numel} elements on disk, {storage.numel} expected")
        dtype = storage.dtype.newbyteorder(byte_order)
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise LegacyFormatError(f"truncated file: storage {key} is incomplete")
        storage.data = np.frombuffer(raw, dtype=dtype)


def _materialize(tensor: _LazyTensor) -> np.ndarray:
    """Copy a strided view of the storage into a fresh native-endian numpy array."""
    view = tensor.storage
    start = view.offset + tensor.offset
    if any(n == 0 for n in tensor.size):
        return np.zeros(tensor.size, dtype=view.root.dtype)
    if any(s < 0 for s in tensor.stride):
        raise LegacyFormatError(f"negative strides are not supported: {tensor.stride}")
    # Bounds check: as_strided does none, and the file is untrusted.
    last = start + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    if last >= view.offset + view.numel:
        raise LegacyFormatError(f"tensor of size {tensor.size} overruns its storage {view.root.key}")
    data = view.root.data
    assert data is not None, "storage data must be read before materializing tensors"
    strided = np.lib.stride_tricks.as_strided(
        data[start:], shape=tensor.size,
        strides=[s * data.itemsize for s in tensor.stride], writeable=False,
    )
    # order="C": the stored strides may be channels-last; callers expect plain C arrays.
    return np.array(strided, dtype=data.dtype.newbyteorder("="), order="C", copy=True)


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as ``{parameter name: numpy array}``.

    Arrays keep the torch layout (conv kernels ``(out, in, kh, kw)``) and dtype. Raises
    :class:`UnsafePickleError` for a global outside the allowlist, :class:`LegacyFormatError`
    for zip-format (torch >= 1.6) or malformed files.
    """
    raw = Path(path).read_bytes()
    if raw.startswith(_ZIP_SIGNATURE):
        raise LegacyFormatError(f"{path} uses the zip-based torch format (torch >= 1.6), not the legacy one")
    stream = io.BytesIO(raw)
    byte_order = _read_header(stream)
    storages: dict[str, _Storage] = {}
    obj = StateDictUnpickler(stream, storages).load()
    if not isinstance(obj, dict):
        raise LegacyFormatError(f"expected a state dict, found {type(obj).__name__}")
    _read_storage_data(stream, storages, byte_order)
    state_dict: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _LazyTensor):
            raise LegacyFormatError(f"entry {name!r} is not a tensor")
        state_dict[name] = _materialize(value)
    return state_dict
