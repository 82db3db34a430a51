"""shared.run.budgets: the 814-listing budget keeps the photo and epoch settings the reports had on
that set; the full (10k) budget is smaller per photo; smoke is tiny."""

from __future__ import annotations

import dataclasses

import pytest

from shared.run import budgets as settings

#: The settings the model files held as ``x if exp.smoke else y`` before shared/run/budgets.py.
FULL_BEFORE = {"hgb_candidates": 16, "hgb_max_iter": 3000, "mlp_configs": 12, "mlp_epochs": 300,
               "mlp_batch_size": 64, "cnn_image_size": 128, "cnn_epochs": 40,
               "transfer_image_size": 224, "finetune_blocks": 2, "finetune_epochs": 6,
               "photo_batch_size": 32, "fusion_components": (8, 16, 32, 64, "score"),
               "early_extra_configs": 1, "late_grid_size": None, "late_finetune_epochs": 3,
               "branches_head_epochs": 200, "branches_joint_epochs": 100}
SMOKE_BEFORE = {"hgb_candidates": 2, "hgb_max_iter": 50, "mlp_configs": 2, "mlp_epochs": 5,
                "mlp_batch_size": 64, "cnn_image_size": 64, "cnn_epochs": 2,
                "transfer_image_size": 96, "finetune_blocks": 1, "finetune_epochs": 1,
                "photo_batch_size": 32, "fusion_components": (8, "score"),
                "early_extra_configs": 1, "late_grid_size": 1, "late_finetune_epochs": 1,
                "branches_head_epochs": 3, "branches_joint_epochs": 2}


#: Settings added since (gradient boosting's candidates and tree cap are the random search's,
#: early-stopped on validation, since the host-grouped split). The interval calibration is fitted
#: after training; tabular_net did not exist then; the seed study retrains chosen settings;
#: transfer_frozen probes other backbones, heads and flips; the reports' diagnostics have their
#: sizes.
ADDED = {"interval_difficulty_rows", "tabular_net_configs", "tabular_net_epochs",
         "tabular_net_batch_size", "seeds", "probe_backbones", "importance_repeats",
         "occlusion_photos", "photo_heads", "photo_flips", "photo_head_epochs"}


def _before(budget) -> dict:
    values = dataclasses.asdict(budget)
    assert set(values) - set(FULL_BEFORE) == ADDED
    return {k: v for k, v in values.items() if k not in ADDED}


def test_small_set_budget_is_the_budget_of_the_814_listing_reports():
    assert _before(settings.SMALL_SET) == FULL_BEFORE


def test_full_budget_trains_each_photo_model_less_than_the_small_set_one():
    full, small = settings.FULL, settings.SMALL_SET
    assert full.cnn_image_size < small.cnn_image_size and full.cnn_epochs < small.cnn_epochs
    assert full.finetune_epochs < small.finetune_epochs
    assert full.late_finetune_epochs < small.late_finetune_epochs
    assert full.transfer_image_size == small.transfer_image_size  # same cached features


def test_smoke_budget_keeps_the_tiny_ci_settings():
    assert _before(settings.SMOKE) == SMOKE_BEFORE


def test_budget_is_chosen_by_the_smoke_flag_and_is_frozen():
    assert settings.budget_for(False) is settings.FULL
    assert settings.budget_for(True) is settings.SMOKE
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.FULL.mlp_epochs = 1


def test_grids_sliced_by_the_full_budget_are_whole():
    from shared.models.families.baselines import HGB_SPACE, hgb_candidates
    from shared.models.families.late_fusion import PHOTO_GRID

    drawn = hgb_candidates(settings.FULL.hgb_candidates, 42)
    assert len({tuple(sorted(p.items())) for p in drawn}) == settings.FULL.hgb_candidates
    assert all(p[k] in HGB_SPACE[k] for p in drawn for k in HGB_SPACE)
    assert drawn == hgb_candidates(settings.FULL.hgb_candidates, 42)  # seeded
    assert PHOTO_GRID[:settings.FULL.late_grid_size] == PHOTO_GRID
    assert len(hgb_candidates(settings.SMOKE.hgb_candidates, 42)) == 2
    assert len(PHOTO_GRID[:settings.SMOKE.late_grid_size]) == 1
