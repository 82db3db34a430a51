"""The ``airbnb-dl`` command line: data check (text and JSON), input errors, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from fixtures import TRICKY_EXPECTED_DROPS, listing_row, make_dataset_dir, tree_state
from shared.features import tabular as feats
from shared.data import schema
from shared.cli import EXIT_INPUT_ERROR, main
from shared.models.saved import save_bundle

ROOT = Path(__file__).resolve().parents[1]


def test_data_check_prints_rows_read_usable_and_drops(tricky_dir, isolated_cache, capsys):
    assert main(["data", "check", "--data-dir", str(tricky_dir)]) == 0

    out = capsys.readouterr().out
    assert f"dataset directory : {tricky_dir.resolve()}" in out
    assert "rows read         : 16" in out
    assert "rows usable       : 6" in out
    for reason, ids in TRICKY_EXPECTED_DROPS.items():
        shown = ", ".join(map(str, ids))
        assert f"{len(ids):5d}  {reason}  (IDs: {shown})" in out
    assert "price (EUR/night) : min 45.00, median 60.00, max 1200.00" in out
    assert "photo width (px)  : min 24, median 24, max 24" in out


def test_data_check_json(tricky_dir, isolated_cache, capsys):
    assert main(["data", "check", "--data-dir", str(tricky_dir), "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == 16 and summary["rows_usable"] == 6
    assert summary["drops"] == {k: len(v) for k, v in TRICKY_EXPECTED_DROPS.items()}
    assert summary["data_dir"] == str(tricky_dir.resolve())
    assert summary["room_types"] == {"Entire home/apt": 5, "Private room": 1}


def test_data_check_reads_the_environment_variable(small_dir, monkeypatch, isolated_cache, capsys):
    monkeypatch.setenv("AIRBNB_DATA_DIR", str(small_dir))
    assert main(["data", "check"]) == 0
    assert "rows usable       : 40" in capsys.readouterr().out

    monkeypatch.setenv("AIRBNB_DATA_DIR", str(small_dir / "nope"))
    assert main(["data", "check"]) == EXIT_INPUT_ERROR
    assert "(from AIRBNB_DATA_DIR)" in capsys.readouterr().err


def test_missing_directory_is_one_line_and_exit_2_without_traceback(tmp_path):
    missing = tmp_path / "no-such-dir"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "data", "check", "--data-dir",
                           str(missing)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)

    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("airbnb-dl: error: ") and str(missing) in lines[0]
    assert "Traceback" not in proc.stderr and "airbnb-dl data fetch" in lines[0]


def test_missing_columns_are_a_one_line_error(tmp_path, capsys):
    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in ("City", "Amenities")]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1)], columns=columns)

    assert main(["data", "check", "--data-dir", str(data_dir)]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("airbnb-dl: error: ")
    assert "missing required column(s): City" in err and "Amenities" not in err  # optional


def test_data_check_lists_the_absent_opendatasoft_columns(tmp_path, isolated_cache, capsys):
    absent = ["Amenities", "Description", "Last Scraped"]
    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in absent]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1)], columns=columns)

    assert main(["data", "check", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert (f"absent columns    : 3 of the {len(schema.OPENDATASOFT_COLUMNS)} OpenDataSoft "
            "columns: Last Scraped, Description, Amenities") in out
    assert "features not built: amenities_count, description_length" in out
    assert "rows usable       : 1" in out


def test_usage_errors_exit_with_argparse_status():
    with pytest.raises(SystemExit) as info:
        main(["data"])
    assert info.value.code == 2


# --------------------------------------------------------------------------- predict

@pytest.fixture
def saved_model(small_dataset, tmp_path):
    from shared.models.bundle import ModelBundle

    preprocessor = feats.make_preprocessor().fit(small_dataset.frame)
    estimator = Ridge().fit(preprocessor.transform(small_dataset.frame),
                            feats.log_target(small_dataset.prices))
    return save_bundle(ModelBundle("ridge", ("tabular",), estimator, preprocessor=preprocessor), 
        tmp_path / "models" / "ridge")


def test_predict_scores_usable_listings_and_lists_the_others(saved_model, tricky_dir, tmp_path,
                                                             isolated_cache, capsys):
    before = tree_state(tricky_dir)
    out = tmp_path / "pred" / "predictions.csv"

    status = main(["predict", "--model", str(saved_model), "--data-dir", str(tricky_dir),
                   "--out", str(out)])

    assert status == 1  # some listings could not be scored
    table = pd.read_csv(out)
    assert list(table.columns) == ["ID", "predicted_price"]
    # prediction mode keeps listings without a valid price (109, 110, 111)
    assert table["ID"].tolist() == [101, 102, 103, 104, 105, 109, 110, 111, 113]
    assert (table["predicted_price"] > 0).all()
    captured = capsys.readouterr()
    assert "skipped 106: photo truncated or corrupt" in captured.err
    assert "skipped 112: outside Madrid, Spain" in captured.err
    assert "wrote 9 predictions" in captured.out and "metrics on the 6 listings" in captured.out
    assert tree_state(tricky_dir) == before


def test_predict_never_writes_into_the_dataset_directory(saved_model, tricky_dir, isolated_cache,
                                                         capsys):
    before = tree_state(tricky_dir)
    status = main(["predict", "--model", str(saved_model), "--data-dir", str(tricky_dir),
                   "--out", str(tricky_dir / "predictions.csv")])
    assert status == EXIT_INPUT_ERROR
    assert "never written to" in capsys.readouterr().err
    assert tree_state(tricky_dir) == before


def test_predict_with_a_directory_that_is_not_a_model(tricky_dir, tmp_path, capsys):
    status = main(["predict", "--model", str(tmp_path), "--data-dir", str(tricky_dir),
                   "--out", str(tmp_path / "p.csv")])
    assert status == EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no metadata.json" in err


def _fitted_ridge(dataset, directory: Path) -> Path:
    from shared.models.bundle import ModelBundle

    preprocessor = feats.make_preprocessor().fit(dataset.frame)
    estimator = Ridge().fit(preprocessor.transform(dataset.frame), feats.log_target(dataset.prices))
    return save_bundle(ModelBundle("ridge", ("tabular",), estimator, preprocessor=preprocessor), directory)


def test_predict_on_a_directory_lacking_a_fitted_column_is_one_line(saved_model, tmp_path,
                                                                    isolated_cache, capsys):
    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in ("Amenities", "Bedrooms")]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1)], columns=columns)

    status = main(["predict", "--model", str(saved_model), "--data-dir", str(data_dir),
                   "--out", str(tmp_path / "p.csv")])

    assert status == EXIT_INPUT_ERROR and not (tmp_path / "p.csv").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("note: model 'ridge' has no interval calibration")  # saved so
    err = lines[-1]
    assert len(lines) == 2 and err.startswith("airbnb-dl: error: ")
    assert err.endswith("lacks column(s) model 'ridge' was fitted on: Bedrooms, Amenities")
    assert str(data_dir / "listings.csv") in err


def test_a_model_fitted_on_fewer_columns_scores_a_directory_with_more(tmp_path, isolated_cache,
                                                                      capsys):
    from shared.data.dataset import load_dataset

    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in ("Amenities", "Description")]
    few = make_dataset_dir(tmp_path / "few", columns=columns, n=30, seed=3)
    model = _fitted_ridge(load_dataset(few), tmp_path / "models" / "ridge")
    full = make_dataset_dir(tmp_path / "full", n=30, seed=3)  # same listings, every column

    assert main(["predict", "--model", str(model), "--data-dir", str(full),
                 "--out", str(tmp_path / "full.csv")]) == 0
    assert main(["predict", "--model", str(model), "--data-dir", str(few),
                 "--out", str(tmp_path / "few.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full.csv"), pd.read_csv(tmp_path / "few.csv"))
