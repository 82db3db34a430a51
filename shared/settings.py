"""Training budgets: every setting that differs between a full run and a smoke run, in one place.

A :class:`Budget` holds the epochs, search sizes, photo sizes and batch sizes of every model of
both deliverables. :data:`FULL` is what ``nox -s deliverable1`` / ``deliverable2`` train with;
:data:`SMOKE` is the tiny budget of ``--smoke`` (CI, tests: the numbers are then meaningless, the
code paths are the same). The experiment carries its budget (``exp.budget``) and every training
function reads its settings from it, so no model file decides "smoke or not" by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """Sizes of one training run. Epochs are upper bounds (early stopping usually ends sooner)."""

    # deliverable 1: baselines
    hgb_candidates: int             # settings of baselines.HGB_SPACE tried (random search)
    hgb_max_iter: int               # most boosting iterations of a fit (early stopping decides)
    # deliverable 1: mlp (also the MLP of early fusion and phase 1 of late fusion)
    mlp_configs: int                # candidates of the random search, the original's included
    mlp_epochs: int
    mlp_batch_size: int
    # deliverable 1: tabular_net (PLR embeddings + TabM ensemble, shared/models/tabular_net.py)
    tabular_net_configs: int        # candidates of its validation search, the default included
    tabular_net_epochs: int
    tabular_net_batch_size: int
    # deliverable 1: photo models
    cnn_image_size: int             # px, square
    cnn_epochs: int
    transfer_image_size: int        # px, square: transfer models and the fusion models' photos
    finetune_blocks: int            # top backbone blocks unfrozen when fine-tuning
    finetune_epochs: int            # transfer_finetuned
    photo_batch_size: int           # batches of photos streamed from disk
    # deliverable 2
    fusion_components: tuple        # photo reductions early fusion tries (k PCA components, "score")
    early_extra_configs: int        # MLP configurations tried at the chosen reduction
    late_grid_size: int | None      # settings of late_fusion.PHOTO_GRID tried (None: all)
    late_finetune_epochs: int       # late_fusion phase 2, end to end
    branches_head_epochs: int       # late_fusion_from_branches phase A
    branches_joint_epochs: int      # late_fusion_from_branches phase B
    # prediction intervals (every model)
    interval_difficulty_rows: int   # training rows (seeded sample) the interval width model sees
    # the seed study (hgb, mlp, the fusion model validation picks)
    seeds: int                      # seeds per model, the run's own included
    # transfer_frozen: (backbone, px) probed besides EfficientNet-Lite0 at transfer_image_size
    probe_backbones: tuple = ()
    # transfer_frozen: heads tried on the cached features ("linear", "mlp"), with and without
    # horizontal flips (training on photo and mirror, predicting from their averaged features)
    photo_heads: tuple = ("linear", "mlp")
    photo_flips: tuple = (False, True)
    photo_head_epochs: int = 100    # most epochs of the "mlp" head (early stopping decides)
    # report diagnostics (what the reports show; nothing is trained with them)
    importance_repeats: int = 3     # shuffles per column of the permutation importance
    occlusion_photos: int = 48      # validation photos of the occlusion-sensitivity map


#: The budget of the rendered reports (``nox -s deliverable1`` / ``deliverable2``), sized for the
#: 10,351-listing set (~6,200 training photos) on a 2-core CPU: deliverable 1 within 45 min and
#: deliverable 2 within 30 min with a warm feature cache. Photo sides and epoch caps are what
#: those limits allow; early stopping ends the tabular searches well before their cap.
FULL = Budget(
    hgb_candidates=16, hgb_max_iter=3000,
    mlp_configs=12, mlp_epochs=200, mlp_batch_size=128,
    tabular_net_configs=4, tabular_net_epochs=100, tabular_net_batch_size=256,
    cnn_image_size=96, cnn_epochs=30, transfer_image_size=224, finetune_blocks=2,
    finetune_epochs=3, photo_batch_size=32,
    fusion_components=(8, 16, 32, 64, "score"), early_extra_configs=1, late_grid_size=None,
    late_finetune_epochs=2, branches_head_epochs=200, branches_joint_epochs=100,
    interval_difficulty_rows=2000, seeds=5,
    probe_backbones=(("efficientnet_lite2", 260),),
)

#: A budget for the 814-listing set: more epochs and larger photos, affordable on ~490 training
#: rows (``--budget small-set`` on the training entry points).
SMALL_SET = replace(FULL, mlp_epochs=300, mlp_batch_size=64, cnn_image_size=128, cnn_epochs=40,
                    finetune_epochs=6, late_finetune_epochs=3)

#: The tiny budget of ``--smoke`` runs: every code path, numbers meaningless.
SMOKE = Budget(
    hgb_candidates=2, hgb_max_iter=50,
    mlp_configs=2, mlp_epochs=5, mlp_batch_size=64,
    tabular_net_configs=2, tabular_net_epochs=3, tabular_net_batch_size=64,
    cnn_image_size=64, cnn_epochs=2, transfer_image_size=96, finetune_blocks=1,
    finetune_epochs=1, photo_batch_size=32,
    fusion_components=(8, "score"), early_extra_configs=1, late_grid_size=1,
    late_finetune_epochs=1, branches_head_epochs=3, branches_joint_epochs=2,
    interval_difficulty_rows=64, seeds=2, importance_repeats=1, occlusion_photos=4,
    photo_head_epochs=2,
)


#: The budgets by name (``--budget NAME``; recorded in metrics.json and in model provenance).
BUDGETS = {"full": FULL, "small-set": SMALL_SET, "smoke": SMOKE}


def budget_for(smoke: bool, name: str | None = None) -> Budget:
    """The budget called ``name`` (see :data:`BUDGETS`), else :data:`SMOKE` for a smoke run and
    :data:`FULL` otherwise."""
    if name is not None:
        if name not in BUDGETS:
            raise ValueError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}")
        return BUDGETS[name]
    return SMOKE if smoke else FULL


def budget_name(budget: Budget) -> str:
    """The name of ``budget`` in :data:`BUDGETS` ("custom" for any other)."""
    return next((name for name, known in BUDGETS.items() if known == budget), "custom")
