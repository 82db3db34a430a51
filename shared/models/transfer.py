"""Transfer learning from an ImageNet backbone: ``transfer_frozen`` and ``transfer_finetuned``.

``transfer_frozen``
    The backbone (default EfficientNet-Lite0, see :mod:`shared.backbones`) is frozen, so each
    photo's 1280-d pooled feature vector never changes: it is computed once and cached on disk
    (:mod:`shared.feature_cache`). The head is a *linear probe*: standardised features -> log
    price, ridge regression solved in closed form (one SVD gives every penalty of the grid) with
    the penalty chosen on validation. It fits in well under a second, so a second run is as fast
    as reading the cache.

``transfer_finetuned``
    The frozen model is assembled end to end (photo -> backbone -> the same standardisation as a
    fixed Normalization layer -> the trained head), then the top blocks of the backbone are
    unfrozen and trained together with the head at a low learning rate on augmented photos.
    Batch-norm layers stay frozen and run in inference mode: with batches of 32 their statistics
    would be noisier than ImageNet's and would wreck the pretrained features.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from sklearn.preprocessing import StandardScaler

from shared import features as feats
from shared.split import PART_NAMES as PARTS
from shared.backbones import DEFAULT_BACKBONE, build_backbone, top_block_layers
from shared.feature_cache import extract_features
from shared.images import make_image_dataset
from shared.bundles import ModelBundle
from shared.devices import global_batch_size
from shared.experiment import Trained
from shared.training import compile_regressor, fit_regressor, stopped_by, under_strategy
from shared.models.layers import linear_head
from shared.ridge import ridge_path
from shared.search import Fitted, tune_on_validation

#: Ridge penalties tried for the linear head (on the summed squared error of the standardised
#: 1280 correlated features; the Keras equivalent is l2 = alpha / n_train, with n_train ~6,200
#: on the 10k set).
HEAD_ALPHAS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
FINETUNE_LR = 3e-5  # learning rate of fine-tuning: low, the pretrained weights move little


def default_image_size(cfg) -> int:
    """Photo side (px) of the transfer models, reused by the fusion models
    (``cfg.budget.transfer_image_size``)."""
    return cfg.budget.transfer_image_size


@under_strategy
def backbone_features(data, cfg, backbone: str, image_size: int) -> tuple[dict, dict]:
    """Cached backbone features per part: ({"train": (n, D), ...}, extraction stats)."""
    all_paths = [p for part in PARTS for p in data.paths(part)]
    vectors, stats = extract_features(all_paths, backbone, image_size)
    sizes = np.cumsum([0] + [len(data.paths(p)) for p in PARTS])
    parts = {p: vectors[sizes[i]:sizes[i + 1]] for i, p in enumerate(PARTS)}
    return parts, stats


def probe_candidates(cfg, backbone: str = DEFAULT_BACKBONE,
                     image_size: int | None = None) -> list[tuple[str, int]]:
    """(backbone, photo side px) pairs the linear probe tries: the default first (the one
    fine-tuning starts from), then ``cfg.budget.probe_backbones``."""
    first = (backbone, image_size or default_image_size(cfg))
    return [first, *(tuple(c) for c in cfg.budget.probe_backbones if tuple(c) != first)]


def _fit_probe(data, cfg, backbone: str, image_size: int) -> dict:
    """Linear probe of one backbone: standardised cached features -> ridge, penalty chosen on
    validation. {"bundle", "predict", "val_mae", "stats"}."""
    raw, stats = backbone_features(data, cfg, backbone, image_size)
    scaler = StandardScaler().fit(raw["train"])  # training rows only
    X = {part: scaler.transform(v).astype(np.float32) for part, v in raw.items()}
    y_train, n_train = data.y_log("train"), len(raw["train"])
    coefs, intercept = ridge_path(X["train"], y_train, HEAD_ALPHAS)
    heads = {alpha: coef for alpha, coef in zip(HEAD_ALPHAS, coefs, strict=True)}

    def build_and_fit(params):
        return Fitted(linear_head(heads[params["alpha"]], intercept, l2=params["alpha"] / n_train,
                                  name="transfer_head"))

    search = tune_on_validation(
        build_and_fit, [{"alpha": alpha} for alpha in HEAD_ALPHAS],
        lambda m, _: feats.price_from_log(m(X["val"], training=False).numpy()), data.y_eur("val"))
    model, params, trials = search.model, search.params, search.trials
    bundle = ModelBundle("transfer_frozen", ("image_features",), model, image_reducer=scaler,
                         backbone=backbone, image_size=image_size, deliverable="deliverable1",
                         params={"head": "linear (ridge, closed form)", **params,
                                 "l2_keras": params["alpha"] / n_train, "trials": trials,
                                 "backbone": backbone, "image_size": image_size,
                                 "features_cached": stats["cached"],
                                 "features_computed": stats["computed"]})
    return {"bundle": bundle, "stats": stats, "val_mae": min(t["val_mae"] for t in trials),
            "predict": lambda part: feats.price_from_log(model(X[part], training=False).numpy())}


@under_strategy
def train_transfer_frozen(data, cfg, backbone: str = DEFAULT_BACKBONE,
                          image_size: int | None = None) -> Trained:
    """Linear probe on cached features of each backbone of :func:`probe_candidates`; validation
    picks the backbone. ``extra``: "extraction" (feature-cache stats, summed over backbones),
    "finetune_start" (the first candidate's probe, where fine-tuning starts) and
    "backbone_trials" (validation MAE per backbone)."""
    start = time.perf_counter()
    probes = {c: _fit_probe(data, cfg, *c) for c in probe_candidates(cfg, backbone, image_size)}
    chosen = min(probes, key=lambda c: probes[c]["val_mae"])
    trials = [{"backbone": b, "image_size": size, "val_mae": round(p["val_mae"], 3),
               "extraction_seconds": round(p["stats"]["seconds"], 1),
               "features_computed": p["stats"]["computed"]} for (b, size), p in probes.items()]
    bundle = probes[chosen]["bundle"]
    bundle.params["backbone_trials"] = trials
    stats = {key: sum(p["stats"][key] for p in probes.values())
             for key in ("computed", "cached", "seconds")}
    first = next(iter(probes.values()))["bundle"]
    return Trained(bundle, time.perf_counter() - start, predict=probes[chosen]["predict"],
                   extra={"extraction": stats, "finetune_start": first, "backbone_trials": trials})


def feature_standardisation(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, variance) of the raw backbone features a transfer model standardises with, each (D,);
    None when the bundle holds neither a fitted scaler nor a ``feature_standardisation`` layer."""
    scaler = bundle.image_reducer
    if scaler is not None and hasattr(scaler, "mean_") and hasattr(scaler, "var_"):
        return np.asarray(scaler.mean_), np.asarray(scaler.var_)
    if bundle.is_keras:
        try:
            layer = bundle.estimator.get_layer("feature_standardisation")
        except ValueError:
            return None
        mean = getattr(layer, "mean", None)
        var = getattr(layer, "variance", None)
        if mean is None or var is None:  # built from given statistics: they are not weights
            mean, var = layer.input_mean, layer.input_variance
        return (np.asarray(keras_to_numpy(mean), dtype=np.float64).reshape(-1),
                np.asarray(keras_to_numpy(var), dtype=np.float64).reshape(-1))
    return None


def keras_to_numpy(value) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def assemble_end_to_end(frozen: ModelBundle, weights: str | None = "imagenet") -> keras.Model:
    """photo (size, size, 3) [0, 255] -> backbone -> fixed standardisation -> head -> log price."""
    size = frozen.image_size
    backbone = build_backbone(frozen.backbone, image_size=size, weights=weights)
    scaler = frozen.image_reducer
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # Keras 3 lets the outer training flag override this one; batch norm nevertheless stays in
    # inference mode because unfreeze_top keeps every BatchNormalization layer frozen (a frozen
    # BN layer always runs in inference mode), and the backbone has no dropout.
    x = backbone(inputs, training=False)
    x = keras.layers.Normalization(mean=scaler.mean_, variance=scaler.var_,
                                   name="feature_standardisation")(x)
    outputs = frozen.estimator(x)
    return keras.Model(inputs, outputs, name=f"{frozen.backbone}_regressor")


def unfreeze_top(model: keras.Model, backbone_name: str, n_blocks: int) -> int:
    """Make the top ``n_blocks`` of the backbone trainable (batch norm excluded); returns the
    number of trainable weights tensors in the backbone."""
    backbone = model.get_layer(backbone_name)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    for layer in top_block_layers(backbone, backbone_name, n_blocks):
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
    return len(backbone.trainable_weights)


@under_strategy
def train_transfer_finetuned(data, cfg, frozen: ModelBundle, epochs: int | None = None,
                             learning_rate: float = FINETUNE_LR) -> Trained:
    """Fine-tune ``frozen`` end to end (``epochs``: default ``cfg.budget.finetune_epochs``)."""
    n_blocks = cfg.budget.finetune_blocks
    epochs = epochs or cfg.budget.finetune_epochs
    batch_size = cfg.budget.photo_batch_size
    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    model = assemble_end_to_end(frozen)
    n_trainable = unfreeze_top(model, frozen.backbone, n_blocks)
    compile_regressor(model, learning_rate)
    size = frozen.image_size
    train = make_image_dataset(data.paths("train"), data.y_log("train"), image_size=size,
                               batch_size=global_batch_size(batch_size, cfg.replicas), shuffle=True, augment=True,
                               seed=cfg.seed)
    val = make_image_dataset(data.paths("val"), data.y_log("val"), image_size=size,
                             batch_size=global_batch_size(batch_size, cfg.replicas))
    history = fit_regressor(model, train, val, epochs=epochs, patience=3)
    params = {"backbone": frozen.backbone, "unfrozen_top_blocks": n_blocks,
              "trainable_backbone_tensors": n_trainable, "learning_rate": learning_rate,
              "epochs_run": len(history["loss"]), "max_epochs": epochs,
              "stopped_by": stopped_by(history, epochs), "batchnorm": "frozen, inference mode",
              "augmentation": "flip, brightness, contrast, zoom"}
    bundle = ModelBundle("transfer_finetuned", ("image",), model, backbone=frozen.backbone,
                         image_size=size, params=params, deliverable="deliverable1")
    return Trained(bundle, time.perf_counter() - start, history=history)
