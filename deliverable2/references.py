"""The deliverable-1 models deliverable 2 compares against (and builds on): load them, or train them.

Deliverable 2 needs, on the same split and the same usable rows:

* the tabular-only references ``mlp`` and ``hgb``;
* the photo-only references: the deliverable-1 image models, of which the best *on validation* is
  the image-only reference; the best transfer model (``transfer_frozen`` or ``transfer_finetuned``)
  is also the image branch of ``late_fusion_from_branches``.

A saved model is reused only when it loads and was trained on this split of this data under this
budget: its metadata (``trained_on``, written when it was saved) must equal this run's
:func:`shared.experiment.provenance` (split fingerprint, seed and parts, the sha256 of
``listings.csv``, feature set, budget). A model saved without them, on another split, another
version of the data or under another budget (a smoke run's) is retrained, and ``origin`` says
why. The comparison does not depend on file dates (which a copy or a checkout changes).

Anything missing or stale is trained with :func:`shared.models.train_single_source` (which
evaluates and saves it);
``cnn_scratch`` is used when present but never trained here (it is far behind transfer learning in
deliverable 1 and would cost minutes).
"""

from __future__ import annotations

from dataclasses import dataclass, field


from shared.bundles import ModelBundle, ModelLoadError
from shared.evaluation import mae
from shared.experiment import provenance, provenance_difference
from shared.models import train_single_source
from shared.training import under_strategy

TABULAR_REFERENCES = ("mlp", "tabular_net", "hgb")
TRANSFER_MODELS = ("transfer_frozen", "transfer_finetuned")
IMAGE_REFERENCES = ("cnn_scratch", *TRANSFER_MODELS)


@dataclass
class References:
    """The deliverable-1 bundles in use, and how each was obtained."""

    bundles: dict[str, ModelBundle]
    origin: dict[str, str]               # name -> "reused" | "trained" | reason it was retrained
    val_mae: dict[str, float] = field(default_factory=dict)   # image candidates, EUR
    best_image: str = ""                 # best deliverable-1 image model on validation
    best_transfer: str = ""              # best transfer model on validation (fusion image branch)


def _try_load(directory, name: str):
    if not (directory / name / "metadata.json").is_file():
        return None, "missing"
    try:
        return ModelBundle.load(directory / name), "reused"
    except ModelLoadError as exc:  # the reason, without this machine's path to the models
        return None, "retrained: " + str(exc).replace(str(directory / name), f"models/{name}")


@under_strategy
def load_or_train(data, cfg, exp, log=print, train_missing=train_single_source) -> References:
    """Load the deliverable-1 references from ``cfg.models_dir`` or train the missing or stale
    ones (``train_missing(exp, names, log=...)``, which evaluates and saves them); every reference
    ends up in ``exp.results`` with validation and test metrics on this split (image models: only
    the best on validation, the image-only reference)."""
    current = provenance(data, cfg)
    bundles, origin = {}, {}
    for name in (*TABULAR_REFERENCES, *IMAGE_REFERENCES):
        bundle, how = _try_load(cfg.models_dir, name)
        reason = provenance_difference(bundle.trained_on, current) if bundle is not None else None
        if reason is not None:
            optional = name not in (*TABULAR_REFERENCES, *TRANSFER_MODELS)  # never trained here
            bundle, how = None, ("not used: " if optional else "retrained: ") + reason
        if bundle is not None:
            bundles[name] = bundle
        origin[name] = how
    # cnn_scratch is optional; a stale transfer_finetuned needs its transfer_frozen retrained too.
    missing = [n for n in (*TABULAR_REFERENCES, *TRANSFER_MODELS) if n not in bundles]
    if "transfer_finetuned" in missing and "transfer_frozen" not in missing:
        missing.append("transfer_frozen")
    if missing:
        log(f"training the missing deliverable-1 models: {', '.join(missing)}")
        train_missing(exp, missing, log=log)
        for name in missing:
            bundles[name] = ModelBundle.load(cfg.models_dir / name)
            origin[name] = {"missing": "trained", "reused": "retrained with transfer_finetuned"}.get(
                origin[name], origin[name])
    refs = References(bundles, origin)

    # Tabular references: evaluated on this split (those just trained already are).
    for name in TABULAR_REFERENCES:
        if name not in exp.results:
            exp.evaluate_reused(bundles[name])
    # Image references: the best on validation; the best transfer model is the fusion branch.
    val_pred = {}
    for name in IMAGE_REFERENCES:
        if name in bundles:
            val_pred[name] = (exp.predictions[name]["val"] if name in exp.predictions
                              else bundles[name].predict_eur(data.parts["val"]))
            refs.val_mae[name] = mae(data.y_eur("val"), val_pred[name])
    refs.best_image = min(refs.val_mae, key=refs.val_mae.get)
    refs.best_transfer = min(TRANSFER_MODELS, key=refs.val_mae.get)
    for name in IMAGE_REFERENCES:
        if name != refs.best_image:
            exp.forget(name)
        elif name not in exp.results:
            exp.evaluate_reused(bundles[name], val_pred_eur=val_pred[name])
    return refs
