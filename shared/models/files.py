"""The files of a saved model folder: written and read without running any code from them.

Model folders are passed around, so loading one never executes code it contains, and a damaged
or mixed-up folder is refused in one line (:class:`ModelLoadError`). No pickle: scikit-learn
parts are :mod:`skops.io` files whose type names are checked before anything is built
(:func:`load_part`), and Keras models load with ``safe_mode=True``. ``metadata.json`` records
every other file's size and sha256 and its own (:func:`write_metadata`, :func:`verify_files`):
this detects damage and mix-ups, not a deliberate forger.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import skops.io as sio

from shared.features import tabular as feats
from shared.io import _json_default, atomic_path, sha256_file, write_json_atomic

METADATA_FILE = "metadata.json"
#: The metadata keys written by :func:`write_metadata`.
FILES_KEY, SEAL_KEY = "files", "metadata_sha256"

RETRAIN = "retrain it with the current project (`nox -s deliverable1` or `nox -s deliverable2`)"


class ModelLoadError(RuntimeError):
    """A saved model cannot be used by this version of the project; the message says why."""


# --------------------------------------------------------------------------- trusted types

def type_name(obj) -> str:
    """The name skops gives a class or function: ``module.qualname``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def base_trusted_types() -> frozenset[str]:
    """What every saved model may hold beyond skops' defaults: the tabular preprocessor's own
    steps and numpy dtypes (``OneHotEncoder`` stores its ``dtype``)."""
    return frozenset(map(type_name, (np.dtype, *feats.TRUSTED_TYPES)))


def named_types(data: bytes, what) -> list[str]:
    """The types the skops ``data`` names beyond skops' defaults, read without building anything;
    :class:`ModelLoadError` naming ``what`` when ``data`` is not a skops file."""
    try:
        return sio.get_untrusted_types(data=data)
    except Exception as exc:  # zip, JSON or schema errors: one line
        raise ModelLoadError(f"{what}: not a readable skops file ({_reason(exc)}); "
                             "the model folder is damaged: copy it again or retrain the model"
                             ) from None


def untrusted_types(named, trusted: frozenset[str]) -> list[str]:
    """The names of ``named`` (from :func:`named_types`) that are not in ``trusted``, sorted."""
    return sorted(set(named) - set(trusted))


# --------------------------------------------------------------------------- parts

def save_part(obj, path: Path, trusted: frozenset[str] | None = None) -> Path:
    """Write a fitted scikit-learn object to ``path`` (a ``.skops`` file) atomically.

    Raises ``TypeError`` if ``obj`` holds a type outside ``trusted`` (default
    :func:`base_trusted_types`), so no unloadable model is saved.
    """
    trusted = base_trusted_types() if trusted is None else trusted
    data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED)  # a third of the stored size
    refused = untrusted_types(named_types(data, path), trusted)
    if refused:
        raise TypeError(f"{type(obj).__name__} cannot be saved as a model part: it holds "
                        f"type(s) {', '.join(refused)} that loading does not trust (a model "
                        "family declares its own in Family.trusted_types)")
    with atomic_path(path, suffix=".skops") as tmp:
        tmp.write_bytes(data)
    return Path(path)


def load_part(path: Path, trusted: frozenset[str] | None = None):
    """Read a part written by :func:`save_part`, refusing any type outside ``trusted`` with
    :class:`ModelLoadError`; nothing from it is executed."""
    trusted = base_trusted_types() if trusted is None else trusted
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({_reason(exc)})") from None
    named = named_types(data, path)
    refused = untrusted_types(named, trusted)
    if refused:
        raise ModelLoadError(f"{path}: refused, it names type(s) this project does not trust: "
                             f"{', '.join(refused)}; nothing from it was run")
    try:
        return sio.loads(data, trusted=named)
    except Exception as exc:  # only trusted types are built; any failure: one line
        raise ModelLoadError(f"{path}: cannot be loaded ({_reason(exc)}); the model folder is "
                             f"damaged or from another version: {RETRAIN}") from None


def load_keras(path: Path, custom_objects=None):
    """The Keras model at ``path``, uncompiled, with ``safe_mode=True`` (no ``Lambda`` layers or
    other arbitrary code) and the family's ``custom_objects``; :class:`ModelLoadError` if not."""
    import keras  # TensorFlow: only a Keras model gets here (a tabular one loads without it)

    try:
        return keras.models.load_model(path, custom_objects=dict(custom_objects or {}),
                                       compile=False, safe_mode=True)
    except Exception as exc:  # refused or unreadable: one line, no traceback
        raise ModelLoadError(f"{path}: Keras cannot load it ({_reason(exc)}); {RETRAIN}") from None


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# --------------------------------------------------------------------------- metadata and digests

def _part_paths(folder: Path) -> list[Path]:
    """Every entry of ``folder`` but the metadata and hidden ones (``.*``), sorted by name."""
    return sorted(path for path in Path(folder).iterdir()
                  if path.name != METADATA_FILE and not path.name.startswith("."))


def file_digests(folder: Path) -> dict[str, dict]:
    """``{file name: {"bytes", "sha256"}}`` of every file of ``folder`` but the metadata and
    hidden ones, sorted by name."""
    return {path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
            for path in _part_paths(folder) if path.is_file()}


def _seal(meta: dict) -> str:
    """sha256 of the canonical JSON of ``meta`` without :data:`SEAL_KEY` (re-indenting changes
    nothing, editing a value does)."""
    body = {k: v for k, v in meta.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def write_metadata(folder: Path, meta: dict) -> Path:
    """Write ``folder/metadata.json``: ``meta`` plus the digests of every file now in ``folder`` and
    its own sha256. Call it after writing the other files."""
    folder = Path(folder)
    plain = json.loads(json.dumps({k: v for k, v in meta.items() if k not in (FILES_KEY, SEAL_KEY)},
                                  default=_json_default))  # the JSON values, as read back
    plain[FILES_KEY] = file_digests(folder)
    plain[SEAL_KEY] = _seal(plain)
    return write_json_atomic(folder / METADATA_FILE, plain)


def read_metadata(folder: Path, bundle_format: int) -> dict:
    """The content of ``folder/metadata.json`` if it is a saved model of format ``bundle_format``
    (not yet verified: :func:`verify_files`); :class:`ModelLoadError` in one line otherwise."""
    path = Path(folder) / METADATA_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot be read as JSON ({_reason(exc)}); the model folder "
                             "is damaged: copy it again or retrain the model") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise ModelLoadError(f"{path}: not the metadata of a model saved by this project "
                             "(no 'format'); pass a folder models/<name> written by its training")
    found = meta["format"]
    if found != bundle_format:
        if isinstance(found, int) and found < bundle_format:
            deliverable = meta.get("deliverable")
            how = (f"retrain it with `nox -s {deliverable}`"
                   if deliverable in ("deliverable1", "deliverable2") else RETRAIN)
            raise ModelLoadError(
                f"{folder} was saved by an older version of the project (saved-model format "
                f"{found}, its parts pickled with joblib, which can run code when loaded): it is "
                f"not loaded; {how}")
        raise ModelLoadError(f"{folder}: saved-model format {found!r}, this project reads "
                             f"format {bundle_format}; retrain the model.")
    return meta


def verify_files(folder: Path, meta: dict, required=()) -> None:
    """Check ``folder`` against its metadata ``meta``; :class:`ModelLoadError` naming the file if
    the metadata was edited, a recorded file is missing, truncated or altered, a ``required``
    file is not recorded, or a file is not recorded at all."""
    folder = Path(folder)
    where = folder / METADATA_FILE
    recorded = meta.get(FILES_KEY)
    if meta.get(SEAL_KEY) != _seal(meta):
        raise ModelLoadError(f"{where}: edited after the model was saved (its content no longer "
                             "matches the sha256 recorded in it); restore the folder or retrain")
    if not isinstance(recorded, dict) or not all(
            isinstance(d, dict) and isinstance(d.get("sha256"), str) and isinstance(d.get("bytes"), int)
            for d in recorded.values()):
        raise ModelLoadError(f"{where}: records no valid file digests; {RETRAIN}")
    for name in required:
        if name not in recorded:
            raise ModelLoadError(f"{folder / name}: the metadata records no such file although "
                                 f"the model needs it; {RETRAIN}")
    for name, digest in recorded.items():
        if Path(name).name != name or name in (".", "..", METADATA_FILE):
            raise ModelLoadError(f"{where}: records an invalid file name {name!r}")
        _check_file(folder / name, digest)
    try:
        unrecorded = [path for path in _part_paths(folder) if path.name not in recorded]
    except OSError as exc:
        raise ModelLoadError(f"{folder}: cannot be listed ({_reason(exc)})") from None
    if unrecorded:
        raise ModelLoadError(f"{unrecorded[0]}: not part of this model (metadata.json "
                             "does not record it; copied from another model?): remove it")


def _check_file(path: Path, digest: dict) -> None:
    """:class:`ModelLoadError` unless ``path`` has the recorded size and sha256."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (the model folder is incomplete): copy it "
                             "again or retrain the model")
    try:
        size = path.stat().st_size
        same = size == digest["bytes"] and sha256_file(path) == digest["sha256"]
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({_reason(exc)})") from None
    if size < digest["bytes"]:
        raise ModelLoadError(f"{path}: truncated or replaced ({size} of the {digest['bytes']} "
                             "bytes recorded when the model was saved): copy the model folder "
                             "again or retrain the model")
    if not same:
        raise ModelLoadError(f"{path}: altered or from another model (its sha256 differs from "
                             "the one recorded when this model was saved): restore the folder "
                             "or retrain the model")
