"""``late_fusion_from_branches``: late fusion's two-branch network built from deliverable 1's
trained ``mlp`` and the transfer model validation prefers.

The new Dense(1) head over both branches starts as *exactly* the ``mlp`` (its output layer for
the tabular half, zeros for the photo half). Phase A trains the head with frozen branches,
phase B both branches too (batch norm in inference mode) at a low learning rate; each is kept
only if it lowers the validation MAE, so the model cannot end worse than the ``mlp`` there.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import keras
import numpy as np

from shared.data.split import PART_NAMES as PARTS
from shared.features import tabular as feats
from shared.features.backbones import build_backbone
from shared.models.bundle import ModelBundle
from shared.models.end_to_end import (attach_encoder, encode_photos, feature_standardisation,
                                      frozen_batchnorm, kept_label, split_end_to_end,
                                      train_if_better)
from shared.models.families import transfer
from shared.models.families.late_fusion import mae_eur
from shared.models.fit import compile_regressor, fit_regressor, in_strategy, stopped_by, under_strategy
from shared.models.spec import Family, ModelSpec, Sizes, Trained

log = logging.getLogger(__name__)

HEAD_LR, JOINT_LR = 1e-3, 1e-4   # phases A and B
TRANSFER_MODELS = tuple(m.name for m in transfer.FAMILY.models)


@dataclass(frozen=True)
class FromBranchesSizes:
    """The most epochs of phase A (the new head) and phase B (both branches)."""

    head_epochs: int
    joint_epochs: int


def split_at_output(model: keras.Model, name: str, output_layer: str = "log_price"):
    """A deliverable-1 MLP -> (trunk, (kernel (u, 1), bias (1,))) of its output layer.

    ``trunk``: a copy up to the last hidden layer, (b, d_in) -> (b, u), or None without hidden
    layer; the original model is untouched.
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
    """A transfer bundle -> (encoder or None, mean (D,), var (D,), head MLP); the encoder is None
    for ``transfer_frozen`` (the ImageNet backbone: cached features apply)."""
    mean, var = feature_standardisation(bundle)
    if "image_features" in bundle.inputs:
        return None, mean, var, bundle.estimator
    encoder, head = split_end_to_end(bundle)
    return encoder, mean, var, head


def build_from_branches(tab_model: keras.Model, img_head: keras.Model, img_mean, img_var,
                        name: str = "from_branches_network") -> keras.Model:
    """{"tabular": (b, d_tab), "image": (b, D) raw features} -> (b, 1) log price, starting as
    exactly ``tab_model``'s prediction."""
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
    """Phase A then phase B, each kept only if it lowers the validation MAE.<<"""
    sizes, y_train, y_val = cfg.budget.from_branches, data.y_log("train"), data.y_log("val")

    start_val_log = network.predict(X["val"], verbose=0).reshape(-1)

    def val_mae():
        return mae_eur(network.predict(X["val"], verbose=0), data.y_eur("val"))

    def phase(epochs, patience):
        return lambda: fit_regressor(network, (X["train"], y_train), (X["val"], y_val),
                                     epochs=epochs, patience=patience, seed=cfg.seed)

    branches = [layer for layer in network.layers if isinstance(layer, keras.Model)]
    for branch in branches:
        branch.trainable = False
    compile_regressor(network, HEAD_LR)
    phase_a = train_if_better(network, phase(sizes.head_epochs, 15), val_mae,
                              before=mae_eur(start_val_log, data.y_eur("val")))
    phase_a["start_val_log"] = start_val_log
    for branch in branches:
        frozen_batchnorm(branch, trainable=True)
    compile_regressor(network, JOINT_LR)
    phase_b = train_if_better(network, phase(sizes.joint_epochs, 10), val_mae)
    log.info("  from branches: validation MAE start %s -> head %s (%s) -> joint %s (%s) EUR",
             phase_a["val_mae_before"], phase_a["val_mae_after"], kept_label(phase_a),
             phase_b["val_mae_after"], kept_label(phase_b))
    return phase_a, phase_b


def _branches_params(cfg, transfer_name: str, phase_a: dict, phase_b: dict, start_gap: float,
                     photo_weight: float, transfer: ModelBundle) -> dict:
    sizes = cfg.budget.from_branches
    recorded = ("val_mae_before", "val_mae_after", "kept", "epochs_run")  # not the arrays
    return {"tabular_branch": "mlp", "image_branch": transfer_name,
            "start_equals_mlp_max_abs_log_diff": start_gap,
            "head_learning_rate": HEAD_LR, "joint_learning_rate": JOINT_LR,
            **{f"head_{k}": phase_a[k] for k in recorded},
            **{f"joint_{k}": phase_b[k] for k in recorded},
            "photo_weights_norm": round(photo_weight, 4), "loss": "mse",
            "head_max_epochs": sizes.head_epochs,
            "head_stopped_by": stopped_by(phase_a["history"], sizes.head_epochs),
            "joint_max_epochs": sizes.joint_epochs,
            "joint_stopped_by": stopped_by(phase_b["history"], sizes.joint_epochs),
            "stopped_by": stopped_by(phase_b["history"], sizes.joint_epochs),
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
    """The network from ``mlp`` and ``branch``, phases A and B trained with ``seed``:
    (network, phase A, phase B, {part: network inputs})."""
    X = {p: {"tabular": data.tabular[p], "image": vectors[p]} for p in PARTS}
    keras.utils.set_random_seed(seed)
    network = build_from_branches(mlp.estimator, branch[3], branch[1], branch[2])
    phase_a, phase_b = _branch_phases(network, X, data, dataclasses.replace(cfg, seed=seed))
    return network, phase_a, phase_b, X


@under_strategy
def train_late_fusion_from_branches(data, cfg, mlp: ModelBundle, transfer: ModelBundle,
                                    transfer_name: str, raw_features) -> Trained:
    """Initialise from ``mlp`` + the best transfer model, train the head, then both branches.

    ``raw_features``: ``image_size -> {part: (n, D)}`` cached ImageNet features.
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
    """``seed -> predict(part)``: trained again with another seed from the same branches.<<"""
    transfer_bundle = run.bundle(bundle.params["image_branch"])
    vectors, branch = _branch_vectors(run.data, transfer_bundle,
                                      lambda size: run.features(transfer_bundle.backbone, size))

    def reseed(seed):
        with in_strategy(run.cfg):
            network, _, _, X = fit_from_branches(run.data, run.cfg, run.bundle("mlp"), branch,
                                                 vectors, seed)
        return lambda part: feats.price_from_log(network.predict(X[part], verbose=0))

    return reseed


def _train(run) -> Trained:
    """The tabular branch is ``mlp``; the image branch the transfer model validation prefers.<<"""
    name = run.best_on_validation(TRANSFER_MODELS)
    branch = run.bundle(name)
    return train_late_fusion_from_branches(
        run.data, run.cfg, run.bundle("mlp"), branch, name,
        lambda size: run.features(branch.backbone, size))


FAMILY = Family(
    name="from_branches",
    models=(ModelSpec("late_fusion_from_branches", "fusion", "deliverable2", order=140,
                      inputs=("tabular", "image"), train=_train, reseed=from_branches_reseed,
                      neural=True, base="mlp",
                      description="deliverable 1's mlp and transfer model as the two branches"),),
    sizes=Sizes(full=FromBranchesSizes(head_epochs=200, joint_epochs=100),
                smoke=FromBranchesSizes(head_epochs=3, joint_epochs=2)),
)
