"""Deliverable 1's run on the smoke budget: the published split is the one the models were trained
on, the seed study retrains for real, every network says what stopped it, and the split
sensitivity is measured."""

from __future__ import annotations

import json

import pytest
from shared.models.saved import load_bundle

NETWORKS = ("mlp", "cnn_scratch", "transfer_finetuned")


@pytest.fixture(scope="module")
def run(small_dir, tmp_path_factory):
    from deliverable1 import train
    from shared.run.devices import configure_determinism

    root = tmp_path_factory.mktemp("d1")
    configure_determinism(42)
    result = train.run(small_dir, root / "models", smoke=True, output_dir=root / "docs")
    return result, root


@pytest.mark.slow
def test_the_published_split_is_the_one_the_models_were_trained_on(run):
    result, root = run
    published = json.loads((root / "docs" / "split.json").read_text())
    trained_on = json.loads((root / "models" / "split.json").read_text())
    assert published["parts"] == {p: trained_on[p] for p in ("train", "val", "cal", "test")}
    assert published["rule"] == trained_on["rule"] and "Host ID" in published["rule"]
    assert published["dataset"]["listings_sha256"] == result.exp.data.dataset.csv_sha256
    for name in ("hgb", "mlp"):
        meta = json.loads((root / "models" / name / "metadata.json").read_text())
        assert meta["trained_on"]["split_parts_sha256"] == result.exp.data.split.parts_sha256()


@pytest.mark.slow
def test_the_seed_study_retrains_hgb_and_mlp_for_real(run):
    result, root = run
    metrics = json.loads((root / "docs" / "metrics.json").read_text())
    for name in ("hgb", "mlp"):
        seeds = metrics["models"][name]["seeds"]
        assert len(seeds) == result.exp.cfg.budget.run.seeds >= 2
        assert seeds[0]["reported"] and seeds[0]["test_mae"] == metrics["models"][name]["test"]["mae"]
        assert len({s["seed"] for s in seeds}) == len(seeds)
    seeds = metrics["models"]["mlp"]["seeds"]  # hgb: see the real-data test below
    assert len({s["test_mae"] for s in seeds}) == len(seeds), "mlp: a seed changed nothing"


@pytest.mark.realdata
def test_another_seed_gives_another_hgb(real_data_dir, tmp_path):
    """The seed study's hgb retrains differ (features subsampled at every split)."""
    import numpy as np

    from shared.run.start import prepare
    from shared.models.families import baselines

    exp = prepare(real_data_dir, tmp_path / "models", smoke=True)
    trained = baselines.train_hgb(exp.data, exp.cfg)
    assert 0 < trained.bundle.params["max_features"] < 1
    reseed = baselines.hgb_reseed(exp.data, exp.cfg, trained.bundle.params)
    first, second = reseed(1042)("test"), reseed(2042)("test")
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(reseed(exp.cfg.seed)("test"), trained.predict("test"))


@pytest.mark.slow
def test_every_network_says_what_stopped_it(run):
    _, root = run
    models = json.loads((root / "docs" / "metrics.json").read_text())["models"]
    for name in (*NETWORKS, "hgb"):
        params = models[name]["params"]
        assert params["stopped_by"] in ("early_stopping", "epoch_limit"), name
    for name in NETWORKS:
        params = models[name]["params"]
        assert (params["stopped_by"] == "epoch_limit") == (params["epochs_run"] >= params["max_epochs"])


@pytest.mark.slow
def test_the_split_sensitivity_compares_a_random_split_with_the_grouped_one(run):
    result, _ = run
    table = result.analysis["split_sensitivity"]["models"]
    for name in ("hgb", "transfer_frozen"):
        row = table[name]
        assert row["grouped_test_mae"] == result.exp.results[name]["test"]["mae"]
        assert row["difference_eur"] == pytest.approx(row["random_test_mae"] - row["grouped_test_mae"])


@pytest.mark.slow
def test_transfer_frozen_tries_every_head_and_flip_and_its_folder_predicts_as_the_run(run):
    """Validation picks among backbone x head x flip; the chosen model's saved folder (with its
    flip averaging, if chosen) predicts what the run scored."""
    import numpy as np

    from shared.models.families.transfer import probe_candidates

    result, root = run
    exp, budget = result.exp, result.exp.cfg.budget
    candidates = result.exp.trained["transfer_frozen"].extra["candidates"]
    expected = {(b, s, h, f) for b, s in probe_candidates(exp.cfg)
                for h in budget.transfer.heads for f in budget.transfer.flips}
    assert {(c["backbone"], c["image_size"], c["head"], c["flip"]) for c in candidates} == expected
    bundle = result.bundles["transfer_frozen"]
    assert bundle.params["val_mae"] == min(c["val_mae"] for c in candidates)
    assert bundle.flip_tta == bundle.params["flip_tta"]
    loaded = load_bundle(root / "models" / "transfer_frozen")
    assert loaded.flip_tta == bundle.flip_tta
    np.testing.assert_allclose(loaded.predict_eur(exp.data.parts["val"]),
                               exp.predictions["transfer_frozen"]["val"], rtol=1e-4)
    start = result.exp.trained["transfer_finetuned"].bundle.params["started_from"]
    assert start["backbone"] == probe_candidates(exp.cfg)[0][0]


@pytest.mark.slow
def test_fine_tuning_starts_where_its_recorded_one_view_mae_says(run):
    """The end-to-end model fine-tuning starts from (backbone -> standardisation -> the frozen
    head, one photo, no mirror) scores the start's recorded ``val_mae_one_view``."""
    import numpy as np

    from shared.data.images import make_image_dataset
    from shared.models.families.transfer import assemble_end_to_end

    result, _ = run
    exp = result.exp
    start = result.exp.trained["transfer_frozen"].extra["finetune_start"]
    model = assemble_end_to_end(start)
    photos = make_image_dataset(exp.data.paths("val"), image_size=start.image_size, batch_size=32)
    pred = np.exp(model.predict(photos, verbose=0).reshape(-1))
    mae = float(np.mean(np.abs(pred - exp.data.y_eur("val"))))
    assert mae == pytest.approx(start.params["val_mae_one_view"], abs=0.01)
    recorded = result.exp.trained["transfer_finetuned"].bundle.params["started_from"]
    assert recorded["val_mae_one_view"] == start.params["val_mae_one_view"]
