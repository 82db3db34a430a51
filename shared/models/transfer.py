"""Transfer learning from an ImageNet backbone: ``transfer_frozen`` and ``transfer_finetuned``.

``transfer_frozen``
    The backbone (default EfficientNet-Lite0, see :mod:`shared.backbones`) is frozen, so each
    photo's 1280-d pooled feature vector never changes: it is computed once and cached on disk
    (:mod:`shared.feature_cache`). Validation chooses among heads on these features:

    * backbone: Lite0 at 224 px and the budget's ``probe_backbones`` (Lite2 at 260 px);
    * head: a *linear probe* (standardised features -> log price, ridge regression solved in
      closed form, one SVD for every penalty of the grid, penalty chosen on validation) or a
      non-linear one (:func:`shared.models.layers.photo_mlp_head`, early stopping on validation);
    * flip: without, or trained on every training photo *and* its mirror image and predicting
      from the average of the two feature vectors (test-time flip averaging; the mirrored
      features have their own cache folder).

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
from shared.models.layers import linear_head, photo_mlp_head
from shared.reporting import log_line
from shared.ridge import ridge_path
from shared.search import Fitted, tune_on_validation

#: Ridge penalties tried for the linear head (on the summed squared error of the standardised
#: 1280 correlated features; the Keras equivalent is l2 = alpha / n_train, with n_train ~6,200
#: on the 10k set).
HEAD_ALPHAS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
#: The non-linear head (:func:`shared.models.layers.photo_mlp_head`) and how it is trained.
MLP_HEAD = {"hidden": 256, "input_dropout": 0.2, "dropout": 0.5}
MLP_HEAD_LR, MLP_HEAD_BATCH, MLP_HEAD_PATIENCE = 1e-3, 128, 8
FINETUNE_LR = 3e-5  # learning rate of fine-tuning: low, the pretrained weights move little


def default_image_size(cfg) -> int:
    """Photo side (px) of the transfer models, reused by the fusion models
    (``cfg.budget.transfer_image_size``)."""
    return cfg.budget.transfer_image_size


@under_strategy
def backbone_features(data, cfg, backbone: str, image_size: int,
                      flip: bool = False) -> tuple[dict, dict]:
    """Cached backbone features per part: ({"train": (n, D), ...}, extraction stats); ``flip``:
    of the horizontally mirrored photos."""
    all_paths = [p for part in PARTS for p in data.paths(part)]
    vectors, stats = extract_features(all_paths, backbone, image_size, flip=flip)
    sizes = np.cumsum([0] + [len(data.paths(p)) for p in PARTS])
    parts = {p: vectors[sizes[i]:sizes[i + 1]] for i, p in enumerate(PARTS)}
    return parts, stats


def probe_candidates(cfg, backbone: str = DEFAULT_BACKBONE,
                     image_size: int | None = None) -> list[tuple[str, int]]:
    """(backbone, photo side px) pairs the heads are tried on: the default first (the one
    fine-tuning starts from), then ``cfg.budget.probe_backbones``."""
    first = (backbone, image_size or default_image_size(cfg))
    return [first, *(tuple(c) for c in cfg.budget.probe_backbones if tuple(c) != first)]


def head_inputs(plain: dict, mirrored: dict | None, y_train: np.ndarray):
    """(training matrix, training targets, {part: matrix to predict from}) of one flip setting.

    Without ``mirrored``: the features as they are. With it: the training rows twice (photo, then
    mirror image; (2 n_train, D), targets repeated) and every part predicted from the average of
    the two vectors (flip test-time averaging).
    """
    if mirrored is None:
        return plain["train"], y_train, plain
    train = np.vstack([plain["train"], mirrored["train"]])
    return (train, np.concatenate([y_train, y_train]),
            {part: (plain[part] + mirrored[part]) / 2 for part in plain})


def _linear_head(x_train, y_train, x_val, y_val_eur, n_train: int):
    """Ridge on standardised features, penalty chosen on validation: (model, params)."""
    coefs, intercept = ridge_path(x_train, y_train, HEAD_ALPHAS)
    heads = {alpha: coef for alpha, coef in zip(HEAD_ALPHAS, coefs, strict=True)}

    def build_and_fit(params):
        return Fitted(linear_head(heads[params["alpha"]], intercept, l2=params["alpha"] / n_train,
                                  name="transfer_head"))

    search = tune_on_validation(
        build_and_fit, [{"alpha": alpha} for alpha in HEAD_ALPHAS],
        lambda m, _: feats.price_from_log(m(x_val, training=False).numpy()), y_val_eur)
    params = {"head": "linear (ridge, closed form)", **search.params,
              "l2_keras": search.params["alpha"] / n_train, "trials": search.trials}
    return search.model, params


def _mlp_head(x_train, y_train, x_val, y_val_log, cfg):
    """:func:`photo_mlp_head` trained with early stopping on validation: (model, params, history)."""
    keras.utils.set_random_seed(cfg.seed)
    model = photo_mlp_head(x_train.shape[1], float(np.mean(y_train)), **MLP_HEAD)
    compile_regressor(model, MLP_HEAD_LR)
    epochs = cfg.budget.photo_head_epochs
    history = fit_regressor(model, (x_train, y_train), (x_val, y_val_log), epochs=epochs,
                            patience=MLP_HEAD_PATIENCE, batch_size=MLP_HEAD_BATCH, seed=cfg.seed)
    params = {"head": "mlp", **MLP_HEAD, "learning_rate": MLP_HEAD_LR,
              "epochs_run": len(history["loss"]), "max_epochs": epochs,
              "stopped_by": stopped_by(history, epochs)}
    return model, params, history


def _fit_head(data, cfg, backbone: str, image_size: int, head: str, flip: bool,
              features: dict) -> dict:
    """One candidate of ``transfer_frozen``: {"bundle", "predict", "val_mae", "history"}.

    ``features``: {False: plain features per part, True: mirrored ones (when flips are tried)}.
    The standardisation is fitted on the training rows (with their mirror images when ``flip``).
    """
    x_train, y_train, x_parts = head_inputs(features[False], features[True] if flip else None,
                                            data.y_log("train"))
    scaler = StandardScaler().fit(x_train)  # training rows only
    X = {part: scaler.transform(v).astype(np.float32) for part, v in x_parts.items()}
    x_train = scaler.transform(x_train).astype(np.float32)
    history = None
    if head == "linear":
        model, params = _linear_head(x_train, y_train, X["val"], data.y_eur("val"),
                                        len(x_train))
    elif head == "mlp":
        model, params, history = _mlp_head(x_train, y_train, X["val"], data.y_log("val"), cfg)
    else:
        raise ValueError(f"unknown photo head {head!r}; expected 'linear' or 'mlp'")

    def predict(part):
        return feats.price_from_log(model.predict(X[part], batch_size=1024, verbose=0))

    val_mae = float(np.mean(np.abs(predict("val") - data.y_eur("val"))))
    # one view (the photo only, no mirror): what the head predicts inside an end-to-end model,
    # i.e. where fine-tuning starts from
    one_view = feats.price_from_log(model.predict(
        scaler.transform(features[False]["val"]).astype(np.float32), batch_size=1024, verbose=0))
    bundle = ModelBundle("transfer_frozen", ("image_features",), model, image_reducer=scaler,
                         backbone=backbone, image_size=image_size, flip_tta=flip,
                         deliverable="deliverable1",
                         params={**params, "backbone": backbone, "image_size": image_size,
                                 "flip_tta": flip, "val_mae": round(val_mae, 3),
                                 "val_mae_one_view": round(float(np.mean(np.abs(
                                     one_view - data.y_eur("val")))), 3)})
    return {"bundle": bundle, "predict": predict, "val_mae": val_mae, "history": history}


@under_strategy
def train_transfer_frozen(data, cfg, backbone: str = DEFAULT_BACKBONE,
                          image_size: int | None = None) -> Trained:
    """Every (backbone of :func:`probe_candidates`, head of ``cfg.budget.photo_heads``, flip of
    ``cfg.budget.photo_flips``) on the cached features; validation picks one. ``extra``:
    "extraction" (feature-cache stats, summed), "finetune_start" (the best candidate of the first
    backbone, where fine-tuning starts) and "candidates" (validation MAE of every one)."""
    start = time.perf_counter()
    flips = tuple(cfg.budget.photo_flips)
    stats, fitted, trials = [], {}, []
    for bb, size in probe_candidates(cfg, backbone, image_size):
        features = {}
        for flip in sorted({False, *flips}):
            features[flip], extraction = backbone_features(data, cfg, bb, size, flip=flip)
            stats.append(extraction)
        for head in cfg.budget.photo_heads:
            for flip in flips:
                key = (bb, size, head, flip)
                fitted[key] = _fit_head(data, cfg, bb, size, head, flip, features)
                p = fitted[key]["bundle"].params
                trials.append({"backbone": bb, "image_size": size, "head": head, "flip": flip,
                               "val_mae": round(fitted[key]["val_mae"], 3),
                               "stopped_by": p.get("stopped_by", "n/a (closed form)")})
                log_line(f"  transfer_frozen {bb}@{size} {head} head{' + flip' if flip else ''}: "
                         f"validation MAE {fitted[key]['val_mae']:.2f} EUR")
    chosen = min(fitted, key=lambda k: fitted[k]["val_mae"])
    first_backbone = probe_candidates(cfg, backbone, image_size)[0]
    finetune_start = min((k for k in fitted if k[:2] == first_backbone),
                         key=lambda k: fitted[k]["val_mae"])
    bundle = fitted[chosen]["bundle"]
    bundle.params.update({"candidates": trials,
                          "features_cached": sum(s["cached"] for s in stats),
                          "features_computed": sum(s["computed"] for s in stats)})
    extraction = {key: sum(s[key] for s in stats) for key in ("computed", "cached", "seconds")}
    return Trained(bundle, time.perf_counter() - start, predict=fitted[chosen]["predict"],
                   history=fitted[chosen]["history"],
                   extra={"extraction": extraction,
                          "finetune_start": fitted[finetune_start]["bundle"],
                          "candidates": trials})


def feature_standardisation(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, variance) of the raw backbone features a transfer model standardises with, each (D,);
    None when the bundle holds neither a fitted scaler nor a ``feature_standardisation`` layer.

    From a fitted scaler the variance is ``scale_ ** 2``, not ``var_``: a feature constant on the
    training rows has ``var_`` 0 but ``scale_`` 1 (scikit-learn leaves it unscaled), and a Keras
    ``Normalization`` given ``var_`` would divide it by ~1e-7 and blow up any tiny difference."""
    scaler = bundle.image_reducer
    if scaler is not None and hasattr(scaler, "mean_") and hasattr(scaler, "scale_"):
        return np.asarray(scaler.mean_), np.asarray(scaler.scale_) ** 2
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
    """photo (size, size, 3) [0, 255] -> backbone -> fixed standardisation -> head -> log price.

    The head is a copy of ``frozen``'s: training the assembled model leaves ``frozen`` as it was."""
    size = frozen.image_size
    backbone = build_backbone(frozen.backbone, image_size=size, weights=weights)
    mean, variance = feature_standardisation(frozen)
    head = keras.models.clone_model(frozen.estimator)
    head.set_weights(frozen.estimator.get_weights())
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # Keras 3 lets the outer training flag override this one; batch norm nevertheless stays in
    # inference mode because unfreeze_top keeps every BatchNormalization layer frozen (a frozen
    # BN layer always runs in inference mode), and the backbone has no dropout.
    x = backbone(inputs, training=False)
    x = keras.layers.Normalization(mean=mean, variance=variance,
                                   name="feature_standardisation")(x)
    outputs = head(x)
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
    start_from = {key: frozen.params.get(key)
                  for key in ("backbone", "head", "flip_tta", "val_mae", "val_mae_one_view")}
    params = {"started_from": start_from, "backbone": frozen.backbone, "unfrozen_top_blocks": n_blocks,
              "trainable_backbone_tensors": n_trainable, "learning_rate": learning_rate,
              "epochs_run": len(history["loss"]), "max_epochs": epochs,
              "stopped_by": stopped_by(history, epochs), "batchnorm": "frozen, inference mode",
              "augmentation": "flip, brightness, contrast, zoom"}
    bundle = ModelBundle("transfer_finetuned", ("image",), model, backbone=frozen.backbone,
                         image_size=size, params=params, deliverable="deliverable1")
    return Trained(bundle, time.perf_counter() - start, history=history)
