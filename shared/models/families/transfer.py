"""Transfer learning from an ImageNet backbone: ``transfer_frozen`` and ``transfer_finetuned``.

``transfer_frozen``: the frozen backbone's pooled vectors are cached (:mod:`shared.features.cache`);
validation chooses the backbone, the head (closed-form ridge *linear probe* or
:func:`shared.models.layers.photo_mlp_head`) and test-time flip averaging.
``transfer_finetuned``: that model end to end, its top blocks trained with the head at a low
learning rate on augmented photos. Batch norm stays frozen in inference mode: with batches of 32
its statistics would wreck the pretrained features.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.preprocessing import StandardScaler

from shared.data.images import make_image_dataset
from shared.evaluation.metrics import lowest, mae
from shared.features import tabular as feats
from shared.features.backbones import DEFAULT_BACKBONE, build_backbone
from shared.features.cache import flip_average
from shared.models.bundle import ModelBundle
from shared.models.end_to_end import feature_standardisation, unfreeze_top
from shared.models.fit import (compile_regressor, epochs_record, fit_regressor, global_batch_size,
                               under_strategy)
from shared.models.layers import linear_head, photo_mlp_head
from shared.ridge import ridge_path
from shared.models.search import Fitted, tune_on_validation
from shared.models.spec import Family, ModelSpec, Sizes, Trained

log = logging.getLogger(__name__)

#: Ridge penalties tried for the linear head, on the summed squared error of the standardised
#: features (Keras equivalent: l2 = alpha / n_train).
HEAD_ALPHAS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
#: The non-linear head (:func:`shared.models.layers.photo_mlp_head`) and how it is trained.
MLP_HEAD = {"hidden": 256, "input_dropout": 0.2, "dropout": 0.5}
MLP_HEAD_LR, MLP_HEAD_BATCH, MLP_HEAD_PATIENCE = 1e-3, 128, 8
FINETUNE_LR = 3e-5  # learning rate of fine-tuning: low, the pretrained weights move little
#: What stopped a model solved in closed form (no epochs).
CLOSED_FORM = "n/a (closed form)"


@dataclass(frozen=True)
class TransferSizes:
    """The transfer models' budget (their photo side is also the fusion models')."""

    image_size: int          # px, square: Lite0 (the fine-tuned backbone) and the fusion models
    finetune_blocks: int     # top backbone blocks unfrozen when fine-tuning (and in late fusion)
    finetune_epochs: int     # transfer_finetuned
    batch_size: int          # photos per batch, streamed from disk
    probe_backbones: tuple = ()           # (backbone, px) tried besides Lite0 at image_size
    heads: tuple = ("linear", "mlp")      # heads tried on the cached features
    flips: tuple = (False, True)          # without / with flip averaging
    head_epochs: int = 100                # most epochs of the "mlp" head (early stopping decides)


def default_image_size(cfg) -> int:
    """Photo side (px) of the transfer models, reused by the fusion models.<<"""
    return cfg.budget.transfer.image_size


def probe_candidates(cfg, backbone: str = DEFAULT_BACKBONE,
                     image_size: int | None = None) -> list[tuple[str, int]]:
    """(backbone, px) pairs the heads are tried on: the default first (fine-tuning starts from it),
    then ``cfg.budget.transfer.probe_backbones``."""
    first = (backbone, image_size or default_image_size(cfg))
    return [first, *(tuple(c) for c in cfg.budget.transfer.probe_backbones if tuple(c) != first)]


def head_inputs(plain: dict, mirrored: dict | None, y_train: np.ndarray):
    """(training matrix, targets, {part: matrix to predict from}) of one flip setting.

    With ``mirrored``: training rows twice (photo, then mirror; (2 n_train, D), targets repeated)
    and every part predicted from the average of the two vectors.
    """
    if mirrored is None:
        return plain["train"], y_train, plain
    train = np.vstack([plain["train"], mirrored["train"]])
    return (train, np.concatenate([y_train, y_train]),
            {part: flip_average(plain[part], mirrored[part]) for part in plain})


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
    epochs = cfg.budget.transfer.head_epochs
    history = fit_regressor(model, (x_train, y_train), (x_val, y_val_log), epochs=epochs,
                            patience=MLP_HEAD_PATIENCE, batch_size=MLP_HEAD_BATCH, seed=cfg.seed)
    params = {"head": "mlp", **MLP_HEAD, "learning_rate": MLP_HEAD_LR, "loss": "mse",
              **epochs_record(history, epochs)}
    return model, params, history


def _fit_head(data, cfg, backbone: str, image_size: int, head: str, flip: bool,
              features: dict) -> dict:
    """One candidate of ``transfer_frozen``: {"bundle", "predict", "val_mae", "history"}.

    ``features``: {False: plain features per part, True: mirrored ones}. The standardisation is
    fitted on the training rows (with their mirror images when ``flip``).
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

    val_pred = predict("val")
    val_mae = mae(data.y_eur("val"), val_pred)
    # one view (the photo only, no mirror): what the head predicts inside an end-to-end model,
    # i.e. where fine-tuning starts from; without flips it is the validation prediction itself
    one_view = val_pred if not flip else feats.price_from_log(model.predict(
        scaler.transform(features[False]["val"]).astype(np.float32), batch_size=1024, verbose=0))
    bundle = ModelBundle("transfer_frozen", ("image_features",), model, image_reducer=scaler,
                         backbone=backbone, image_size=image_size, flip_tta=flip,
                         deliverable="deliverable1",
                         params={**params, "backbone": backbone, "image_size": image_size,
                                 "flip_tta": flip, "val_mae": round(val_mae, 3),
                                 "val_mae_one_view": round(mae(data.y_eur("val"), one_view), 3)})
    return {"bundle": bundle, "predict": predict, "val_mae": val_mae, "history": history}


@under_strategy
def train_transfer_frozen(data, cfg, features, backbone: str = DEFAULT_BACKBONE,
                          image_size: int | None = None) -> Trained:
    """Every (backbone, head, flip) of ``cfg.budget.transfer`` on the cached features; validation
    picks one.

    ``features(backbone, size, flip) -> {part: (n, D)}``. ``extra``: "finetune_start" (the best
    candidate of the first backbone) and "candidates" (every validation MAE)."""
    start = time.perf_counter()
    flips = tuple(cfg.budget.transfer.flips)
    candidates = probe_candidates(cfg, backbone, image_size)
    fitted, trials = {}, []
    for bb, size in candidates:
        vectors = {flip: features(bb, size, flip) for flip in sorted({False, *flips})}
        for head in cfg.budget.transfer.heads:
            for flip in flips:
                key = (bb, size, head, flip)
                fitted[key] = _fit_head(data, cfg, bb, size, head, flip, vectors)
                p = fitted[key]["bundle"].params
                trials.append({"backbone": bb, "image_size": size, "head": head, "flip": flip,
                               "val_mae": round(fitted[key]["val_mae"], 3),
                               "stopped_by": p.get("stopped_by", CLOSED_FORM)})
                log.info("  transfer_frozen %s@%s %s head%s: validation MAE %.2f EUR", bb, size,
                         head, " + flip" if flip else "", fitted[key]["val_mae"])
    chosen = lowest(fitted, lambda k: fitted[k]["val_mae"])
    finetune_start = lowest((k for k in fitted if k[:2] == candidates[0]),
                            lambda k: fitted[k]["val_mae"])
    bundle = fitted[chosen]["bundle"]
    bundle.params["candidates"] = trials
    return Trained(bundle, time.perf_counter() - start, predict=fitted[chosen]["predict"],
                   history=fitted[chosen]["history"],
                   extra={"finetune_start": fitted[finetune_start]["bundle"],
                          "candidates": trials})


def assemble_end_to_end(frozen: ModelBundle, weights: str | None = "imagenet") -> keras.Model:
    """photo (size, size, 3) [0, 255] -> backbone -> fixed standardisation -> head -> log price.
    The head is a copy: training the assembled model leaves ``frozen`` as it was."""
    size = frozen.image_size
    backbone = build_backbone(frozen.backbone, image_size=size, weights=weights)
    mean, variance = feature_standardisation(frozen)
    head = keras.models.clone_model(frozen.estimator)
    head.set_weights(frozen.estimator.get_weights())
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # The outer training flag overrides this one in Keras 3, but unfreeze_top keeps batch norm
    # frozen (so in inference mode), and the backbone has no dropout.
    x = backbone(inputs, training=False)
    x = keras.layers.Normalization(mean=mean, variance=variance,
                                   name="feature_standardisation")(x)
    outputs = head(x)
    return keras.Model(inputs, outputs, name=f"{frozen.backbone}_regressor")


@under_strategy
def train_transfer_finetuned(data, cfg, frozen: ModelBundle, epochs: int | None = None,
                             learning_rate: float = FINETUNE_LR) -> Trained:
    """Fine-tune ``frozen`` end to end (``epochs``: default the budget's ``finetune_epochs``).<<"""
    n_blocks = cfg.budget.transfer.finetune_blocks
    epochs = epochs or cfg.budget.transfer.finetune_epochs
    batch_size = cfg.budget.transfer.batch_size
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
              **epochs_record(history, epochs), "loss": "mse",
              "batchnorm": "frozen, inference mode",
              "augmentation": "flip, brightness, contrast, zoom"}
    bundle = ModelBundle("transfer_finetuned", ("image",), model, backbone=frozen.backbone,
                         image_size=size, params=params, deliverable="deliverable1")
    return Trained(bundle, time.perf_counter() - start, history=history)


def photo_model(bundle: ModelBundle) -> keras.Model:
    """A photo-only bundle as one Keras model: (n, S, S, 3) float32 in [0, 255] -> (n, 1) log
    price, S = ``bundle.image_size``."""
    return bundle.estimator if "image" in bundle.inputs else assemble_end_to_end(bundle)


def _train_frozen(run) -> Trained:
    return train_transfer_frozen(run.data, run.cfg, run.features)


def _train_finetuned(run) -> Trained:
    return train_transfer_finetuned(run.data, run.cfg,
                                    run.trained["transfer_frozen"].extra["finetune_start"])


_FULL = TransferSizes(image_size=224, finetune_blocks=2, finetune_epochs=3, batch_size=32,
                      probe_backbones=(("efficientnet_lite2", 260),))

FAMILY = Family(
    name="transfer",
    models=(
        ModelSpec("transfer_frozen", "photo", "deliverable1", order=70,
                  inputs=("image_features",), train=_train_frozen, reference="always",
                  description="ImageNet EfficientNet-Lite features and a head chosen on validation"),
        ModelSpec("transfer_finetuned", "photo", "deliverable1", order=80, inputs=("image",),
                  train=_train_finetuned, neural=True, reference="always",
                  after=("transfer_frozen",),
                  description="the Lite0 model's top blocks fine-tuned end to end"),
    ),
    sizes=Sizes(full=_FULL, small_set=dataclasses.replace(_FULL, finetune_epochs=6),
                smoke=TransferSizes(image_size=96, finetune_blocks=1, finetune_epochs=1,
                                    batch_size=32, head_epochs=2)),
)
