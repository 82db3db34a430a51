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

import tempfile
import time

import keras
import numpy as np

from shared.models.transfer import feature_standardisation, unfreeze_top
from shared import features as feats
from shared.split import PART_NAMES as PARTS
from shared.backbones import build_backbone
from shared.images import make_image_dataset
from shared.bundles import ModelBundle
from shared.devices import global_batch_size
from shared.evaluation import mae
from shared.experiment import Trained
from shared.training import compile_regressor, fit_regressor, stopped_by, under_strategy
from shared.models.layers import dense_block, regression_output
from shared.search import Fitted, tune_on_validation

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


def assemble_end_to_end(network: keras.Model, encoder: keras.Model, image_size: int,
                        name: str) -> keras.Model:
    """{"tabular": (b, d_tab), "image": (b, s, s, 3) float32 [0, 255]} -> (b, 1) log price:
    the photo goes through ``encoder`` (the backbone, a nested layer named after it) and then
    into ``network`` with the tabular row."""
    tab_dim = network.input["tabular"].shape[-1]
    tabular = keras.Input(shape=(tab_dim,), name="tabular")
    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    vectors = encoder(image)
    return keras.Model({"tabular": tabular, "image": image},
                       network({"tabular": tabular, "image": vectors}), name=name)


def photo_data(data, cfg, part: str, image_size: int, batch_size: int = 32, training: bool = False,
               cache_dir: str | None = None):
    """tf.data of ({"image", "tabular"}, log price) for one part (shuffled + augmented if training),
    ``batch_size`` rows per replica."""
    return make_image_dataset(data.paths(part), data.y_log(part), extra_inputs=data.tabular[part],
                              image_size=image_size, batch_size=global_batch_size(batch_size, cfg.replicas),
                              shuffle=training, augment=training, seed=cfg.seed, cache_dir=cache_dir)


def split_end_to_end(bundle: ModelBundle) -> tuple[keras.Model, keras.Model]:
    """An end-to-end bundle (photo -> backbone -> network) -> (encoder, network): the backbone,
    a nested model named ``bundle.backbone``, and the other nested model (the head of a transfer
    model, the two-branch network of a fusion model), which takes the backbone vectors."""
    model = bundle.estimator
    encoder = model.get_layer(bundle.backbone)
    network = next(layer for layer in model.layers
                   if isinstance(layer, keras.Model) and layer.name != bundle.backbone)
    return encoder, network


def uses_pretrained_backbone(bundle: ModelBundle) -> bool:
    """True when a fusion bundle's backbone holds the unchanged ImageNet weights, so the cached
    backbone features are its photo vectors: ``late_fusion`` whose phase 2 was reverted, and
    ``late_fusion_from_branches`` built on ``transfer_frozen``."""
    if bundle.name == "late_fusion":
        return not bundle.params.get("phase2_kept", True)
    if bundle.name == "late_fusion_from_branches":
        return bundle.params.get("image_branch") == "transfer_frozen"
    return False


def encode_photos(encoder: keras.Model, paths, image_size: int, batch_size: int = 32) -> np.ndarray:
    """(n, D) float32: ``encoder`` applied to the photos (for backbones with no disk cache,
    e.g. deliverable 1's fine-tuned one)."""
    data = make_image_dataset(paths, image_size=image_size, batch_size=batch_size)
    return np.asarray(encoder.predict(data, verbose=0), dtype=np.float32)


def _mae_eur(pred_log, y_eur) -> float:
    return mae(y_eur, feats.price_from_log(pred_log))


def _kept(phase: dict) -> str:
    """"kept" or "reverted": whether validation kept a phase's weights (learning-curve labels)."""
    return "kept" if phase["kept"] else "reverted"


def train_if_better(model: keras.Model, fit, val_mae, before: float | None = None) -> dict:
    """Run ``fit()`` (returns a Keras history dict); keep the new weights only if ``val_mae()``
    (EUR) went down, else restore the weights from before. ``before``: the validation MAE of
    the current weights when already known (else ``val_mae()`` is called first). Returns what
    happened."""
    before = val_mae() if before is None else before
    weights = model.get_weights()
    history = fit()
    after = val_mae()
    kept = after < before
    if not kept:
        model.set_weights(weights)
    return {"history": history, "val_mae_before": round(before, 3), "val_mae_after": round(after, 3),
            "kept": bool(kept), "epochs_run": len(history.get("loss", []))}


def _frozen_batchnorm(model: keras.Model, trainable: bool) -> None:
    """Set ``trainable`` on every layer of ``model`` except batch norm, which stays frozen (and so
    in inference mode: its statistics are those the branch was trained with)."""
    model.trainable = True
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif not isinstance(layer, keras.Model):
            layer.trainable = trainable


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# --------------------------------------------------------------------------- late_fusion

@under_strategy
def train_late_fusion(data, cfg, raw: dict, backbone: str, image_size: int, tab_config: dict,
                      epochs: int | None = None, finetune_epochs: int | None = None,
                      log=print) -> Trained:
    """Phase 1 on cached features (grid on validation), phase 2 end to end.

    Args:
        raw: {"train"/"val"/"test": (n, D)} cached backbone features at ``image_size``.
        tab_config: tabular branch = deliverable 1's chosen ``mlp`` (hidden, dropout, l2,
            learning_rate).
        epochs / finetune_epochs: phase 1 / phase 2 epochs (default ``cfg.budget.mlp_epochs`` /
            ``cfg.budget.late_finetune_epochs``).
    """
    grid = PHOTO_GRID[:cfg.budget.late_grid_size]
    epochs = epochs or cfg.budget.mlp_epochs
    finetune_epochs = finetune_epochs or cfg.budget.late_finetune_epochs
    n_blocks, finetune_lr = cfg.budget.finetune_blocks, FINETUNE_LR
    start = time.perf_counter()
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

    search = tune_on_validation(
        build_and_fit, grid, lambda m, _: feats.price_from_log(m.predict(X["val"], verbose=0)),
        data.y_eur("val"))
    network, params, trials = search.model, search.params, search.trials
    phase1_val_log = network.predict(X["val"], verbose=0).reshape(-1)
    log(f"  late fusion phase 1 (cached features): validation MAE "
        f"{_mae_eur(phase1_val_log, data.y_eur('val')):.2f} EUR with {params}")

    # Phase 2: end to end on photos, top blocks of the backbone unfrozen, low learning rate.
    encoder = build_backbone(backbone, image_size=image_size)
    encoder.trainable = False
    model = assemble_end_to_end(network, encoder, image_size, name="late_fusion")
    with tempfile.TemporaryDirectory(prefix="late-fusion-photos-") as cache:
        val = photo_data(data, cfg, "val", image_size, cache_dir=f"{cache}/val")
        e2e_val_log = model.predict(val, verbose=0).reshape(-1)
        equivalence = float(np.max(np.abs(e2e_val_log - phase1_val_log)))
        n_trainable = unfreeze_top(model, backbone, n_blocks)
        compile_regressor(model, finetune_lr)
        train = photo_data(data, cfg, "train", image_size, training=True, cache_dir=f"{cache}/train")
        after = {}

        def val_mae_after():
            after["log"] = model.predict(val, verbose=0).reshape(-1)
            return _mae_eur(after["log"], data.y_eur("val"))

        phase2 = train_if_better(
            model, lambda: fit_regressor(model, train, val, epochs=finetune_epochs, patience=2),
            val_mae_after, before=_mae_eur(e2e_val_log, data.y_eur("val")))
    # validation predictions of the weights kept: phase 2's, or the end-to-end phase-1 network's
    val_log = after["log"] if phase2["kept"] else e2e_val_log
    log(f"  late fusion phase 2 (end to end): validation MAE {phase2['val_mae_before']} -> "
        f"{phase2['val_mae_after']} EUR, {'kept' if phase2['kept'] else 'reverted to phase 1'}")
    bundle = ModelBundle(
        "late_fusion", ("tabular", "image"), model, data.preprocessor, backbone=backbone,
        image_size=image_size, deliverable="deliverable2",
        params={"tab_hidden": list(tab_config["hidden"]), "dropout": tab_config["dropout"],
                "l2": tab_config["l2"], "img_hidden": list(params["img_hidden"]),
                "head_hidden": list(params["head_hidden"]), "img_dropout": IMG_DROPOUT,
                "img_l2": IMG_L2, "phase1_epochs": len(search.history["loss"]),
                "phase1_max_epochs": epochs, "phase1_stopped_by": stopped_by(search.history, epochs),
                "phase2_max_epochs": finetune_epochs,
                "phase2_stopped_by": stopped_by(phase2["history"], finetune_epochs),
                "stopped_by": stopped_by(phase2["history"], finetune_epochs),
                "phase1_trials": [{**{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in t.items()}} for t in trials],
                "phase1_equivalence_max_abs_log_diff": equivalence,
                "phase2_unfrozen_top_blocks": n_blocks, "phase2_trainable_backbone_tensors": n_trainable,
                "phase2_learning_rate": finetune_lr,
                "phases": [{"start": 0, "label": "1: cached features"},
                           {"start": len(search.history["loss"]),
                            "label": "2: end to end " + _kept(phase2)}],
                **{f"phase2_{k}": v for k, v in phase2.items() if k != "history"},
                "backbone": backbone, "image_size": image_size,
                "batchnorm": "backbone BN frozen (inference mode)"})
    history = {k: search.history[k] + phase2["history"].get(k, [])
               for k in ("loss", "val_loss")}
    val_pred = feats.price_from_log(val_log)
    return Trained(bundle, time.perf_counter() - start, history=history,
                   predict=lambda part: val_pred if part == "val" else None)


# --------------------------------------------------------------------------- from branches

def split_at_output(model: keras.Model, name: str, output_layer: str = "log_price"):
    """A deliverable-1 MLP (``shared.training.build_mlp``) -> (trunk, (kernel, bias)).

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


@under_strategy
def train_late_fusion_from_branches(data, cfg, mlp: ModelBundle, transfer: ModelBundle,
                                    transfer_name: str, raw_features, log=print) -> Trained:
    """Initialise from ``mlp`` + the best transfer model, train the head, then both branches.

    Args:
        mlp: deliverable 1's trained ``mlp`` (the tabular branch).
        transfer, transfer_name: the transfer model best on validation (the image branch).
        raw_features: ``image_size -> {"train"/"val"/"test": (n, D)}`` cached ImageNet features.
    """
    head_epochs, joint_epochs = cfg.budget.branches_head_epochs, cfg.budget.branches_joint_epochs
    head_lr, joint_lr = BRANCHES_HEAD_LR, BRANCHES_JOINT_LR
    start = time.perf_counter()
    size = transfer.image_size
    encoder, mean, var, img_head = image_branch_of(transfer)
    if encoder is None:
        vectors = raw_features(size)
    else:
        vectors = {p: encode_photos(encoder, data.paths(p), size) for p in PARTS}
    X = {p: {"tabular": data.tabular[p], "image": vectors[p]} for p in PARTS}
    y_train, y_val = data.y_log("train"), data.y_log("val")
    keras.utils.set_random_seed(cfg.seed)
    network = build_from_branches(mlp.estimator, img_head, mean, var)
    start_log = network.predict(X["val"], verbose=0).reshape(-1)
    mlp_log = np.log(mlp.predict_eur(data.parts["val"]))
    start_gap = float(np.max(np.abs(start_log - mlp_log)))

    def val_mae():
        return _mae_eur(network.predict(X["val"], verbose=0), data.y_eur("val"))

    branches = [layer for layer in network.layers if isinstance(layer, keras.Model)]
    for branch in branches:        # phase A: the branches frozen, only the new head learns
        branch.trainable = False
    compile_regressor(network, head_lr)
    phase_a = train_if_better(network, lambda: fit_regressor(
        network, (X["train"], y_train), (X["val"], y_val), epochs=head_epochs, patience=15,
        seed=cfg.seed),
        val_mae)
    for branch in branches:        # phase B: both branches unfrozen, batch norm still frozen
        _frozen_batchnorm(branch, trainable=True)
    compile_regressor(network, joint_lr)
    phase_b = train_if_better(network, lambda: fit_regressor(
        network, (X["train"], y_train), (X["val"], y_val), epochs=joint_epochs, patience=10,
        seed=cfg.seed),
        val_mae)
    log(f"  from branches: validation MAE start {phase_a['val_mae_before']} -> head "
        f"{phase_a['val_mae_after']} ({'kept' if phase_a['kept'] else 'reverted'}) -> joint "
        f"{phase_b['val_mae_after']} ({'kept' if phase_b['kept'] else 'reverted'}) EUR")
    u_tab = mlp.estimator.get_layer("log_price").get_weights()[0].shape[0]
    photo_weight = float(np.linalg.norm(network.get_layer("fusion_log_price").get_weights()[0][u_tab:]))
    if encoder is None:
        encoder = build_backbone(transfer.backbone, image_size=size)
    encoder.trainable = False
    model = assemble_end_to_end(network, encoder, size, name="late_fusion_from_branches")
    bundle = ModelBundle(
        "late_fusion_from_branches", ("tabular", "image"), model, data.preprocessor,
        backbone=transfer.backbone, image_size=size, deliverable="deliverable2",
        params={"tabular_branch": "mlp", "image_branch": transfer_name,
                "start_equals_mlp_max_abs_log_diff": start_gap,
                "head_learning_rate": head_lr, "joint_learning_rate": joint_lr,
                **{f"head_{k}": v for k, v in phase_a.items() if k != "history"},
                **{f"joint_{k}": v for k, v in phase_b.items() if k != "history"},
                "photo_weights_norm": round(photo_weight, 4),
                "head_max_epochs": head_epochs,
                "head_stopped_by": stopped_by(phase_a["history"], head_epochs),
                "joint_max_epochs": joint_epochs,
                "joint_stopped_by": stopped_by(phase_b["history"], joint_epochs),
                "stopped_by": stopped_by(phase_b["history"], joint_epochs),
                "phases": [{"start": 0, "label": "A: head " + _kept(phase_a)},
                           {"start": len(phase_a["history"].get("loss", [])),
                            "label": "B: joint " + _kept(phase_b)}],
                "batchnorm": "frozen (inference mode) in both branches and the backbone",
                "backbone": transfer.backbone, "image_size": size})
    history = {k: phase_a["history"].get(k, []) + phase_b["history"].get(k, [])
               for k in ("loss", "val_loss")}
    return Trained(bundle, time.perf_counter() - start, history=history)
