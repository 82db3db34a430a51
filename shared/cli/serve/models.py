"""The two models the page asks, loaded once: deliverable 2's validation picks.

``<models>/picks.json`` = ``{"fusion": <name>, "tabular": <name>}`` names them (``--fusion`` /
``--tabular`` override it); each is a folder :func:`shared.models.saved.load_bundle` loads.

Photo features are computed by backbones built once (:attr:`ServedModels.backbones`, passed to
``ModelBundle.predict_log``) and written to the request's own feature folder (removed with it),
never to the user's feature cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.features.cache import held_backbone
from shared.models.bundle import ModelBundle
from shared.models.saved import load_bundle

PICKS_FILE = "picks.json"
SLOTS = ("fusion", "tabular")
PHOTO_INPUTS = ("image", "image_features")


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


@dataclass
class ServedModels:
    """The two models the page asks: ``fusion`` (deliverable 2's validation pick) and
    ``tabular`` (the tabular-only pick), with their folder names in ``picks``."""

    fusion: ModelBundle
    tabular: ModelBundle
    picks: dict
    backbones: dict

    def by_slot(self) -> dict[str, ModelBundle]:
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
        loaded[slot] = load_bundle(folder)
        for bundle in (loaded[slot], *member_bundles(loaded[slot])):
            if bundle.backbone and "image_features" in bundle.inputs:  # built now, not per request
                held_backbone(backbones, bundle.backbone, bundle.image_size)
    return ServedModels(loaded["fusion"], loaded["tabular"], dict(picks), backbones)
