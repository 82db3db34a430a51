"""experiments.calibration_choice: ``select`` end to end on a small synthetic models folder (a
ridge, a gradient boosting model and their blend, saved as the project saves them), printing one
row per calibration option, and never predicting a test row nor reading a test price."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from experiments import calibration_choice as cc
from fixtures import make_dataset_dir, synthetic_rows, write_photo
from shared.data.schema import IMAGES_DIR
from shared.features.model_data import ModelData
from shared.models.bundle import ModelBundle
from shared.models.families.blend import Blend
from shared.models.saved import load_bundle, save_bundle
from shared.run.start import prepare

HGB_PARAMS = {"learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 5,
              "l2_regularization": 0.0, "max_features": 1.0, "n_trees": 20}


def data_dir_with_hosts(root):
    """400 synthetic listings, a distinct photo each, hosts of 1 to 3 listings."""
    rows = synthetic_rows(400, seed=5)
    for i, row in enumerate(rows):
        row["Host ID"] = f"h{i // 3}" if i < 150 else f"h{i}"
    directory = make_dataset_dir(root, rows=rows)
    for i, row in enumerate(rows):  # the fixture's colour per ID repeats: photos made distinct
        write_photo(directory / IMAGES_DIR / f"{row['ID']}.jpg", colour=(i % 200, i // 200, 90))
    return directory


@pytest.fixture
def models(tmp_path, isolated_cache):
    """(data dir, models dir, experiment): ridge, hgb and their blend trained on the split."""
    data_dir, models_dir = data_dir_with_hosts(tmp_path / "data"), tmp_path / "models"
    exp = prepare(data_dir, models_dir, smoke=False)  # the split, persisted in models_dir
    x, y, trained_on = exp.data.tabular["train"], exp.data.y_log("train"), exp.data.provenance()
    ridge = ModelBundle("ridge", ("tabular",), Ridge(alpha=1.0).fit(x, y), exp.data.preprocessor,
                        family="baselines", trained_on=trained_on)
    hgb = HistGradientBoostingRegressor(max_iter=20, max_leaf_nodes=7, random_state=0).fit(x, y)
    hgb = ModelBundle("hgb", ("tabular",), hgb, exp.data.preprocessor, params=HGB_PARAMS,
                      family="baselines", trained_on=trained_on)
    members = tuple(load_bundle(save_bundle(b, models_dir / b.name)) for b in (ridge, hgb))
    save_bundle(ModelBundle("blend", (), Blend(members, 0.4), family="blend",
                            trained_on=trained_on), models_dir / "blend")
    return data_dir, models_dir, exp


def tables(out: str) -> dict[str, list[list[str]]]:
    """{model: [table lines (header first)]} of the printed output."""
    found = {}
    for section in out.split("##### ")[1:]:
        name, *blocks = section.split("\n=== ")
        found[name.splitlines()[0]] = [block.strip().splitlines()[1:] for block in blocks]
    return found


def assert_option_rows(table: list[str], names: list[str]) -> None:
    header, *rows = table
    assert header.split()[:5] == ["option", "coverage", "median", "width", "EUR"], header
    assert len(rows) == len(names), rows
    for line, name in zip(rows, names, strict=True):
        assert line.strip().startswith(name + " "), (line, name)


def test_select_prints_every_option_and_predicts_no_test_row(models, monkeypatch, capsys):
    data_dir, models_dir, exp = models
    predicted, original = [], ModelBundle.predict_log

    def spy(self, dataset, *args, **kwargs):
        predicted.append(np.asarray(dataset.ids))
        return original(self, dataset, *args, **kwargs)

    def no_test_prices(method):
        def guarded(self, part):
            assert part != "test", "a test price was read"
            return method(self, part)
        return guarded

    monkeypatch.setattr(ModelBundle, "predict_log", spy)
    for name in ("y_log", "y_eur"):
        monkeypatch.setattr(ModelData, name, no_test_prices(getattr(ModelData, name)))
    status = cc.main(["select", "--models-dir", str(models_dir), "--data-dir", str(data_dir),
                      "--models", "hgb,blend", "--reps", "2"])
    out = capsys.readouterr().out
    assert status == 0

    # (b) no test row is ever predicted; the sample of training rows, val and cal are
    test_ids = exp.data.parts["test"].ids
    assert predicted and not any(np.isin(ids, test_ids).any() for ids in predicted)
    seen = np.concatenate(predicted)
    for part in ("val", "cal"):
        assert np.isin(exp.data.parts[part].ids, seen).all()
    assert np.isin(seen, np.concatenate([exp.data.parts[p].ids for p in cc.PREDICTED_PARTS])).all()

    # (a) one row per option: every option in the cross-validation, the ones needing no
    # validation rows in the transfer; CQR only when mapie is installed (both are tabular)
    with_cqr = importlib.util.find_spec("mapie") is not None
    opts = cc.options({} if with_cqr else None)
    every, transfer = [o.name for o in opts], [o.name for o in opts if not o.needs_val]
    assert any(name.startswith("earlier: pooled") for name in every)
    assert len(every) == (9 if with_cqr else 7)
    assert (cc.CQR_SKIPPED in out) is not with_cqr
    printed = tables(out)
    assert list(printed) == ["hgb", "blend"]
    for name, blocks in printed.items():
        assert len(blocks) == 4, (name, blocks)  # CV and transfer, at 80% and 90%
        for table, names in zip(blocks, (every, every, transfer, transfer), strict=True):
            assert_option_rows(table, names)
    assert "host-grouped 5-fold CV over val ∪ cal, 2 repetitions: 80% ranges" in out


def test_cqr_is_skipped_without_mapie_and_the_test_part_is_never_predicted(models, monkeypatch,
                                                                           capsys):
    data_dir, models_dir, exp = models
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mapie" else find_spec(name, *a))
    assert cc.main(["select", "--models-dir", str(models_dir), "--data-dir", str(data_dir),
                    "--models", "ridge", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert cc.CQR_SKIPPED in out and "CQR (MAPIE)" not in out
    with pytest.raises(ValueError, match="not 'test'"):
        cc.predict_part(load_bundle(models_dir / "ridge"), exp.data.parts["test"], "test")


def test_a_model_trained_on_another_split_is_refused(models, tmp_path, capsys):
    data_dir, models_dir, exp = models
    bundle = load_bundle(models_dir / "ridge")
    bundle.trained_on = {**bundle.trained_on, "split_seed": 7}
    save_bundle(bundle, models_dir / "ridge7")
    assert cc.main(["select", "--models-dir", str(models_dir), "--data-dir", str(data_dir),
                    "--models", "ridge7"]) == 2
    assert "not trained on this data and split (split_seed differ)" in capsys.readouterr().err
