"""The two models the page asks, loaded once: deliverable 2's validation picks.

``<models>/picks.json`` = ``{"fusion": <name>, "tabular": <name>}`` names them (``--fusion`` /
``--tabular`` override it); each is a folder :func:`shared.models.saved.load_bundle` loads.

Photo features are computed by a backbone built once per (backbone, input size) and kept, and
written to a feature folder of the request (removed with it), never to the user's feature cache:
each loaded bundle, and any bundle its estimator holds (a blend's members), is served as a
:class:`ServedBundle`, whose :meth:`~ServedBundle.image_feature_matrix` passes ``model=`` and
``cache_root=`` to :func:`shared.features.cache.extract_features` (what
:meth:`shared.models.bundle.ModelBundle.image_feature_matrix` does with neither). As a safety
net, :func:`no_user_features` deletes any feature file of the uploaded photo that still appears
in the user's cache during an estimate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.models.bundle import ModelBundle
from shared.models.saved import load_bundle

PICKS_FILE = "picks.json"
SLOTS = ("fusion", "tabular")
PHOTO_INPUTS = ("image", "image_features")
#: The feature folder of a request: beside its one-listing dataset directory.
FEATURES_FOLDER = "features"


class ServeSetupError(RuntimeError):
    """The page cannot start (no models folder, no picks); the message says what to run."""


def read_picks(models_dir: Path, overrides: dict | None = None) -> dict[str, str]:
    """{"fusion": name, "tabular": name} from ``models_dir/picks.json``, each replaced by a
    non-empty value of ``overrides``; :class:`ServeSetupError` naming the command to run."""
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    picks: dict = {}
    path = Path(models_dir) / PICKS_FILE
    if len(overrides) < len(SLOTS):
        if not Path(models_dir).is_dir():
            raise ServeSetupError(f"no models folder at {models_dir}: run `nox -s deliverable2` "
                                  "first (or give --models-dir)")
        try:
            picks = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ServeSetupError(f"{path} not found: run `nox -s deliverable2` first (it writes "
                                  "the validation picks), or name the models with --fusion and "
                                  "--tabular") from None
        except ValueError as exc:
            raise ServeSetupError(f"{path} is not JSON ({exc}): run `nox -s deliverable2` "
                                  "again") from None
    picks = {**(picks if isinstance(picks, dict) else {}), **overrides}
    missing = [slot for slot in SLOTS if not isinstance(picks.get(slot), str) or not picks[slot]]
    if missing:
        raise ServeSetupError(f"{path} names no {' and no '.join(missing)} model: run "
                              "`nox -s deliverable2` again")
    for slot in SLOTS:
        if Path(picks[slot]).name != picks[slot] or picks[slot].startswith("."):
            raise ServeSetupError(f"{path}: {slot} model {picks[slot]!r} is not a folder name")
    return {slot: picks[slot] for slot in SLOTS}


def needs_photo(bundle: ModelBundle) -> bool:
    """Whether ``bundle`` reads the listing's photo (its own inputs or a member's)."""
    return bool(set(bundle.inputs) & set(PHOTO_INPUTS)) or any(
        needs_photo(member) for member in member_bundles(bundle))


def member_bundles(bundle: ModelBundle) -> list[ModelBundle]:
    """The bundles ``bundle``'s estimator holds (a blend's members), one level down."""
    found = []
    for value in getattr(bundle.estimator, "__dict__", {}).values():
        values = (value.values() if isinstance(value, dict)
                  else value if isinstance(value, (list, tuple)) else [value])
        found += [v for v in values if isinstance(v, ModelBundle)]
    return found


class ServedBundle(ModelBundle):
    """A loaded bundle whose photo features use a backbone built once and the request's feature
    folder (``<dataset dir>/../features``), deleted with the request."""

    backbones: dict  # (backbone name, input size) -> Keras feature extractor, shared

    def image_feature_matrix(self, dataset, progress: bool = False) -> np.ndarray:
        """(n, d_img) float32, as :meth:`ModelBundle.image_feature_matrix` computes it."""
        from shared.features.cache import extract_features, flip_average

        model = backbone_model(self.backbones, self.backbone, self.image_size)
        root = Path(dataset.data_dir).parent / FEATURES_FOLDER
        paths = list(dataset.image_paths)
        vectors, _ = extract_features(paths, self.backbone, self.image_size, cache_root=root,
                                      progress=False, model=model)
        if self.flip_tta:
            mirrored, _ = extract_features(paths, self.backbone, self.image_size, cache_root=root,
                                           progress=False, model=model, flip=True)
            vectors = flip_average(vectors, mirrored)
        if self.image_reducer is not None:
            vectors = self.image_reducer.transform(vectors)
        return np.asarray(vectors, dtype=np.float32)


def backbone_model(backbones: dict, name: str, image_size: int):
    """The backbone ``name`` at ``image_size`` px, built on first use and kept in ``backbones``."""
    key = (name, int(image_size))
    if key not in backbones:
        from shared.features.backbones import build_backbone

        backbones[key] = build_backbone(name, image_size=int(image_size))
    return backbones[key]


def serve(bundle: ModelBundle, backbones: dict) -> ServedBundle:
    """``bundle`` as a :class:`ServedBundle` sharing ``backbones``; the bundles its estimator
    holds are replaced by served ones too (in the loaded estimator, never on disk)."""
    for name, value in list(getattr(bundle.estimator, "__dict__", {}).items()):
        if isinstance(value, ModelBundle):
            setattr(bundle.estimator, name, serve(value, backbones))
        elif isinstance(value, dict) and any(isinstance(v, ModelBundle) for v in value.values()):
            value.update({k: serve(v, backbones) for k, v in value.items()
                          if isinstance(v, ModelBundle)})
        elif isinstance(value, list) and any(isinstance(v, ModelBundle) for v in value):
            value[:] = [serve(v, backbones) if isinstance(v, ModelBundle) else v for v in value]
    if isinstance(bundle, ServedBundle):
        return bundle
    served = ServedBundle(**{f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle)})
    served.backbones = backbones
    if served.backbone and "image_features" in served.inputs:
        backbone_model(backbones, served.backbone, served.image_size)  # built now, not on a request
    return served


@contextlib.contextmanager
def no_user_features(bundles, photo: bytes | None):
    """Safety net around an estimate: any backbone feature file of ``photo`` that appears in the
    user's feature cache during the block (a bundle computing features some other way than
    :class:`ServedBundle`) is deleted afterwards; files that were there before are kept."""
    from shared.features.cache import feature_cache_dir

    keys = {(b.backbone, int(b.image_size)) for b in _with_members(bundles)
            if b.backbone and b.image_size and "image_features" in b.inputs}
    files = []
    if photo is not None and keys:
        sha = hashlib.sha256(photo).hexdigest()  # the cache's key: the photo file's bytes
        files = [feature_cache_dir(name, size, flip=flip) / sha[:2] / f"{sha}.npy"
                 for name, size in sorted(keys) for flip in (False, True)]
    existed = {f for f in files if f.exists()}
    try:
        yield
    finally:
        for path in files:
            if path not in existed:
                path.unlink(missing_ok=True)


def _with_members(bundles) -> list[ModelBundle]:
    out = []
    for bundle in bundles:
        out += [bundle, *_with_members(member_bundles(bundle))]
    return out


@dataclass
class ServedModels:
    """The two models the page asks: ``fusion`` (deliverable 2's validation pick) and
    ``tabular`` (the tabular-only pick), with their folder names in ``picks``."""

    fusion: ServedBundle
    tabular: ServedBundle
    picks: dict
    backbones: dict

    def by_slot(self) -> dict[str, ServedBundle]:
        return {"fusion": self.fusion, "tabular": self.tabular}


def load_models(models_dir: Path, picks: dict[str, str]) -> ServedModels:
    """Load both picks from ``models_dir`` (:class:`shared.models.files.ModelLoadError` when one
    cannot be used) and build the backbones their photo features need."""
    backbones: dict = {}
    loaded = {}
    for slot in SLOTS:
        folder = Path(models_dir) / picks[slot]
        if not folder.is_dir():
            raise ServeSetupError(f"{PICKS_FILE} names {slot} model {picks[slot]!r}, but "
                                  f"{folder} does not exist: run `nox -s deliverable2` again")
        loaded[slot] = serve(load_bundle(folder), backbones)
    return ServedModels(loaded["fusion"], loaded["tabular"], dict(picks), backbones)
