"""Late fusion: a tabular branch and a photo branch, each learning its own representation, merged
into one regression head.

Two-branch network, at the level of backbone features (``build_two_branch``)::

    tabular (d_tab,) --MLP branch--------------------------------------> h_tab (u_tab,)
    photo features (D,) --fixed standardisation--MLP branch (dropout, L2)--> h_img (u_img,)
    concat(h_tab, h_img) --head (optional hidden layer)--> Dense(1) = log price

and end to end (``assemble_end_to_end``)::

    {"tabular": (b, d_tab), "image": (b, s, s, 3) in [0, 255]} -> backbone -> the network above

``late_fusion``
    Phase 1, backbone frozen: trained on the *cached* backbone vectors. This is the same network
    as the end-to-end one with a frozen backbone: frozen batch norm runs in inference mode, the
    backbone has no dropout and the photos are not augmented in this phase, so the backbone maps
    each photo to the cached vector (checked numerically: ``params["phase1_equivalence"]``).
    It costs seconds per epoch instead of ~30 s. A small grid (photo-branch width, head) is
    chosen on validation. Phase 2: the network is assembled end to end on the ImageNet backbone,
    the top blocks of the backbone are unfrozen (batch norm kept frozen) and everything trains a
    few epochs at a low learning rate on augmented photos. Phase 2 is kept only if it lowers the
    validation MAE.

``late_fusion_from_branches``
    The same two-branch shape, but the branches are deliverable 1's trained ``mlp`` (up to its
    last hidden layer) and the best transfer model on validation (its backbone, standardisation
    and head up to the last hidden layer). The new head is one Dense(1) over the concatenated
    branch outputs, initialised so the fused network starts as *exactly* the ``mlp``: the tabular
    half of its kernel and its bias are the ``mlp``'s output layer, the photo half is zero.
    Phase A: branches frozen, the head trains. Phase B: both branches unfrozen (their batch norm
    kept in inference mode) with the head at a low learning rate. Each phase is kept only if it
    lowers the validation MAE, so the model cannot end up worse on validation than the ``mlp``.
    The backbone itself stays as deliverable 1 left it (fine-tuned or not); both phases run on
    backbone features computed once.
"""

from __future__ import annotations

import dataclasses
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
from shared.models.end_to_end import (attach_encoder, encode_photos, feature_standardisation,
                                      frozen_batchnorm, kept_label, photo_data, split_end_to_end,
                                      train_if_better, unfreeze_top)
from shared.models.families import transfer
from shared.models.families.mlp import config_of
from shared.models.families.transfer import default_image_size
from shared.models.fit import (compile_regressor, epochs_record, fit_regressor, in_strategy,
                               stopped_by, under_strategy)
from shared.models.layers import dense_block, regression_output
from shared.models.search import Fitted, tune_on_validation
from shared.models.spec import Family, ModelSpec, Sizes, Trained

log = logging.getLogger(__name__)

#: Photo-branch and head shapes tried in phase 1 (the tabular branch is deliverable 1's ``mlp``):
#: a narrow photo branch merged directly, and a wider one with a hidden layer after the merge.
PHOTO_GRID = [
    {"img_hidden": (16,), "head_hidden": ()},
    {"img_hidden": (64,), "head_hidden": (32,)},
]
IMG_DROPOUT, IMG_L2 = 0.5, 1e-2  # 1280 inputs, a few thousand rows: the photo branch needs limits
FINETUNE_LR = 3e-5               # late_fusion phase 2 (end to end)
BRANCHES_HEAD_LR, BRANCHES_JOINT_LR = 1e-3, 1e-4   # late_fusion_from_branches phases A and B


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
    backbone features are its photo vectors: ``late_fusion`` whose phase 2 was reverted, and
    ``late_fusion_from_branches`` built on ``transfer_frozen``."""
    if bundle.name == "late_fusion":
        return not bundle.params.get("phase2_kept", True)
    if bundle.name == "late_fusion_from_branches":
        return bundle.params.get("image_branch") == "transfer_frozen"
    return False


def _mae_eur(pred_log, y_eur) -> float:
    return mae(y_eur, feats.price_from_log(pred_log))


# --------------------------------------------------------------------------- late_fusion

def _phase1(data, cfg, raw: dict, tab_config: dict, epochs: int):
    """Phase 1 on the cached features: the two-branch network of each :data:`PHOTO_GRID` shape,
    the one with the lowest validation MAE kept (a :class:`~shared.models.search.SearchResult`)."""
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
    """Phase 2: ``model`` (end to end) trained on augmented photos with the backbone's top blocks
    unfrozen at a low learning rate, kept only if validation improves. Returns what happened
    (:func:`~shared.models.end_to_end.train_if_better`), plus "val_log" (the validation
    predictions of the weights kept, (n_val,) log EUR), "start_val_log" (before phase 2) and
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
            return _mae_eur(after["log"], data.y_eur("val"))

        phase2 = train_if_better(
            model, lambda: fit_regressor(model, train, val, epochs=epochs, patience=2),
            val_mae_after, before=_mae_eur(start_val_log, data.y_eur("val")))
    return {**phase2, "val_log": after["log"] if phase2["kept"] else start_val_log,
            "start_val_log": start_val_log, "trainable_backbone_tensors": n_trainable}


@under_strategy
def train_late_fusion(data, cfg, raw: dict, backbone: str, image_size: int,
                      tab_config: dict) -> Trained:
    """Phase 1 on cached features (grid on validation), phase 2 end to end.

    Args:
        raw: {"train"/"val"/"test": (n, D)} cached backbone features at ``image_size``.
        tab_config: tabular branch = deliverable 1's chosen ``mlp`` (hidden, dropout, l2,
            learning_rate).

    Phase 1 trains up to ``cfg.budget.mlp.epochs``, phase 2 ``cfg.budget.late_fusion.
    finetune_epochs``.
    """
    epochs, finetune_epochs = cfg.budget.mlp.epochs, cfg.budget.late_fusion.finetune_epochs
    start = time.perf_counter()
    search = _phase1(data, cfg, raw, tab_config, epochs)
    network, params = search.model, search.params
    phase1_val_log = network.predict({"tabular": data.tabular["val"], "image": raw["val"]},
                                     verbose=0).reshape(-1)
    log.info("  late fusion phase 1 (cached features): validation MAE %.2f EUR with %s",
             _mae_eur(phase1_val_log, data.y_eur("val")), params)
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


# --------------------------------------------------------------------------- from branches

def split_at_output(model: keras.Model, name: str, output_layer: str = "log_price"):
    """A deliverable-1 MLP (``shared.models.fit.build_mlp``) -> (trunk, (kernel, bias)).

    ``trunk`` is a copy of the model up to its last hidden layer, (b, d_in) -> (b, u) (identity
    when the model has no hidden layer); ``kernel`` (u, 1) and ``bias`` (1,) are its output
    layer's weights. The copy leaves the deliverable-1 model untouched.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    out = clone.get_layer(output_layer)
    kernel, bias = (np.asarray(w) for w in out.get_weights())
    trunk_input, trunk_output = clone.inputs[0], out.input
    trunk = (None if trunk_output is trunk_input
             else keras.Model(trunk_input, trunk_output, name=name))
    return trunk, (kernel, bias)


def image_branch_of(bundle: ModelBundle):
    """A deliverable-1 transfer bundle -> (encoder or None, mean (D,), var (D,), head MLP).

    ``transfer_frozen``: encoder None (the ImageNet backbone: cached features apply), the
    standardisation is its fitted scaler. ``transfer_finetuned``: its fine-tuned backbone, the
    ``feature_standardisation`` layer and the nested head.
    """
    mean, var = feature_standardisation(bundle)
    if "image_features" in bundle.inputs:
        return None, mean, var, bundle.estimator
    encoder, head = split_end_to_end(bundle)
    return encoder, mean, var, head


def build_from_branches(tab_model: keras.Model, img_head: keras.Model, img_mean, img_var,
                        name: str = "from_branches_network") -> keras.Model:
    """{"tabular": (b, d_tab), "image": (b, D) raw features} -> (b, 1) log price, starting as
    exactly ``tab_model``'s prediction (photo half of the new output kernel at zero)."""
    tab_trunk, (w_tab, b_tab) = split_at_output(tab_model, "tabular_branch")
    img_trunk, (w_img, _) = split_at_output(img_head, "image_branch")
    tabular = keras.Input(shape=(tab_model.inputs[0].shape[-1],), name="tabular")
    image = keras.Input(shape=(len(img_mean),), name="image")
    h_tab = tab_trunk(tabular) if tab_trunk is not None else tabular
    z = keras.layers.Normalization(mean=np.asarray(img_mean), variance=np.asarray(img_var),
                                   name="image_standardisation")(image)
    h_img = img_trunk(z) if img_trunk is not None else z
    kernel = np.vstack([w_tab, np.zeros_like(w_img)])
    output = keras.layers.Dense(1, dtype="float32", name="fusion_log_price",
                                kernel_initializer=keras.initializers.Constant(kernel),
                                bias_initializer=keras.initializers.Constant(b_tab))(
        keras.layers.Concatenate(name="merge")([h_tab, h_img]))
    return keras.Model({"tabular": tabular, "image": image}, output, name=name)


def _branch_phases(network: keras.Model, X: dict, data, cfg) -> tuple[dict, dict]:
    """Phase A (branches frozen, the new head learns) then phase B (both branches unfrozen,
    batch norm still frozen), each kept only if it lowers the validation MAE."""
    sizes, y_train, y_val = cfg.budget.late_fusion, data.y_log("train"), data.y_log("val")

    start_val_log = network.predict(X["val"], verbose=0).reshape(-1)

    def val_mae():
        return _mae_eur(network.predict(X["val"], verbose=0), data.y_eur("val"))

    def phase(epochs, patience):
        return lambda: fit_regressor(network, (X["train"], y_train), (X["val"], y_val),
                                     epochs=epochs, patience=patience, seed=cfg.seed)

    branches = [layer for layer in network.layers if isinstance(layer, keras.Model)]
    for branch in branches:
        branch.trainable = False
    compile_regressor(network, BRANCHES_HEAD_LR)
    phase_a = train_if_better(network, phase(sizes.branches_head_epochs, 15), val_mae,
                              before=_mae_eur(start_val_log, data.y_eur("val")))
    phase_a["start_val_log"] = start_val_log
    for branch in branches:
        frozen_batchnorm(branch, trainable=True)
    compile_regressor(network, BRANCHES_JOINT_LR)
    phase_b = train_if_better(network, phase(sizes.branches_joint_epochs, 10), val_mae)
    log.info("  from branches: validation MAE start %s -> head %s (%s) -> joint %s (%s) EUR",
             phase_a["val_mae_before"], phase_a["val_mae_after"], kept_label(phase_a),
             phase_b["val_mae_after"], kept_label(phase_b))
    return phase_a, phase_b


def _branches_params(cfg, transfer_name: str, phase_a: dict, phase_b: dict, start_gap: float,
                     photo_weight: float, transfer: ModelBundle) -> dict:
    sizes = cfg.budget.late_fusion
    recorded = ("val_mae_before", "val_mae_after", "kept", "epochs_run")  # not the arrays
    return {"tabular_branch": "mlp", "image_branch": transfer_name,
            "start_equals_mlp_max_abs_log_diff": start_gap,
            "head_learning_rate": BRANCHES_HEAD_LR, "joint_learning_rate": BRANCHES_JOINT_LR,
            **{f"head_{k}": phase_a[k] for k in recorded},
            **{f"joint_{k}": phase_b[k] for k in recorded},
            "photo_weights_norm": round(photo_weight, 4), "loss": "mse",
            "head_max_epochs": sizes.branches_head_epochs,
            "head_stopped_by": stopped_by(phase_a["history"], sizes.branches_head_epochs),
            "joint_max_epochs": sizes.branches_joint_epochs,
            "joint_stopped_by": stopped_by(phase_b["history"], sizes.branches_joint_epochs),
            "stopped_by": stopped_by(phase_b["history"], sizes.branches_joint_epochs),
            "phases": [{"start": 0, "label": "A: head " + kept_label(phase_a),
                        "kept": phase_a["kept"]},
                       {"start": len(phase_a["history"].get("loss", [])),
                        "label": "B: joint " + kept_label(phase_b), "kept": phase_b["kept"]}],
            "batchnorm": "frozen (inference mode) in both branches and the backbone",
            "backbone": transfer.backbone, "image_size": transfer.image_size}


def _branch_vectors(data, transfer: ModelBundle, raw_features) -> tuple[dict, tuple]:
    """({part: (n, D)} the image branch's photo vectors, (encoder or None, mean, var, head))."""
    encoder, mean, var, img_head = image_branch_of(transfer)
    if encoder is None:
        return raw_features(transfer.image_size), (encoder, mean, var, img_head)
    return ({p: encode_photos(encoder, data.paths(p), transfer.image_size) for p in PARTS},
            (encoder, mean, var, img_head))


def fit_from_branches(data, cfg, mlp: ModelBundle, branch: tuple, vectors: dict, seed: int):
    """The two-branch network built from ``mlp`` and the image ``branch`` (from
    :func:`_branch_vectors`), phases A and B trained with ``seed``: (network, phase A, phase B,
    {part: network inputs})."""
    X = {p: {"tabular": data.tabular[p], "image": vectors[p]} for p in PARTS}
    keras.utils.set_random_seed(seed)
    network = build_from_branches(mlp.estimator, branch[3], branch[1], branch[2])
    phase_a, phase_b = _branch_phases(network, X, data, dataclasses.replace(cfg, seed=seed))
    return network, phase_a, phase_b, X


@under_strategy
def train_late_fusion_from_branches(data, cfg, mlp: ModelBundle, transfer: ModelBundle,
                                    transfer_name: str, raw_features) -> Trained:
    """Initialise from ``mlp`` + the best transfer model, train the head, then both branches.

    Args:
        mlp: deliverable 1's trained ``mlp`` (the tabular branch).
        transfer, transfer_name: the transfer model best on validation (the image branch).
        raw_features: ``image_size -> {"train"/"val"/"test": (n, D)}`` cached ImageNet features.
    """
    start = time.perf_counter()
    size = transfer.image_size
    vectors, branch = _branch_vectors(data, transfer, raw_features)
    network, phase_a, phase_b, X = fit_from_branches(data, cfg, mlp, branch, vectors, cfg.seed)
    start_gap = float(np.max(np.abs(phase_a["start_val_log"]
                                    - np.log(mlp.predict_eur(data.parts["val"])))))
    u_tab = mlp.estimator.get_layer("log_price").get_weights()[0].shape[0]
    photo_weight = float(np.linalg.norm(
        network.get_layer("fusion_log_price").get_weights()[0][u_tab:]))
    encoder = branch[0] or build_backbone(transfer.backbone, image_size=size)
    encoder.trainable = False
    model = attach_encoder(network, encoder, size, name="late_fusion_from_branches")
    bundle = ModelBundle(
        "late_fusion_from_branches", ("tabular", "image"), model, data.preprocessor,
        backbone=transfer.backbone, image_size=size, deliverable="deliverable2",
        params=_branches_params(cfg, transfer_name, phase_a, phase_b, start_gap, photo_weight,
                                transfer))
    history = {k: phase_a["history"].get(k, []) + phase_b["history"].get(k, [])
               for k in ("loss", "val_loss")}
    return Trained(bundle, time.perf_counter() - start, history=history)


def from_branches_reseed(run, bundle: ModelBundle):
    """``seed -> predict(part)``: ``late_fusion_from_branches`` trained again with another seed
    from the same deliverable-1 branches (``mlp`` and the image branch it was built on),
    predicting from the branches' photo vectors."""
    transfer_bundle = run.bundle(bundle.params["image_branch"])
    vectors, branch = _branch_vectors(run.data, transfer_bundle,
                                      lambda size: run.features(transfer_bundle.backbone, size))

    def reseed(seed):
        with in_strategy(run.cfg):
            network, _, _, X = fit_from_branches(run.data, run.cfg, run.bundle("mlp"), branch,
                                                 vectors, seed)
        return lambda part: feats.price_from_log(network.predict(X[part], verbose=0))

    return reseed


@dataclass(frozen=True)
class LateFusionSizes:
    """Late fusion's budget (phase 1 of ``late_fusion`` trains up to ``cfg.budget.mlp.epochs``;
    its phase 2 unfreezes ``cfg.budget.transfer.finetune_blocks``)."""

    grid_size: int | None         # settings of :data:`PHOTO_GRID` tried (None: all)
    finetune_epochs: int          # late_fusion phase 2, end to end
    branches_head_epochs: int     # late_fusion_from_branches phase A
    branches_joint_epochs: int    # late_fusion_from_branches phase B


TRANSFER_MODELS = tuple(m.name for m in transfer.FAMILY.models)


def _train_late(run) -> Trained:
    size = default_image_size(run.cfg)
    return train_late_fusion(run.data, run.cfg, run.features(DEFAULT_BACKBONE, size),
                             DEFAULT_BACKBONE, size, config_of(run.bundle("mlp").params))


def _train_from_branches(run) -> Trained:
    """The tabular branch is deliverable 1's ``mlp``; the image branch the transfer model
    validation prefers."""
    name = run.best_on_validation(TRANSFER_MODELS)
    branch = run.bundle(name)
    return train_late_fusion_from_branches(
        run.data, run.cfg, run.bundle("mlp"), branch, name,
        lambda size: run.features(branch.backbone, size))


FAMILY = Family(
    name="late_fusion",
    models=(
        ModelSpec("late_fusion", "fusion", "deliverable2", order=130, inputs=("tabular", "image"),
                  train=_train_late, neural=True, base="mlp",
                  description="a tabular and a photo branch merged into one head, "
                              "then end to end"),
        ModelSpec("late_fusion_from_branches", "fusion", "deliverable2", order=140,
                  inputs=("tabular", "image"), train=_train_from_branches,
                  reseed=from_branches_reseed, neural=True, base="mlp",
                  description="deliverable 1's mlp and transfer model as the two branches"),
    ),
    sizes=Sizes(full=LateFusionSizes(grid_size=None, finetune_epochs=2, branches_head_epochs=200,
                                     branches_joint_epochs=100),
                small_set=LateFusionSizes(grid_size=None, finetune_epochs=3,
                                          branches_head_epochs=200, branches_joint_epochs=100),
                smoke=LateFusionSizes(grid_size=1, finetune_epochs=1, branches_head_epochs=3,
                                      branches_joint_epochs=2)),
)
