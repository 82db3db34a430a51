"""shared.models.files: model folders are loaded without running code from them (issue 25).

* good folders: every kind of fitted part round-trips through skops with identical predictions;
* malicious folders (a pickle whose ``__reduce__`` runs a command, a skops file naming an untrusted
  type, a Keras ``Lambda``): refused before anything runs (a marker file the payload would create
  never appears), one line on stderr, exit status 2;
* damaged or mixed-up folders (truncated ``model.keras``, a deleted file, a file from another
  model's folder, a hand-edited JSON, an older joblib folder): one line naming the file, exit 2.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from shared.features import tabular as feats
from shared.models import files as model_files
from shared.cli import EXIT_INPUT_ERROR, main
from shared.models.files import ModelLoadError, load_part, save_part, type_name, write_metadata
from shared.models.bundle import BUNDLE_FORMAT, ModelBundle
from shared.models.saved import load_bundle, save_bundle, trusted_types

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- payloads

class Payload:
    """Building it from a file runs ``__setstate__``, which creates the marker file: what a
    malicious skops file would do if its type were trusted."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __getstate__(self):
        return {"marker": self.marker}

    def __setstate__(self, state):
        Path(state["marker"]).touch()


class _RunsCommand:
    """Unpickling it runs ``touch <marker>`` (the attack of issue 25)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps(_RunsCommand(marker))


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def fitted(small_dataset):
    """(preprocessor, X, y) fitted on the 40 synthetic listings."""
    preprocessor = feats.make_preprocessor().fit(small_dataset.frame)
    x = np.asarray(preprocessor.transform(small_dataset.frame), dtype=np.float32)
    return preprocessor, x, feats.log_target(small_dataset.prices)


def save_ridge(fitted, directory: Path, estimator=None, name="ridge") -> Path:
    preprocessor, x, y = fitted
    estimator = estimator if estimator is not None else Ridge(alpha=1.0).fit(x, y)
    return save_bundle(ModelBundle(name, ("tabular",), estimator, preprocessor=preprocessor,
                                   deliverable="deliverable1"), directory)


def reseal(directory: Path) -> None:
    """Recompute the digests as a forger would (so the content checks are what refuses)."""
    write_metadata(directory, json.loads((directory / "metadata.json").read_text()))


def predict(model: Path, data_dir: Path, out: Path, capsys) -> tuple[int, str, list[str]]:
    status = main(["predict", "--model", str(model), "--data-dir", str(data_dir), "--out", str(out)])
    captured = capsys.readouterr()
    return status, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def assert_one_line_refusal(model, small_dir, tmp_path, capsys, *fragments) -> str:
    """``airbnb-dl predict`` on ``model``: exit 2, nothing on stdout, no file written, one line on
    stderr containing every fragment; returns that line."""
    out = tmp_path / "refused.csv"
    status, stdout, lines = predict(model, small_dir, out, capsys)
    assert status == EXIT_INPUT_ERROR, lines
    assert stdout == "" and not out.exists()
    assert len(lines) == 1 and lines[0].startswith("airbnb-dl: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- good folders

def test_every_kind_of_fitted_part_round_trips_exactly(fitted, tmp_path):
    from shared.features.photo_reducers import PhotoPriceScore, make_image_reducer

    preprocessor, x, y = fitted
    photos = np.random.default_rng(0).normal(size=(len(y), 12)).astype(np.float32)
    parts = {
        "mean": (DummyRegressor().fit(x, y), "predict", x),
        "ridge": (Ridge(alpha=3.0).fit(x, y), "predict", x),
        "hgb": (HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y), "predict", x),
        "scaler": (StandardScaler().fit(photos), "transform", photos),
        "pca": (make_image_reducer(4, seed=0).fit(photos), "transform", photos),
        "score": (PhotoPriceScore(seed=0).fit(photos, y), "transform", photos),
    }
    trusted = trusted_types("early_fusion")  # the family whose models hold every kind
    for name, (obj, method, data) in parts.items():
        reloaded = load_part(save_part(obj, tmp_path / f"{name}.skops", trusted), trusted)
        assert type(reloaded) is type(obj), name
        np.testing.assert_array_equal(getattr(reloaded, method)(data), getattr(obj, method)(data))


def test_preprocessor_round_trip_transforms_identically(fitted, small_dataset, tmp_path):
    preprocessor, *_ = fitted
    reloaded = load_part(save_part(preprocessor, tmp_path / "preprocessor.skops"))
    np.testing.assert_array_equal(reloaded.transform(small_dataset.frame),
                                  preprocessor.transform(small_dataset.frame))
    assert feats.input_columns(reloaded) == feats.input_columns(preprocessor)


def test_a_good_folder_predicts_exactly_as_the_model_in_memory(fitted, small_dataset, small_dir,
                                                               tmp_path, isolated_cache, capsys):
    preprocessor, x, y = fitted
    hgb = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
    bundle = ModelBundle("hgb", ("tabular",), hgb, preprocessor=preprocessor, family="baselines")
    before = bundle.predict_log(small_dataset)
    directory = save_bundle(bundle, tmp_path / "models" / "hgb")

    assert sorted(p.name for p in directory.iterdir()) == \
        ["estimator.skops", "metadata.json", "preprocessor.skops"]
    np.testing.assert_array_equal(load_bundle(directory).predict_log(small_dataset), before)
    status, stdout, _ = predict(directory, small_dir, tmp_path / "p.csv", capsys)
    assert status == 0 and "wrote 40 predictions" in stdout
    table = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(table["predicted_price"].to_numpy(),
                                  np.round(feats.price_from_log(before), 2))


def test_metadata_records_every_file_and_its_own_digest(fitted, tmp_path):
    directory = save_ridge(fitted, tmp_path / "ridge")
    meta = json.loads((directory / "metadata.json").read_text())

    assert meta["format"] == BUNDLE_FORMAT == 3
    assert set(meta["files"]) == {"estimator.skops", "preprocessor.skops"}
    for name, digest in meta["files"].items():
        assert digest["bytes"] == (directory / name).stat().st_size and len(digest["sha256"]) == 64
    assert len(meta["metadata_sha256"]) == 64
    # re-indenting (no value changed) or a hidden file of the OS keeps the folder valid
    (directory / "metadata.json").write_text(json.dumps(meta, indent=None))
    (directory / ".DS_Store").write_bytes(b"\0")
    model_files.verify_files(directory, meta)
    load_bundle(directory)


def test_the_trusted_types_come_from_the_objects_and_the_family_that_saved_the_model():
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    from shared.features.photo_reducers import PhotoPriceScore, _as_float64

    base = {type_name(obj) for obj in (np.dtype, feats.FeatureEngineer, feats._Present,
                                       feats._to_float32)}
    assert model_files.base_trusted_types() == base == trusted_types("")
    assert "shared.features.tabular.FeatureEngineer" in base  # what skops names it today
    assert trusted_types("baselines") == base | {type_name(TreePredictor)}
    assert trusted_types("early_fusion") == base | {type_name(obj) for obj in (
        TreePredictor, PhotoPriceScore, _as_float64)}
    assert trusted_types("mlp") == base  # a Keras model's only skops part is its preprocessor


def test_loading_a_tabular_model_does_not_import_keras(fitted, tmp_path):
    directory = save_ridge(fitted, tmp_path / "ridge")
    code = ("import sys; from shared.models.saved import load_bundle; "
            f"load_bundle({str(directory)!r}); "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_save_refuses_a_part_that_loading_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="posix.system|nt.system"):
        save_part(FunctionTransformer(os.system), tmp_path / "part.skops")
    assert not (tmp_path / "part.skops").exists()


# --------------------------------------------------------------------------- malicious folders

def test_a_skops_part_naming_an_untrusted_type_is_refused_and_never_built(fitted, small_dir, tmp_path,
                                                                          capsys):
    import skops.io as sio

    marker = tmp_path / "pwned"
    directory = save_ridge(fitted, tmp_path / "models" / "ridge")
    sio.dump(Payload(marker), directory / "estimator.skops")
    reseal(directory)  # the digests match: only the type check stands in the way

    line = assert_one_line_refusal(directory, small_dir, tmp_path, capsys, "estimator.skops",
                                   "does not trust", type_name(Payload), "nothing from it was run")
    assert not marker.exists(), "the payload must never run"
    with pytest.raises(ModelLoadError, match="does not trust"):
        load_part(directory / "estimator.skops")
    assert not marker.exists()
    # Control: the payload is real, trusting its type would have run it.
    sio.load(directory / "estimator.skops", trusted=[type_name(Payload)])
    assert marker.exists(), line


@pytest.mark.parametrize("resealed", [False, True], ids=["as-copied", "digests-recomputed"])
def test_a_malicious_pickle_in_place_of_a_part_is_refused_without_running(fitted, small_dir, tmp_path,
                                                                          capsys, resealed):
    marker = tmp_path / "pwned"
    directory = save_ridge(fitted, tmp_path / "models" / "ridge")
    (directory / "estimator.skops").write_bytes(malicious_pickle(marker))
    if resealed:
        reseal(directory)
    reason = "not a readable skops file" if resealed else "truncated or replaced"

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, "estimator.skops", reason)
    assert not marker.exists(), "the pickle payload must never run"


def old_joblib_folder(fitted, directory: Path, marker: Path) -> Path:
    """A bundle of format 1 (what earlier versions saved) whose estimator.joblib was replaced by
    a pickle that runs ``touch <marker>``: the attack as reported in issue 25."""
    good = save_ridge(fitted, directory.parent / "good")
    meta = json.loads((good / "metadata.json").read_text())
    directory.mkdir(parents=True)
    (directory / "estimator.joblib").write_bytes(malicious_pickle(marker))
    (directory / "preprocessor.joblib").write_bytes(malicious_pickle(marker))
    old = {k: v for k, v in meta.items() if k not in ("files", "metadata_sha256")}
    (directory / "metadata.json").write_text(json.dumps({**old, "format": 1}))
    return directory


def test_an_old_joblib_folder_gets_one_retrain_line_and_is_never_unpickled(fitted, small_dir, tmp_path):
    marker = tmp_path / "pwned"
    directory = old_joblib_folder(fitted, tmp_path / "models" / "hgb", marker)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "predict", "--model", str(directory),
                           "--data-dir", str(small_dir), "--out", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("airbnb-dl: error: ") and str(directory) in lines[0]
    assert "older version" in lines[0] and "retrain it with `nox -s deliverable1`" in lines[0]
    assert not marker.exists(), "the pickle payload must never run"


def test_deliverable2_reuse_goes_through_the_safe_loader(fitted, small_dataset, tmp_path):
    from shared.features.model_data import data_for_split
    from shared.data.split import make_split
    from shared.run.budgets import budget_for
    from shared.run.config import RunConfig
    from shared.run.experiment import Experiment
    from shared.run.records import provenance

    marker = tmp_path / "pwned"
    models = tmp_path / "models"
    old_joblib_folder(fitted, models / "hgb", marker)
    tampered = save_ridge(fitted, models / "mlp")
    (tampered / "estimator.skops").write_bytes(malicious_pickle(marker))
    exp = Experiment(data_for_split(small_dataset, make_split(small_dataset, 42)),
                     RunConfig(data_dir=tmp_path, models_dir=models, budget=budget_for(True)))
    current = provenance(exp.data, exp.cfg)
    assert exp._try_reuse("hgb", current).startswith("models/hgb was saved by an older version")
    assert exp._try_reuse("mlp", current).startswith("models/mlp/estimator.skops: truncated")
    assert not exp.bundles and not marker.exists()


def test_a_keras_lambda_layer_is_refused(tmp_path, small_dir, capsys):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    directory = save_bundle(ModelBundle("lambda", ("image_features",), model), tmp_path / "models" / "lambda")

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, "model.keras",
                            "Keras cannot load it", "Lambda")


# --------------------------------------------------------------------------- damaged or mixed-up

def keras_bundle(fitted, directory: Path) -> Path:
    from shared.models.layers import build_mlp

    preprocessor, x, y = fitted
    model = build_mlp(x.shape[1], (4,), dropout=0.0, l2=0.0, target_mean=float(y.mean()))
    return save_bundle(ModelBundle("mlp", ("tabular",), model, preprocessor=preprocessor), directory)


def test_a_truncated_model_keras_is_one_line(fitted, small_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    directory = keras_bundle(fitted, tmp_path / "models" / "mlp")
    path = directory / "model.keras"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, str(path), "truncated")


@pytest.mark.parametrize("name", ["estimator.skops", "preprocessor.skops", "metadata.json"])
def test_a_deleted_file_is_one_line(fitted, small_dir, tmp_path, capsys, name):
    directory = save_ridge(fitted, tmp_path / "models" / "ridge")
    (directory / name).unlink()
    expected = "no metadata.json" if name == "metadata.json" else f"{directory / name}: missing"

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, expected)


def test_a_file_from_another_models_folder_is_one_line(fitted, small_dir, tmp_path, capsys):
    preprocessor, x, y = fitted
    ours = save_ridge(fitted, tmp_path / "models" / "ridge")
    # larger than our ridge's file (a smaller one reads "truncated or replaced"); skops files
    # name their arrays by object id, so even the same model saved twice differs in bytes
    other = save_bundle(ModelBundle("hgb", ("tabular",),
                                    HistGradientBoostingRegressor(max_iter=5, random_state=0)
                                    .fit(x, y), preprocessor=preprocessor, family="baselines"),
                        tmp_path / "models" / "hgb")
    shutil.copyfile(other / "estimator.skops", ours / "estimator.skops")

    assert_one_line_refusal(ours, small_dir, tmp_path, capsys, str(ours / "estimator.skops"),
                            "altered or from another model")


def test_a_file_the_metadata_does_not_record_is_one_line(fitted, small_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    ours = save_ridge(fitted, tmp_path / "models" / "ridge")
    other = keras_bundle(fitted, tmp_path / "models" / "mlp")
    shutil.copyfile(other / "model.keras", ours / "model.keras")

    assert_one_line_refusal(ours, small_dir, tmp_path, capsys, str(ours / "model.keras"),
                            "not part of this model")


def test_a_folder_of_another_model_kind_is_one_line(fitted, small_dir, tmp_path, capsys):
    directory = save_ridge(fitted, tmp_path / "models" / "ridge")
    meta = json.loads((directory / "metadata.json").read_text())
    write_metadata(directory, {**meta, "estimator": "keras"})  # a sealed but inconsistent folder

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, "model.keras",
                            "records no such file")


@pytest.mark.parametrize("edit", ["metadata-value", "metadata-not-json", "metadata-foreign",
                                  "intervals-value"])
def test_a_hand_edited_json_is_one_line(fitted, small_dataset, small_dir, tmp_path, capsys, edit):
    from shared.evaluation.intervals import fit_calibration

    preprocessor, x, y = fitted
    bundle = ModelBundle("ridge", ("tabular",), Ridge().fit(x, y), preprocessor=preprocessor)
    pred = bundle.predict_log(small_dataset)
    bundle.intervals = fit_calibration(pred[:20], y[:20], small_dataset.frame.iloc[:20])
    directory = save_bundle(bundle, tmp_path / "models" / "ridge")
    meta_path, intervals_path = directory / "metadata.json", directory / "intervals.json"
    meta = json.loads(meta_path.read_text())
    if edit == "metadata-value":
        meta_path.write_text(json.dumps({**meta, "inputs": ["image"]}, indent=2))
        expected = (str(meta_path), "edited after the model was saved")
    elif edit == "metadata-not-json":
        meta_path.write_text(meta_path.read_text()[:-10])
        expected = (str(meta_path), "cannot be read as JSON")
    elif edit == "metadata-foreign":
        meta_path.write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
        expected = (str(meta_path), "not the metadata of a model saved by this project")
    else:
        text = intervals_path.read_text()
        assert '"n_calibration": 20,' in text
        intervals_path.write_text(text.replace('"n_calibration": 20,', '"n_calibration": 21,'))
        expected = (str(intervals_path), "from another model")

    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, *expected)


# --------------------------------------------------------------------------- a blend's folder

def test_a_blend_folder_predicts_with_its_members_and_refuses_a_changed_or_missing_one(
        fitted, small_dataset, small_dir, tmp_path, isolated_cache, capsys):
    from shared.models.families.blend import Blend, blend_log

    preprocessor, x, y = fitted
    models = tmp_path / "models"
    first = load_bundle(save_ridge(fitted, models / "ridge"))
    hgb = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y)
    second = load_bundle(save_bundle(ModelBundle("hgb", ("tabular",), hgb, preprocessor=preprocessor,
                                                 family="baselines"), models / "hgb"))
    blend = ModelBundle("blend", ("tabular",), Blend((first, second), 0.3), family="blend")
    directory = save_bundle(blend, models / "blend")
    assert (directory / "estimator.json").is_file() and not (directory / "estimator.skops").exists()
    expected = blend_log(first.predict_log(small_dataset), second.predict_log(small_dataset), 0.3)
    np.testing.assert_allclose(load_bundle(directory).predict_log(small_dataset), expected)
    status, _, _ = predict(directory, small_dir, tmp_path / "p.csv", capsys)
    assert status == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")["predicted_price"],
                               np.round(feats.price_from_log(expected), 2), atol=0.006)

    # a member retrained since (other weights, a valid folder of its own) is not the blend's
    save_ridge(fitted, models / "ridge", Ridge(alpha=50.0).fit(x, y))
    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, str(models / "ridge"),
                            "not the model the blend beside it was saved with")
    shutil.rmtree(models / "ridge")
    assert_one_line_refusal(directory, small_dir, tmp_path, capsys, str(models / "ridge"),
                            "missing")
