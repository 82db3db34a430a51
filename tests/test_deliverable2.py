"""Tests of deliverable 2: fusion inputs, leakage, reduction, function-preserving initialisation,
saved models and the predict command on fusion models.

The realdata tests train every deliverable-2 model (and the deliverable-1 references) with smoke
settings on a small copy of the real dataset made in a temporary folder (80 listings), so they
take about a minute; they need AIRBNB_DATA_DIR.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from deliverable2 import ablation
from shared.models import end_to_end
from shared.models.families import early_fusion, from_branches
from shared.features import tabular as feats
from shared.data import schema
from shared.models.bundle import ModelBundle
from shared.models.layers import build_mlp
from shared.models.saved import load_bundle

ROOT = Path(__file__).resolve().parent.parent

DATA_DIR = os.environ.get("AIRBNB_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR, reason="AIRBNB_DATA_DIR is not set: the realdata "
                                "tests need a real dataset directory (listings.csv + images/)")
FUSION = ("early_fusion", "hgb_with_embeddings", "late_fusion", "late_fusion_from_branches")
#: besides FUSION, ``blend``: a folder naming its two members' folders and its weight


# --------------------------------------------------------------------------- helpers

def make_subset(source: Path, dest: Path, ids=None, n: int | None = None,
                corrupt: int | None = None) -> list[int]:
    """Copy some rows of ``source``/listings.csv and their photos into ``dest`` (tmp only).

    ``ids`` (or the first ``n`` listings with a photo) are copied; the photo of ``corrupt`` is
    replaced by bytes that are not an image. Returns the copied IDs.
    """
    source, dest = Path(source), Path(dest)
    frame = pd.read_csv(source / "listings.csv", sep=schema.CSV_SEPARATOR, dtype=str,
                        keep_default_na=False)
    id_col = frame[schema.ID_COLUMN]
    has_photo = id_col.map(lambda i: (source / "images" / f"{i}.jpg").is_file())
    if ids is None:
        ids = [int(i) for i in id_col[has_photo].head(n)]
    rows = frame[id_col.isin([str(i) for i in ids])]
    (dest / "images").mkdir(parents=True)
    rows.to_csv(dest / "listings.csv", sep=schema.CSV_SEPARATOR, index=False,
                quoting=csv.QUOTE_MINIMAL)
    for listing in ids:
        target = dest / "images" / f"{listing}.jpg"
        if listing == corrupt:
            target.write_bytes(b"this is not a JPEG" * 10)
        else:
            shutil.copyfile(source / "images" / f"{listing}.jpg", target)
    return list(ids)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every deliverable-2 model trained with smoke settings on 80 real listings."""
    if not DATA_DIR:
        pytest.skip("AIRBNB_DATA_DIR is not set")
    from deliverable2 import train as d2
    from shared.run.devices import configure_determinism
    from shared.run.start import prepare

    root = tmp_path_factory.mktemp("d2")
    make_subset(Path(DATA_DIR), root / "data", n=80)
    configure_determinism(42)
    exp = prepare(root / "data", root / "models", smoke=True)
    run = d2.train_all(exp)
    return types.SimpleNamespace(exp=exp, run=run, root=root)


# --------------------------------------------------------------------------- no data needed

def test_reducer_is_fitted_on_the_rows_it_is_given():
    rng = np.random.default_rng(0)
    raw = {"train": rng.normal(3.0, 2.0, (50, 20)).astype(np.float32),
           "val": rng.normal(-5.0, 1.0, (10, 20)).astype(np.float32)}
    reducer = early_fusion.fit_image_reducer(raw, 8, seed=0)
    assert np.allclose(reducer.named_steps["scale"].mean_, raw["train"].mean(axis=0), atol=1e-5)
    assert np.allclose(reducer.named_steps["pca"].mean_, 0.0, atol=1e-5)
    reduced = reducer.transform(raw["train"])
    assert reduced.shape == (50, 8)
    assert np.allclose(reduced.std(axis=0, ddof=1), 1.0, atol=1e-3)  # whitened
    assert early_fusion.fit_image_reducer(raw, 500, seed=0).named_steps["pca"].n_components_ == 20


def test_photo_price_score_trains_on_out_of_fold_scores():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 40))
    y = X[:, 0] * 0.5 + rng.normal(0, 1.0, 120)
    raw = {"train": X[:100], "val": X[100:]}
    score = early_fusion.fit_image_reducer(raw, "score", seed=0, y_train=y[:100])
    assert score.oof_.shape == (100, 1)
    assert np.allclose(score.model_[0].mean_, X[:100].mean(axis=0))
    in_sample = score.transform(X[:100])
    # the in-sample scores fit the training prices better than the out-of-fold ones do
    assert np.corrcoef(in_sample[:, 0], y[:100])[0, 1] > np.corrcoef(score.oof_[:, 0], y[:100])[0, 1]
    photo = early_fusion.reduced_features(raw, score)
    assert np.array_equal(photo["train"], score.oof_)
    assert np.allclose(photo["val"], score.transform(X[100:]))
    assert early_fusion.reducer_label(score) == "score"


def _mlp(input_dim, hidden, seed):
    keras.utils.set_random_seed(seed)
    model = build_mlp(input_dim, hidden, dropout=0.1, l2=0.0, target_mean=4.0)
    for layer in model.layers:  # move batch-norm statistics off their defaults
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean.shape, layer.moving_variance.shape
            layer.moving_mean.assign(np.random.default_rng(seed).normal(size=mean))
            layer.moving_variance.assign(np.random.default_rng(seed + 1).uniform(0.5, 2, size=var))
    return model


@pytest.mark.parametrize("img_hidden", [(8,), ()])
def test_from_branches_starts_as_exactly_the_tabular_model(img_hidden):
    tab, head = _mlp(12, (16, 8), 1), _mlp(30, img_hidden, 2)
    mean, var = np.full(30, 0.5), np.full(30, 2.0)
    network = from_branches.build_from_branches(tab, head, mean, var)
    rng = np.random.default_rng(3)
    x_tab = rng.normal(size=(7, 12)).astype(np.float32)
    x_img = rng.normal(size=(7, 30)).astype(np.float32)
    fused = network.predict({"tabular": x_tab, "image": x_img}, verbose=0)
    assert np.allclose(fused, tab.predict(x_tab, verbose=0), atol=1e-5)
    # the copies are independent of the deliverable-1 models they came from
    before = [w.copy() for w in tab.get_weights()]
    network.get_layer("tabular_branch").layers[1].kernel.assign(
        np.zeros(network.get_layer("tabular_branch").layers[1].kernel.shape))
    assert all(np.array_equal(a, b) for a, b in zip(before, tab.get_weights(), strict=True))


def test_train_if_better_restores_the_weights_when_validation_gets_worse():
    model = _mlp(3, (4,), 0)
    start = [w.copy() for w in model.get_weights()]
    scores = iter([10.0, 12.0])

    def fit():
        model.get_layer("log_price").bias.assign([9.0])
        return {"loss": [1.0]}

    outcome = end_to_end.train_if_better(model, fit, lambda: next(scores))
    assert not outcome["kept"]
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights(), strict=True))
    scores = iter([10.0, 8.0])
    assert end_to_end.train_if_better(model, fit, lambda: next(scores))["kept"]
    assert float(model.get_layer("log_price").bias.numpy()[0]) == 9.0


def test_batchnorm_stays_frozen_when_a_branch_is_unfrozen():
    model = _mlp(5, (4, 4), 0)
    model.trainable = False
    end_to_end.frozen_batchnorm(model, trainable=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
        elif layer.weights:
            assert layer.trainable


def _fake_exp(y, predictions, val_mae):
    results = {n: {"test": {"mae": float(np.mean(np.abs(p - y)))}, "val": {"mae": val_mae[n]},
                   "params": {}} for n, p in predictions.items()}
    return types.SimpleNamespace(results=results, data=types.SimpleNamespace(y_eur=lambda part: y),
                                 predictions={n: {"test": p} for n, p in predictions.items()},
                                 cfg=types.SimpleNamespace(seed=42),
                                 prices=lambda name, part: predictions[name])


def test_goal_is_judged_on_the_fusion_model_validation_picks():
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 150, 200)
    tab = y + rng.normal(0, 15, 200)
    good = y + (tab - y) * 0.8        # 20% smaller errors on every listing
    same = tab.copy()
    preds = {"mlp": tab, "hgb": y + (tab - y) * 1.2, "early_fusion": good, "late_fusion": same}
    exp = _fake_exp(y, preds, {"mlp": 1, "hgb": 1, "early_fusion": 5.0, "late_fusion": 3.0})
    reference = ablation.best_tabular(exp)
    assert reference == "mlp"
    comparisons = ablation.paired_comparisons(exp, reference, names=("early_fusion", "late_fusion"))
    assert comparisons["early_fusion"]["p_a_better"] == 1.0
    goal = ablation.goal_check(exp, comparisons, reference)
    # validation picks late_fusion (val MAE 3 < 5), which is no better: goal not reached
    assert goal["chosen_on_validation"] == "late_fusion" and goal["verdict"] == "not reached"
    assert goal["reached_by"] == ["early_fusion"]
    exp.results["early_fusion"]["val"]["mae"] = 1.0
    goal = ablation.goal_check(exp, comparisons, reference)
    assert goal["verdict"] == "undecided" and goal["seeds"]["why"] == "no seed study"
    exp.results["mlp"]["seeds"] = [{"seed": s, "test_mae": 10.0} for s in range(5)]
    exp.results["early_fusion"]["seeds"] = [{"seed": s, "test_mae": 9.0} for s in range(5)]
    goal = ablation.goal_check(exp, comparisons, reference)
    assert goal["verdict"] == "reached" and goal["seeds"] == {"won": 5, "of": 5, "enough": True}
    exp.results["early_fusion"]["seeds"][4]["test_mae"] = 10.5      # one seed crosses the goal
    assert ablation.goal_check(exp, comparisons, reference)["verdict"] == "undecided"
    exp.results["early_fusion"]["seeds"][3]["test_mae"] = 11.0      # wins 3 of 5
    assert ablation.goal_check(exp, comparisons, reference)["verdict"] == "not reached"


def _save_ridge(exp, name):
    """A tabular model trained and saved by ``exp`` (so it records ``exp``'s provenance)."""
    from sklearn.linear_model import Ridge

    from shared.models.spec import Trained

    model = Ridge().fit(exp.data.tabular["train"], exp.data.y_log("train"))
    exp.evaluate(Trained(ModelBundle(name, ("tabular",), model, exp.data.preprocessor), 0.0))
    return load_bundle(exp.cfg.models_dir / name)


def test_a_saved_model_is_reused_only_on_the_split_and_budget_it_records(small_dir, tmp_path):
    from shared.run.records import provenance, provenance_difference
    from shared.run.start import prepare

    exp = prepare(small_dir, tmp_path / "models", smoke=True)
    bundle = _save_ridge(exp, "mlp")
    current = provenance(exp.data, exp.cfg)
    assert bundle.trained_on == current
    assert bundle.trained_on["split_fingerprint"] == exp.data.split.fingerprint
    assert bundle.trained_on["listings_sha256"] == exp.data.dataset.csv_sha256
    assert bundle.trained_on["budget"] == "smoke"
    assert provenance_difference(bundle.trained_on, current) is None
    # the same rows split with another seed: another split, same fingerprint of the rows
    other = prepare(small_dir, tmp_path / "other-models", smoke=True, seed=7)
    assert other.data.split.fingerprint == exp.data.split.fingerprint
    assert "split" in provenance_difference(bundle.trained_on, provenance(other.data, other.cfg))
    # another version of listings.csv (same IDs, other contents)
    edited = {**current, "listings_sha256": "0" * 64}
    assert "another version of the data" in provenance_difference(bundle.trained_on, edited)
    # another budget (a smoke-trained model in a full run)
    full = prepare(small_dir, tmp_path / "models", smoke=False)
    reason = provenance_difference(bundle.trained_on, provenance(full.data, full.cfg))
    assert reason == "the saved model was trained under another budget (smoke, this run: full)"
    # a bundle that does not record its provenance (saved by an older version)
    assert "does not record" in provenance_difference({}, current)


def test_reuse_or_train_retrains_a_reference_saved_on_another_split(small_dir, tmp_path):
    from shared.run.start import prepare

    models = tmp_path / "models"
    first = prepare(small_dir, models, smoke=True)
    _save_ridge(first, "hgb")
    (models / "split.json").unlink()
    second = prepare(small_dir, models, smoke=True, seed=7)  # same folder, another split
    _save_ridge(second, "mlp")
    asked = []

    class Stop(Exception):
        pass

    def train_missing(names):
        asked.extend(names)
        raise Stop

    second.train = train_missing
    with pytest.raises(Stop):
        second.reuse_or_train(["hgb", "mlp"])
    assert "hgb" in asked and "mlp" not in asked   # mlp fits this split; hgb was another split's
    assert second.origin["mlp"] == "reused" and "another split" in second.origin["hgb"]


# --------------------------------------------------------------------------- real data

@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_the_blend_is_chosen_on_validation_from_its_members_predictions(trained):
    """The blend's validation MAE is what its recorded members and weight give on validation, and
    it is no worse on validation than its tabular member alone (weight 0 is a candidate)."""
    from shared.evaluation.metrics import mae
    from shared.models.families.blend import blend_log

    exp, params = trained.exp, trained.exp.results["blend"]["params"]
    first, second = params["members"]
    val = {m: np.log(exp.predictions[m]["val"]) for m in (first, second)}
    expected = mae(exp.data.y_eur("val"), np.exp(blend_log(val[first], val[second], params["weight"])))
    assert exp.results["blend"]["val"]["mae"] == pytest.approx(expected, rel=1e-9)
    assert exp.results["blend"]["val"]["mae"] <= exp.results[first]["val"]["mae"] + 1e-9
    # its folder names its members (by their metadata's sha256) and weight; it loads as a model
    reloaded = load_bundle(exp.cfg.models_dir / "blend")
    assert np.allclose(reloaded.predict_eur(exp.data.parts["test"]),
                       exp.predictions["blend"]["test"], rtol=1e-6)


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_every_fusion_model_is_trained_evaluated_and_saved(trained):
    exp = trained.exp
    for name in FUSION:
        assert name in exp.results, name
        assert (exp.cfg.models_dir / name / "metadata.json").is_file()
        assert np.isfinite(exp.results[name]["test"]["mae"])
        assert len(exp.predictions[name]["test"]) == len(exp.data.parts["test"].frame)
    # the references are on the same rows
    for name in ("mlp", "hgb", trained.run.best_image):
        assert len(exp.predictions[name]["test"]) == len(exp.data.parts["test"].frame)


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_fusion_inputs_contain_no_price_derived_column(trained):
    exp = trained.exp
    test = exp.data.parts["test"]
    tampered = test.subset(test.ids)
    frame = tampered.frame
    for column in ("Price", "Weekly Price", "Monthly Price"):
        if column in frame:
            frame[column] = "9999"
    frame["price"] = 9999.0
    for name in FUSION:
        bundle = trained.run.bundles[name]
        names = list(map(str, bundle.preprocessor.get_feature_names_out()))
        assert not [n for n in names if any(n.split("__", 1)[-1].startswith(bad)
                                            for bad in feats.FORBIDDEN_INPUTS)], name
        assert np.allclose(bundle.predict_log(test), bundle.predict_log(tampered), atol=1e-6), name


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_photo_reducer_is_fitted_on_training_rows_only(trained):
    from shared.models.families.early_fusion import _fusion_photos

    run = trained.run
    raw = _fusion_photos(run.exp)
    everything = np.vstack([raw[p] for p in ("train", "val", "test")])

    def scaler(reducer):
        if isinstance(reducer, early_fusion.PhotoPriceScore):
            assert len(reducer.oof_) == len(raw["train"])
            return reducer.model_[0]
        assert np.allclose(reducer.named_steps["pca"].mean_, 0.0, atol=1e-4)
        return reducer.named_steps["scale"]

    # the chosen reducer and every candidate early fusion tried see the training rows only
    candidates = run.exp.shared["photo_reducers"]
    for reducer in (run.bundles["early_fusion"].image_reducer, *candidates.values()):
        assert np.allclose(scaler(reducer).mean_, raw["train"].mean(axis=0), atol=1e-5)
        assert not np.allclose(scaler(reducer).mean_, everything.mean(axis=0), atol=1e-5)
    hgb = run.bundles["hgb_with_embeddings"]
    assert hgb.params["photo_reduction"] in hgb.params["photo_candidates_val_mae"]
    assert any(hgb.image_reducer is r for r in candidates.values())
    # the late-fusion standardisation too: training-row statistics
    layer = run.bundles["late_fusion"].estimator.get_layer("late_fusion_network").get_layer(
        "image_standardisation")
    assert np.allclose(np.asarray(layer.mean).reshape(-1), raw["train"].mean(axis=0), rtol=1e-4,
                       atol=1e-4)


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_late_fusion_phases_behave_as_documented(trained):
    late = trained.run.bundles["late_fusion"].params
    assert late["phase1_equivalence_max_abs_log_diff"] < 1e-3  # cached == end to end, frozen
    branches = trained.run.bundles["late_fusion_from_branches"].params
    assert branches["start_equals_mlp_max_abs_log_diff"] < 1e-5
    exp = trained.exp
    # never worse on validation than the mlp it started from
    assert exp.results["late_fusion_from_branches"]["val"]["mae"] <= \
        exp.results["mlp"]["val"]["mae"] + 1e-3


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_saved_fusion_models_predict_identically_after_reload(trained):
    exp = trained.exp
    for name in FUSION:
        reloaded = load_bundle(exp.cfg.models_dir / name)
        assert reloaded.inputs == trained.run.bundles[name].inputs
        pred = reloaded.predict_eur(exp.data.parts["test"])
        assert np.allclose(pred, exp.predictions[name]["test"], rtol=1e-4), name


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_saved_references_are_reused_only_on_the_same_split(trained, tmp_path):
    from deliverable2 import references
    from shared.run.records import provenance, provenance_difference
    from shared.run.start import prepare

    exp = trained.exp
    again = prepare(trained.root / "data", exp.cfg.models_dir, smoke=True)
    again.train = lambda *_, **__: pytest.fail("nothing to train")
    again.reuse_or_train(references.reference_names())
    assert again.origin["mlp"] == again.origin["hgb"] == "reused"
    assert again.origin["transfer_frozen"] == "reused"
    # another set of rows gives another split: the saved models do not fit it
    make_subset(Path(DATA_DIR), tmp_path / "other", ids=list(exp.data.dataset.ids[10:70]))
    other = prepare(tmp_path / "other", tmp_path / "models", smoke=True)
    assert provenance_difference(again.bundles["mlp"].trained_on, provenance(other.data, other.cfg))


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_smoke_models_are_never_reused_by_a_full_run(trained, tmp_path):
    """``python -m deliverable1.train --smoke`` into a folder, then a full deliverable 2 on the
    same folder: every deliverable-1 reference is retrained, and metrics.json says why."""
    data, models = trained.root / "data", tmp_path / "models"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for args in (["deliverable1.train", "--smoke"], ["deliverable2.train"]):
        proc = subprocess.run([sys.executable, "-m", *args, "--data-dir", str(data),
                               "--models-dir", str(models), "--out", str(tmp_path / args[0])],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stderr[-3000:]
    smoke = json.loads((tmp_path / "deliverable1.train" / "metrics.json").read_text())
    full = json.loads((tmp_path / "deliverable2.train" / "metrics.json").read_text())
    assert smoke["run"]["budget"] == "smoke" and full["run"]["budget"] == "full"
    origin = full["run"]["references"]["origin"]
    why = "the saved model was trained under another budget (smoke, this run: full)"
    for name in ("mlp", "tabular_net", "hgb", "transfer_frozen", "transfer_finetuned"):
        assert origin[name] == f"retrained: {why}", (name, origin[name])
    assert origin["cnn_scratch"] == f"not used: {why}"
    for name in ("mlp", "tabular_net", "hgb", "transfer_frozen", "transfer_finetuned"):
        meta = json.loads((models / name / "metadata.json").read_text())
        assert meta["trained_on"]["budget"] == "full"


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_predict_command_scores_a_fresh_directory_with_every_fusion_model(trained, tmp_path, capsys):
    from shared.cli import main

    exp = trained.exp
    ids = [int(i) for i in exp.data.parts["test"].ids[:5]]
    make_subset(Path(DATA_DIR), tmp_path / "fresh", ids=ids, corrupt=ids[2])
    for name in (*FUSION, "blend"):
        out = tmp_path / f"{name}.csv"
        status = main(["predict", "--model", str(exp.cfg.models_dir / name),
                       "--data-dir", str(tmp_path / "fresh"), "--out", str(out)])
        captured = capsys.readouterr()
        assert status == 1, captured.err
        assert str(ids[2]) in captured.err
        result = pd.read_csv(out)
        # every trained model carries its interval calibration, so predict adds the 80% range
        assert list(result.columns) == ["ID", "predicted_price", "price_low", "price_high"]
        assert sorted(result["ID"]) == sorted(i for i in ids if i != ids[2])
        assert (result["predicted_price"] > 0).all()
        assert ((result["price_low"] <= result["predicted_price"])
                & (result["predicted_price"] <= result["price_high"])).all()
        expected = dict(zip(exp.data.parts["test"].ids, exp.predictions[name]["test"], strict=True))
        for listing, price in zip(result["ID"], result["predicted_price"], strict=True):
            assert price == pytest.approx(expected[listing], abs=0.02), (name, listing)


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_python_m_deliverable2_train_writes_metrics_json(trained, tmp_path):
    """The command-line path runs the whole evaluation (models, analysis) and writes the same
    metrics.json as the report would, with no machine path in it."""
    models = tmp_path / "models"
    shutil.copytree(trained.exp.cfg.models_dir, models)
    for name in FUSION:  # the fusion models are trained again by the command
        shutil.rmtree(models / name)
    out = tmp_path / "out"
    env = dict(os.environ)  # PYTHONPATH and the feature cache of this test session
    done = subprocess.run([sys.executable, "-m", "deliverable2.train", "--smoke",
                           "--data-dir", str(trained.root / "data"), "--models-dir", str(models),
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text)
    assert set(FUSION) <= set(metrics["models"])
    assert metrics["run"]["references"]["origin"]["mlp"] == "reused"
    for name in ("mlp", "hgb"):  # reused, so scored exactly as in the fixture's run
        assert metrics["models"][name]["test"]["mae"] == trained.exp.results[name]["test"]["mae"]
    for name in FUSION:
        assert "test_vs_best_tabular" in metrics["models"][name]
        assert "test_photo_permutation" in metrics["models"][name]
    assert {"goal", "roles", "photo_redundancy", "conclusions"} <= set(metrics["run"])
    assert metrics["dataset"]["source"] == "data"
    assert str(tmp_path) not in text and str(trained.root) not in text
