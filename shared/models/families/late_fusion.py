"""Late fusion: a tabular and a photo branch, each learning its own representation, merged
into one regression head::

    tabular (d_tab,) --MLP branch--------------------------------------> h_tab (u_tab,)
    photo features (D,) --fixed standardisation--MLP branch (dropout, L2)--> h_img (u_img,)
    concat(h_tab, h_img) --head (optional hidden layer)--> Dense(1) = log price

Phase 1 trains on the *cached* backbone vectors: the same network as end to end with a frozen
backbone (frozen batch norm, no dropout, no augmentation), checked numerically. Phase 2
unfreezes the backbone's top blocks (batch norm frozen) and trains end to end on augmented
photos; it is kept only if validation improves.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass

import keras
import numpy as np

from shared.data.split import PART_NAMES as PARTS
from shared.evaluation.metrics import mae
from shared.features import tabular as feats
from shared.features.backbones import DEFAULT_BACKBONE, build_backbone
from shared.models.bundle import ModelBundle
from shared.models.end_to_end import (attach_encoder, kept_label, photo_data, train_if_better, unfreeze_top)
from shared.models.families.mlp import config_of
from shared.models.families.transfer import default_image_size
from shared.models.fit import (compile_regressor, epochs_record, fit_regressor, stopped_by, under_strategy)
from shared.models.layers import dense_block, regression_output
from shared.models.search import Fitted, tune_on_validation
from shared.models.spec import Family, ModelSpec, Sizes, Trained

log = logging.getLogger(__name__)

#: Photo-branch and head shapes tried in phase 1 (the tabular branch is deliverable 1's ``mlp``).
PHOTO_GRID = [
    {"img_hidden": (16,), "head_hidden": ()},
    {"img_hidden": (64,), "head_hidden": (32,)},
]
IMG_DROPOUT, IMG_L2 = 0.5, 1e-2  # 1280 inputs, a few thousand rows: the photo branch needs limits
FINETUNE_LR = 3e-5               # late_fusion phase 2 (end to end)


# --------------------------------------------------------------------------- building blocks

def build_two_branch(tab_dim: int, img_dim: int, img_mean, img_var, config: dict,
                     target_mean: float, name: str = "late_fusion_network") -> keras.Model:
    """{"tabular": (b, tab_dim), "image": (b, img_dim) raw backbone features} -> (b, 1) log price.

    ``config``: tab_hidden, dropout, l2 (tabular branch), img_hidden, head_hidden.
    ``img_mean`` / ``img_var`` (img_dim,): training-row statistics of the backbone features.
    """
    tabular = keras.Input(shape=(tab_dim,), name="tabular")
    image = keras.Input(shape=(img_dim,), name="image")
    t = tabular
    for i, units in enumerate(config["tab_hidden"]):
        t = dense_block(t, units, config["dropout"], config["l2"], name=f"tab{i + 1}")
    x = keras.layers.Normalization(mean=np.asarray(img_mean), variance=np.asarray(img_var),
                                   name="image_standardisation")(image)
    x = keras.layers.Dropout(IMG_DROPOUT / 2, name="image_input_dropout")(x)
    for i, units in enumerate(config["img_hidden"]):
        x = dense_block(x, units, IMG_DROPOUT, IMG_L2, name=f"img{i + 1}")
    h = keras.layers.Concatenate(name="merge")([t, x])
    for i, units in enumerate(config["head_hidden"]):
        h = dense_block(h, units, config["dropout"], config["l2"], name=f"head{i + 1}")
    return keras.Model({"tabular": tabular, "image": image}, regression_output(h, target_mean),
                       name=name)


def uses_pretrained_backbone(bundle: ModelBundle) -> bool:
    """True when a fusion bundle's backbone holds the unchanged ImageNet weights, so the cached
    features are its photo vectors."""
    if bundle.name == "late_fusion":
        return not bundle.params.get("phase2_kept", True)
    if bundle.name == "late_fusion_from_branches":
        return bundle.params.get("image_branch") == "transfer_frozen"
    return False


def mae_eur(pred_log, y_eur) -> float:
    return mae(y_eur, feats.price_from_log(pred_log))


# --------------------------------------------------------------------------- late_fusion

def _phase1(data, cfg, raw: dict, tab_config: dict, epochs: int):
    """Phase 1 on the cached features: each :data:`PHOTO_GRID` shape, the lowest validation MAE
    kept (a :class:`~shared.models.search.SearchResult`)."""
    y_train, y_val = data.y_log("train"), data.y_log("val")
    X = {p: {"tabular": data.tabular[p], "image": raw[p]} for p in PARTS}
    mean, var = raw["train"].mean(axis=0), raw["train"].var(axis=0)  # training rows only

    def build_and_fit(params):
        keras.utils.set_random_seed(cfg.seed)
        config = {"tab_hidden": tuple(tab_config["hidden"]), "dropout": tab_config["dropout"],
                  "l2": tab_config["l2"], **params}
        model = build_two_branch(data.tabular["train"].shape[1], raw["train"].shape[1], mean, var,
                                 config, float(np.mean(y_train)))
        compile_regressor(model, tab_config["learning_rate"])
        return Fitted(model, fit_regressor(model, (X["train"], y_train), (X["val"], y_val),
                                           epochs=epochs, patience=20, batch_size=32, seed=cfg.seed))

    return tune_on_validation(
        build_and_fit, PHOTO_GRID[:cfg.budget.late_fusion.grid_size],
        lambda m, _: feats.price_from_log(m.predict(X["val"], verbose=0)), data.y_eur("val"))


def _phase2(data, cfg, model: keras.Model, backbone: str, image_size: int, epochs: int) -> dict:
    """Phase 2 end to end, kept only if validation improves: :func:`train_if_better`'s record plus
    "val_log" ((n_val,) log EUR of the weights kept), "start_val_log" and
    "trainable_backbone_tensors"."""
    with tempfile.TemporaryDirectory(prefix="late-fusion-photos-") as cache:
        val = photo_data(data, cfg, "val", image_size, cache_dir=f"{cache}/val")
        start_val_log = model.predict(val, verbose=0).reshape(-1)
        n_trainable = unfreeze_top(model, backbone, cfg.budget.transfer.finetune_blocks)
        compile_regressor(model, FINETUNE_LR)
        train = photo_data(data, cfg, "train", image_size, training=True, cache_dir=f"{cache}/train")
        after = {}

        def val_mae_after():
            after["log"] = model.predict(val, verbose=0).reshape(-1)
            return mae_eur(after["log"], data.y_eur("val"))

        phase2 = train_if_better(
            model, lambda: fit_regressor(model, train, val, epochs=epochs, patience=2),
            val_mae_after, before=mae_eur(start_val_log, data.y_eur("val")))
    return {**phase2, "val_log": after["log"] if phase2["kept"] else start_val_log,
            "start_val_log": start_val_log, "trainable_backbone_tensors": n_trainable}


@under_strategy
def train_late_fusion(data, cfg, raw: dict, backbone: str, image_size: int,
                      tab_config: dict) -> Trained:
    """Phase 1 on cached features (grid on validation), phase 2 end to end.

    ``raw``: {part: (n, D)} cached backbone features at ``image_size``; ``tab_config``: deliverable
    1's chosen ``mlp`` (hidden, dropout, l2, learning_rate).
    """
    epochs, finetune_epochs = cfg.budget.mlp.epochs, cfg.budget.late_fusion.finetune_epochs
    start = time.perf_counter()
    search = _phase1(data, cfg, raw, tab_config, epochs)
    network, params = search.model, search.params
    phase1_val_log = network.predict({"tabular": data.tabular["val"], "image": raw["val"]},
                                     verbose=0).reshape(-1)
    log.info("  late fusion phase 1 (cached features): validation MAE %.2f EUR with %s",
             mae_eur(phase1_val_log, data.y_eur("val")), params)
    encoder = build_backbone(backbone, image_size=image_size)
    encoder.trainable = False
    model = attach_encoder(network, encoder, image_size, name="late_fusion")
    phase2 = _phase2(data, cfg, model, backbone, image_size, finetune_epochs)
    log.info("  late fusion phase 2 (end to end): validation MAE %s -> %s EUR, %s",
             phase2["val_mae_before"], phase2["val_mae_after"],
             "kept" if phase2["kept"] else "reverted to phase 1")
    phases = [{"start": 0, "label": "1: cached features", "kept": True},
              {"start": len(search.history["loss"]), "label": "2: end to end "
               + kept_label(phase2), "kept": phase2["kept"]}]
    bundle = ModelBundle(
        "late_fusion", ("tabular", "image"), model, data.preprocessor, backbone=backbone,
        image_size=image_size, deliverable="deliverable2",
        params={"tab_hidden": list(tab_config["hidden"]), "dropout": tab_config["dropout"],
                "l2": tab_config["l2"], "img_hidden": list(params["img_hidden"]),
                "head_hidden": list(params["head_hidden"]), "img_dropout": IMG_DROPOUT,
                "img_l2": IMG_L2, "loss": "mse",
                **epochs_record(search.history, epochs, prefix="phase1_"),
                **epochs_record(phase2["history"], finetune_epochs, prefix="phase2_"),
                "stopped_by": stopped_by(phase2["history"], finetune_epochs),
                "phase1_trials": [{k: list(v) if isinstance(v, tuple) else v
                                   for k, v in t.items()} for t in search.trials],
                "phase1_equivalence_max_abs_log_diff": float(np.max(np.abs(
                    phase2["start_val_log"] - phase1_val_log))),
                "phase2_unfrozen_top_blocks": cfg.budget.transfer.finetune_blocks,
                "phase2_trainable_backbone_tensors": phase2["trainable_backbone_tensors"],
                "phase2_learning_rate": FINETUNE_LR, "phases": phases,
                **{f"phase2_{k}": v for k, v in phase2.items()
                   if k in ("val_mae_before", "val_mae_after", "kept")},
                "backbone": backbone, "image_size": image_size,
                "batchnorm": "backbone BN frozen (inference mode)"})
    history = {k: search.history[k] + phase2["history"].get(k, []) for k in ("loss", "val_loss")}
    return Trained(bundle, time.perf_counter() - start, history=history,
                   known={"val": feats.price_from_log(phase2["val_log"])})


@dataclass(frozen=True)
class LateFusionSizes:
    """Late fusion's budget (phase 1 trains up to ``cfg.budget.mlp.epochs``)."""

    grid_size: int | None         # settings of :data:`PHOTO_GRID` tried (None: all)
    finetune_epochs: int          # late_fusion phase 2, end to end


def _train_late(run) -> Trained:
    size = default_image_size(run.cfg)
    return train_late_fusion(run.data, run.cfg, run.features(DEFAULT_BACKBONE, size),
                             DEFAULT_BACKBONE, size, config_of(run.bundle("mlp").params))


FAMILY = Family(
    name="late_fusion",
    models=(
        ModelSpec("late_fusion", "fusion", "deliverable2", order=130, inputs=("tabular", "image"),
                  train=_train_late, neural=True, base="mlp",
                  description="a tabular and a photo branch merged into one head, "
                              "then end to end"),
    ),
    sizes=Sizes(full=LateFusionSizes(grid_size=None, finetune_epochs=2),
                small_set=LateFusionSizes(grid_size=None, finetune_epochs=3),
                smoke=LateFusionSizes(grid_size=1, finetune_epochs=1)),
)
