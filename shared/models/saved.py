"""Saved model folders: :func:`save_bundle` writes one, :func:`load_bundle` reads it back.

``models/<name>/``: ``metadata.json``, ``model.keras`` or ``estimator.skops`` (a blend:
``estimator.json``), ``preprocessor.skops`` / ``image_reducer.skops`` when used and
``intervals.json`` when fitted. The metadata records the family (which says what the parts may
hold), the feature set and what the model was trained on (``trained_on``). Loading runs no code
from the folder (:mod:`shared.models.files`) and imports only the model's own family, so a
gradient boosting model loads without TensorFlow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.evaluation.intervals import IntervalError, load_calibration, save_calibration
from shared.features import tabular as feats
from shared.models import registry
from shared.models.bundle import BUNDLE_FORMAT, ModelBundle
from shared.io import write_json_atomic
from shared.models.files import (SEAL_KEY, ModelLoadError, base_trusted_types, load_keras,
                                 load_part, read_metadata, save_part, type_name, verify_files,
                                 write_metadata)

#: A composite's own file: what it is made of (a blend: its members and weight).
COMPOSITE_FILE = "estimator.json"

__all__ = ["ModelLoadError", "load_bundle", "save_bundle", "trusted_types"]


def _family(name: str, where):
    """The registry family ``name`` (None for ""), or :class:`ModelLoadError`."""
    if not name:
        return None
    try:
        return registry.family(name)
    except KeyError:
        raise ModelLoadError(f"{where}: saved by model family {name!r}, which this version of the "
                             "project does not have; retrain the model") from None


def trusted_types(family_name: str = "") -> frozenset[str]:
    """What a saved model of the family may hold beyond skops' defaults.<<"""
    fam = _family(family_name, f"family {family_name!r}")
    own = map(type_name, fam.trusted_types) if fam is not None else ()
    return base_trusted_types() | frozenset(own)


def save_bundle(bundle: ModelBundle, directory) -> Path:
    """Write ``bundle`` into ``directory``, replaced as a whole (never half old, half new).<<"""
    directory = Path(directory)
    trusted = trusted_types(bundle.family)
    staging = directory.with_name(f".{directory.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if bundle.is_keras:
        bundle.estimator.save(staging / "model.keras")
    elif hasattr(bundle.estimator, "to_json"):  # a composite (a blend): its members by reference
        write_json_atomic(staging / COMPOSITE_FILE, bundle.estimator.to_json(
            lambda name: member_digest(directory.parent, name)))
    else:
        save_part(bundle.estimator, staging / "estimator.skops", trusted)
    for part, obj in (("preprocessor", bundle.preprocessor), ("image_reducer", bundle.image_reducer)):
        if obj is not None:
            save_part(obj, staging / f"{part}.skops", trusted)
    if bundle.intervals is not None:
        save_calibration(bundle.intervals, staging)
    write_metadata(staging, bundle.metadata())  # last: records every file's sha256
    backup = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if directory.exists():
        directory.rename(backup)
    staging.rename(directory)
    shutil.rmtree(backup, ignore_errors=True)
    return directory


def _read_checked_metadata(directory: Path) -> dict:
    if not (directory / "metadata.json").is_file():
        raise ModelLoadError(f"{directory} is not a saved model (no metadata.json). "
                             "Train one with `nox -s deliverable1` or `nox -s deliverable2`.")
    meta = read_metadata(directory, BUNDLE_FORMAT)
    if meta.get("feature_set_version") != feats.FEATURE_SET_VERSION:
        raise ModelLoadError(
            f"{directory} was saved with feature set {meta.get('feature_set_version')!r}, but "
            f"this version of the project builds {feats.FEATURE_SET_VERSION!r}: the inputs "
            "differ, so its predictions would be wrong. Retrain it with the current project.")
    required = {"keras": "model.keras", "composite": COMPOSITE_FILE}.get(meta.get("estimator"),
                                                                         "estimator.skops")
    verify_files(directory, meta, required=[required])
    return meta


def load_bundle(directory) -> ModelBundle:
    """Load a saved bundle; :class:`ModelLoadError` with the reason when it cannot be used."""
    directory = Path(directory)
    meta = _read_checked_metadata(directory)
    family = _family(meta.get("family", ""), directory)
    trusted = trusted_types(meta.get("family", ""))

    def part(name):  # verified: present iff recorded
        path = directory / f"{name}.skops"
        return load_part(path, trusted) if path.is_file() else None

    preprocessor = part("preprocessor")
    if (preprocessor is not None
            and list(map(str, preprocessor.get_feature_names_out())) != meta.get("feature_names")):
        raise ModelLoadError(f"{directory}: the saved preprocessor's feature names do not "
                             "match its metadata; the model directory is inconsistent.")
    if meta.get("estimator") == "keras":
        estimator = load_keras(directory / "model.keras",
                               family.custom_objects if family is not None else None)
    elif meta.get("estimator") == "composite":
        estimator = _load_composite(directory, family)
    else:
        estimator = part("estimator")
    try:
        intervals = load_calibration(directory)
    except IntervalError as exc:
        raise ModelLoadError(f"{exc}; retrain the model") from None
    return ModelBundle(name=meta["name"], inputs=tuple(meta["inputs"]), estimator=estimator,
                       preprocessor=preprocessor, image_reducer=part("image_reducer"),
                       backbone=meta.get("backbone"), image_size=meta.get("image_size"),
                       flip_tta=bool(meta.get("flip_tta", False)), params=meta.get("params", {}),
                       deliverable=meta.get("deliverable", ""), intervals=intervals,
                       trained_on=meta.get("trained_on", {}), family=meta.get("family", ""))


def _load_composite(directory: Path, family):
    """The estimator of a composite folder (a blend), rebuilt by its family from
    ``estimator.json`` and the member folders beside ``directory``."""
    if family is None or family.load_composite is None:
        raise ModelLoadError(f"{directory}: a composite model of no family that rebuilds one; "
                             "retrain it")
    try:
        data = json.loads((directory / COMPOSITE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{directory / COMPOSITE_FILE}: cannot be read ({exc})") from None
    return family.load_composite(data, directory.parent, load_member)


def load_member(models_dir: Path, name: str, digest: str) -> ModelBundle:
    """A composite's member ``models_dir/<name>``, refused unless its ``metadata.json`` has the
    sha256 ``digest`` recorded when the composite was saved."""
    folder = Path(models_dir) / name
    if Path(name).name != name or name.startswith("."):
        raise ModelLoadError(f"{models_dir}: a member name {name!r} is not a folder name")
    if not (folder / "metadata.json").is_file():
        raise ModelLoadError(f"{folder}: missing, but a blend saved beside it needs it as a "
                             "member; retrain both with `nox -s deliverable2`")
    found = read_metadata(folder, BUNDLE_FORMAT).get(SEAL_KEY)
    if found != digest:
        raise ModelLoadError(f"{folder}: not the model the blend beside it was saved with "
                             f"(metadata sha256 {str(found)[:12]}..., recorded "
                             f"{str(digest)[:12]}...): retrain both with `nox -s deliverable2`")
    return load_bundle(folder)


def member_digest(models_dir: Path, name: str) -> str:
    """The ``metadata_sha256`` of the saved model ``models_dir/<name>``.<<"""
    return read_metadata(Path(models_dir) / name, BUNDLE_FORMAT)[SEAL_KEY]
