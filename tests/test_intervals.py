"""shared.evaluation.intervals: conformal prediction intervals, their calibration, bundle round trip, predict.

Tolerances of the coverage test (stated here, used below): with ``n_cal`` calibration rows the
split conformal coverage, averaged over calibration draws, is exactly ``k / (n_cal + 1)`` with
``k = ceil((n_cal + 1) c)`` (continuous scores), i.e. between ``c`` and ``c + 1 / (n_cal + 1)``.
One repetition's test coverage varies around it with standard deviation
``sqrt(p (1 - p) (1 / (n_cal + 2) + 1 / n_test))`` (calibration quantile + test binomial): 3.1
points for ``n_cal = 200``, ``n_test = 1000``. The mean over 200 repetitions (sd 0.22 points) must
lie within 1.5 points of ``k / (n_cal + 1)``, and every repetition within 4.5 of its own sd.
"""

from __future__ import annotations

import inspect
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from fixtures import make_dataset_dir, synthetic_rows, tree_state
from shared.features import tabular as feats
from shared.cli import EXIT_INPUT_ERROR, main
from shared.evaluation.intervals import (CALIBRATION_FILE, IntervalCalibration, IntervalError,
                                         check_coverage, conformal_rank, evaluation_groups,
                                         fit_calibration, interval_metrics, interval_report)
from shared.reporting.figures import plot_coverage_by_group
from shared.reporting.sentences import coverage_sentence, interval_analysis
from shared.reporting.tables import interval_table
from shared.models.bundle import ModelBundle
from shared.models.files import ModelLoadError
from shared.models.saved import load_bundle, save_bundle
from shared.models.files import write_metadata
from shared.data.split import make_split

ROOMS = np.array(["Entire home/apt", "Private room"])


def synthetic(rng, n: int, first_id: int = 0):
    """Listings with a known, heteroscedastic log-price noise.

    The "model" predicts ``ŷ = 3.5 + x`` (x uniform in [0, 1]); the true log price is
    ``ŷ + sd * e`` with ``sd = (0.1 + 0.4 x) * (1.5 for private rooms)`` and ``e`` standard
    normal: the noise grows with the predicted price and is larger for private rooms.

    Returns (pred_log (n,), y_log (n,), frame with ID and Room Type, noise sd (n,)).
    """
    x = rng.uniform(0, 1, n)
    room = ROOMS[(rng.uniform(size=n) < 0.4).astype(int)]
    sd = (0.1 + 0.4 * x) * np.where(room == "Private room", 1.5, 1.0)
    pred = 3.5 + x
    frame = pd.DataFrame({"ID": np.arange(first_id, first_id + n), "Room Type": room})
    return pred, pred + sd * rng.standard_normal(n), frame, sd


def covered(y_log, low, high) -> np.ndarray:
    y = np.exp(y_log)
    return (y >= low) & (y <= high)


# --------------------------------------------------------------------------- coverage on known noise

def test_intervals_reach_nominal_coverage_and_adapt_to_the_noise():
    n_train, n_cal, n_test, reps = 1000, 200, 1000, 200
    coverage = {0.8: [], 0.9: []}
    by_noise = {"adaptive": [], "pooled": []}   # 80% coverage in the lowest / highest noise third
    width_ratio = []                            # median log width: highest / lowest noise third
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        train = synthetic(rng, n_train, 0)
        cal = synthetic(rng, n_cal, n_train)
        pred, y, frame, sd = synthetic(rng, n_test, n_train + n_cal)
        adaptive = fit_calibration(*cal[:3], *train[:3], mondrian=False)
        pooled = fit_calibration(*cal[:3], mondrian=False)
        low_noise, high_noise = sd < np.quantile(sd, 1 / 3), sd > np.quantile(sd, 2 / 3)
        for c in coverage:
            coverage[c].append(covered(y, *adaptive.interval(pred, frame, c)).mean())
        for name, calibration in (("adaptive", adaptive), ("pooled", pooled)):
            hits = covered(y, *calibration.interval(pred, frame, 0.8))
            by_noise[name].append((hits[low_noise].mean(), hits[high_noise].mean()))
        low, high = adaptive.interval(pred, frame, 0.8)
        log_width = np.log(high) - np.log(low)
        width_ratio.append(np.median(log_width[high_noise]) / np.median(log_width[low_noise]))

    for c, values in coverage.items():
        expected = math.ceil((n_cal + 1) * c) / (n_cal + 1)
        sd_rep = math.sqrt(expected * (1 - expected) * (1 / (n_cal + 2) + 1 / n_test))
        assert abs(np.mean(values) - expected) < 0.015, (c, np.mean(values))
        assert np.max(np.abs(np.array(values) - expected)) < 4.5 * sd_rep, c
    # adapts: the width follows the noise, so coverage holds in the calm and in the noisy third,
    # where one pooled width over-covers the first and under-covers the second
    adaptive_low, adaptive_high = np.mean(by_noise["adaptive"], axis=0)
    pooled_low, pooled_high = np.mean(by_noise["pooled"], axis=0)
    assert abs(adaptive_low - 0.8) < 0.04 and abs(adaptive_high - 0.8) < 0.04
    assert pooled_low > 0.9 and pooled_high < 0.7
    assert np.mean(width_ratio) > 2.0


def test_coverage_holds_for_a_heavy_tailed_noise_without_a_difficulty_model():
    hits = []
    for rep in range(200):
        rng = np.random.default_rng(1000 + rep)
        n_cal, n_test = 82, 500  # the calibration size of the 814-listing set
        cal_err, test_err = rng.standard_t(2, n_cal) * 0.3, rng.standard_t(2, n_test) * 0.3
        pred_cal, pred_test = rng.uniform(3, 5, n_cal), rng.uniform(3, 5, n_test)
        frame = pd.DataFrame({"Room Type": ["Private room"] * n_cal})
        calibration = fit_calibration(pred_cal, pred_cal + cal_err, frame)
        test_frame = pd.DataFrame({"Room Type": ["Private room"] * n_test})
        hits.append(covered(pred_test + test_err,
                            *calibration.interval(pred_test, test_frame, 0.8)).mean())
    expected = math.ceil(83 * 0.8) / 83  # 67 / 83 = 0.807
    assert abs(np.mean(hits) - expected) < 0.015


# --------------------------------------------------------------------------- finite-sample quantile

def test_conformal_rank_is_ceil_of_n_plus_one_times_coverage():
    for n in range(1, 40):
        for coverage in (0.05, 0.1, 0.5, 0.8, 0.9, 0.95):
            exact = math.ceil((n + 1) * Fraction(str(coverage)))
            if exact > n:
                with pytest.raises(IntervalError, match=f"this calibration has {n}"):
                    conformal_rank(n, coverage)
            else:
                assert conformal_rank(n, coverage) == max(exact, 1), (n, coverage)


def test_small_calibration_uses_the_right_order_statistic():
    residuals = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])  # n = 9, scores 0.1..0.9
    pred = np.full(9, 4.0)
    frame = pd.DataFrame({"Room Type": ["Entire home/apt"] * 9})
    calibration = fit_calibration(pred, pred + residuals, frame)

    assert calibration.n == 9 and calibration.difficulty is None
    assert calibration.quantile(0.8) == pytest.approx(0.8)   # k = ceil(10 * 0.8) = 8
    assert calibration.quantile(0.5) == pytest.approx(0.5)   # k = 5
    assert calibration.quantile(0.9) == pytest.approx(0.9)   # k = 9 = n
    assert calibration.max_coverage == pytest.approx(0.9)
    with pytest.raises(IntervalError, match="at least 10 calibration rows"):
        calibration.quantile(0.95)                           # k = 10 > n: unbounded
    low, high = calibration.interval([4.0, 3.0], frame.iloc[:2], 0.8)
    np.testing.assert_allclose(low, np.exp([3.2, 2.2]))
    np.testing.assert_allclose(high, np.exp([4.8, 3.8]))


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.2, 1.5, float("nan"), float("inf"), "abc",
                                 "", None, True])
def test_coverage_outside_zero_one_is_rejected(bad):
    with pytest.raises(IntervalError, match="strictly between 0 and 1"):
        check_coverage(bad)


def test_coverage_accepts_numbers_and_numeric_text():
    assert check_coverage("0.8") == 0.8 and check_coverage(0.95) == 0.95


# --------------------------------------------------------------------------- no test rows

def test_fit_calibration_has_no_place_for_test_rows():
    assert list(inspect.signature(fit_calibration).parameters) == [
        "pred_log", "y_log", "frame", "train_pred_log", "train_y_log", "train_frame", "mondrian"]


def test_calibration_is_the_same_whatever_rows_are_scored_later():
    rng = np.random.default_rng(7)
    train, cal = synthetic(rng, 500, 0), synthetic(rng, 100, 500)
    calibration = fit_calibration(*cal[:3], *train[:3])
    saved = json.dumps(calibration.to_dict())
    test_a, test_b = synthetic(rng, 300, 600), synthetic(rng, 50, 900)

    low_a, high_a = calibration.interval(test_a[0], test_a[2], 0.8)
    calibration.interval(test_b[0], test_b[2], 0.9)
    assert json.dumps(calibration.to_dict()) == saved
    # a row's interval does not depend on the rows scored with it
    low_1, high_1 = calibration.interval(test_a[0][:1], test_a[2].iloc[:1], 0.8)
    assert (low_1[0], high_1[0]) == (low_a[0], high_a[0])
    # and the calibration depends on the calibration rows as a set, not on their order
    order = rng.permutation(100)
    shuffled = fit_calibration(cal[0][order], cal[1][order], cal[2].iloc[order], *train[:3])
    assert shuffled.to_dict() == calibration.to_dict()
    assert calibration.calibration_ids == tuple(range(500, 600))


def test_calibration_rows_that_are_training_rows_are_refused():
    rng = np.random.default_rng(3)
    train, cal = synthetic(rng, 200, 0), synthetic(rng, 50, 190)  # IDs 190-199 in both
    with pytest.raises(IntervalError, match="10 calibration row.*also training rows"):
        fit_calibration(*cal[:3], *train[:3])
    duplicated = cal[2].assign(ID=[1] * 50)
    with pytest.raises(IntervalError, match="duplicate listing IDs"):
        fit_calibration(cal[0], cal[1], duplicated)


def test_bad_inputs_are_clear_errors():
    rng = np.random.default_rng(4)
    pred, y, frame, _ = synthetic(rng, 20)
    with pytest.raises(IntervalError, match="Room Type"):
        fit_calibration(pred, y, frame.drop(columns="Room Type"))
    with pytest.raises(IntervalError, match="20 predictions but 19 targets"):
        fit_calibration(pred, y[:-1], frame)
    with pytest.raises(IntervalError, match="non-finite"):
        fit_calibration(np.r_[pred[:-1], np.nan], y, frame)
    with pytest.raises(IntervalError, match="go together"):
        fit_calibration(pred, y, frame, train_pred_log=pred)
    with pytest.raises(IntervalError, match="malformed"):
        IntervalCalibration.from_dict({"format": 1})


def test_constant_predictions_and_rare_room_types_still_calibrate():
    rng = np.random.default_rng(5)
    n = 300
    rooms = np.where(np.arange(n) < 3, "Shared room", "Entire home/apt")  # 3 rows: no own term
    frame = pd.DataFrame({"Room Type": rooms})
    pred = np.full(n, 4.0)                                               # a "mean" model
    y = pred + rng.normal(0, 0.3, n)
    calibration = fit_calibration(pred[:100], y[:100], frame.iloc[:100], pred, y, frame)
    assert calibration.difficulty.room_types == ()
    low, high = calibration.interval(pred[:5], pd.DataFrame({"Room Type": ["Hotel"] * 5}), 0.8)
    assert np.all(low < np.exp(4.0)) and np.all(high > np.exp(4.0))


# --------------------------------------------------------------------------- metrics and report helpers

def test_interval_metrics_counts_covered_prices_and_widths():
    y = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    low = np.array([5.0, 25.0, 20.0, 30.0, 45.0, 10.0])
    high = np.array([15.0, 30.0, 40.0, 39.0, 55.0, 70.0])
    groups = {"room_type": np.array(["a", "a", "b", "b", "b", "b"])}

    m = interval_metrics(y, low, high, groups, seed=0, n_boot=200, nominal=0.8)

    assert m["coverage"] == pytest.approx(4 / 6) and m["n"] == 6 and m["nominal"] == 0.8
    assert m["below"] == pytest.approx(1 / 6) and m["above"] == pytest.approx(1 / 6)
    assert m["median_width_eur"] == pytest.approx(np.median(high - low))
    lo, hi = m["coverage_ci95"]
    assert 0 <= lo <= m["coverage"] <= hi <= 1 and lo < hi
    assert m["groups"]["room_type"]["a"] == {"n": 2, "coverage": 0.5, "coverage_ci95": None,
                                             "median_width_eur": 7.5}
    assert m["groups"]["room_type"]["b"]["coverage"] == pytest.approx(0.75)
    json.dumps(m)  # JSON-serialisable: goes into metrics.json


def test_interval_report_table_plot_and_sentence():
    rng = np.random.default_rng(8)
    train, cal, test = synthetic(rng, 400, 0), synthetic(rng, 100, 400), synthetic(rng, 300, 500)
    y_eur = np.exp(test[1])
    reports = {}
    for name, error_scale in (("ridge", 1.0), ("cnn", 1.4), ("fusion", 0.7)):
        # "models" whose errors are larger (cnn) or smaller (fusion) than the tabular one's
        def shift(part, error_scale=error_scale):
            return part[1] - error_scale * (part[1] - part[0])
        calibration = fit_calibration(shift(cal), cal[1], cal[2], shift(train), train[1],
                                      train[2])
        reports[name] = interval_report(calibration, shift(test), test[2], y_eur, seed=0,
                                        n_boot=100)
    assert set(reports["ridge"]) == {"0.8", "0.9"}
    assert set(reports["ridge"]["0.8"]["groups"]) == {"room_type", "predicted_band",
                                                      "price_band"}
    assert list(reports["ridge"]["0.8"]["groups"]["price_band"]) == ["<30", "30-50", "50-80",
                                                                     "80-120", ">=120"]

    table = interval_table(reports)
    assert list(table.index) == ["ridge", "cnn", "fusion"]
    assert "80% median width (EUR)" in table.columns and "90% coverage" in table.columns

    at80 = {name: r["0.8"] for name, r in reports.items()}
    figure = plot_coverage_by_group(at80)
    assert len(figure.axes) == 2
    kinds = {"ridge": "tabular", "cnn": "photo", "fusion": "fusion"}
    assert kinds == {"ridge": "tabular", "cnn": "photo", "fusion": "fusion"}
    sentence = coverage_sentence(at80, kinds)
    width = {name: m["median_width_eur"] for name, m in at80.items()}
    assert width["cnn"] > 1.05 * width["ridge"] > 1.05 * width["fusion"]  # the premise
    assert sentence.startswith("At 80% nominal coverage")
    assert f"cnn: median {width['cnn']:.1f} EUR" in sentence
    assert "pins the price down less than" in sentence and "the photo narrows the range" in sentence
    # the words follow the numbers: swap the roles and the sentence says the opposite
    swapped = coverage_sentence(at80, {"ridge": "photo", "cnn": "tabular", "fusion": "fusion"})
    assert "pins the price down more tightly than" in swapped
    # a named model speaks for its kind instead of the narrowest one
    with_hgb = {**at80, "hgb": at80["fusion"]}  # a narrower tabular model
    kinds_hgb = {**kinds, "hgb": "tabular"}
    assert "narrowest tabular one (hgb:" in coverage_sentence(with_hgb, kinds_hgb)
    named = coverage_sentence(with_hgb, kinds_hgb, chosen={"tabular": "ridge"})
    assert "the tabular one (ridge:" in named and "narrowest tabular" not in named
    assert sentence.count(".") >= 1 and "\n" not in sentence


def test_evaluation_groups_use_room_type_and_the_true_price_band():
    frame = pd.DataFrame({"Room Type": ["Private room", None]})
    groups = evaluation_groups(frame, [25.0, 130.0])
    assert groups["room_type"].tolist() == ["Private room", ""]
    assert groups["price_band"].tolist() == ["<30", ">=120"]


# --------------------------------------------------------------------------- bundle and predict

@pytest.fixture(scope="module")
def calibrated(small_dataset):
    """(ridge bundle fitted on the training part, split). The 40-listing fixture's calibration
    part has 3 rows, too few for an 80% interval, so its validation rows calibrate too here."""
    split = make_split(small_dataset, 42)
    train = small_dataset.subset(split.train)
    cal = small_dataset.subset(np.concatenate([split.cal, split.val]))
    preprocessor = feats.make_preprocessor().fit(train.frame)
    estimator = Ridge(alpha=3.0).fit(preprocessor.transform(train.frame),
                                     feats.log_target(train.prices))
    bundle = ModelBundle("ridge", ("tabular",), estimator, preprocessor=preprocessor,
                         deliverable="deliverable1")
    bundle.intervals = fit_calibration(bundle.predict_log(cal), feats.log_target(cal.prices),
                                       cal.frame, bundle.predict_log(train),
                                       feats.log_target(train.prices), train.frame)
    return bundle, split


def test_bundle_round_trip_keeps_the_calibration(calibrated, small_dataset, tmp_path):
    bundle, split = calibrated
    test = small_dataset.subset(split.test)
    directory = save_bundle(bundle, tmp_path / "ridge")
    loaded = load_bundle(directory)

    assert (directory / CALIBRATION_FILE).is_file()
    assert loaded.intervals.to_dict() == bundle.intervals.to_dict()
    assert loaded.intervals.calibration_ids == tuple(sorted(split.cal.tolist() + split.val.tolist()))
    pred = loaded.predict_log(test)
    for coverage in (0.5, 0.8):
        np.testing.assert_array_equal(loaded.intervals.interval(pred, test.frame, coverage),
                                      bundle.intervals.interval(pred, test.frame, coverage))


def test_bundle_without_or_with_a_broken_calibration(calibrated, tmp_path):
    bundle, _ = calibrated
    plain = ModelBundle(bundle.name, bundle.inputs, bundle.estimator, bundle.preprocessor)
    assert load_bundle(save_bundle(plain, tmp_path / "plain")).intervals is None

    directory = save_bundle(bundle, tmp_path / "broken")
    (directory / CALIBRATION_FILE).write_text('{"format": 1, "scores": [0.3, 0.1]}')
    with pytest.raises(ModelLoadError, match="intervals.json: truncated or replaced"):  # its sha256 differs
        load_bundle(directory)
    write_metadata(directory, json.loads((directory / "metadata.json").read_text()))  # re-sealed
    with pytest.raises(ModelLoadError, match="intervals.json.*sorted.*retrain"):
        load_bundle(directory)


@pytest.fixture
def saved_calibrated(calibrated, tmp_path):
    return save_bundle(calibrated[0], tmp_path / "models" / "ridge")


@pytest.fixture
def priced_dir(tmp_path):
    return make_dataset_dir(tmp_path / "new", rows=synthetic_rows(25, seed=9, first_id=5000))


def test_predict_writes_interval_columns(saved_calibrated, priced_dir, tmp_path, isolated_cache,
                                         capsys):
    before = tree_state(priced_dir)
    out = tmp_path / "pred" / "p.csv"
    assert main(["predict", "--model", str(saved_calibrated), "--data-dir", str(priced_dir),
                 "--out", str(out)]) == 0

    table = pd.read_csv(out)
    assert list(table.columns) == ["ID", "predicted_price", "price_low", "price_high"]
    assert len(table) == 25
    assert (table["price_low"] <= table["predicted_price"]).all()
    assert (table["predicted_price"] <= table["price_high"]).all()
    assert (table["price_low"] < table["price_high"]).all()
    assert all(len(v.split(".")[-1]) <= 2 for v in out.read_text().split()[1].split(",")[1:])
    text = capsys.readouterr().out
    assert "wrote 25 predictions with 80% intervals" in text
    y = np.array([float(r["Price"]) for r in synthetic_rows(25, seed=9, first_id=5000)])
    share = np.mean((y >= table["price_low"]) & (y <= table["price_high"]))
    assert f"80% intervals: coverage {share:.1%}" in text and "median width" in text
    assert "calibrated the intervals" not in text  # new listings only
    assert tree_state(priced_dir) == before

    # the tiny fixture has 7 calibration rows: 0.6 uses the 5th score, 0.8 the 7th
    narrower = tmp_path / "pred" / "p60.csv"
    assert main(["predict", "--model", str(saved_calibrated), "--data-dir", str(priced_dir),
                 "--out", str(narrower), "--coverage", "0.6"]) == 0
    table60 = pd.read_csv(narrower)
    assert (table60["price_low"] >= table["price_low"]).all()
    assert (table60["price_high"] <= table["price_high"]).all()
    assert (table60["price_high"] - table60["price_low"]).sum() < \
        (table["price_high"] - table["price_low"]).sum()


def test_predict_gives_a_room_type_never_seen_the_pooled_range(saved_calibrated, tmp_path,
                                                                isolated_cache, capsys):
    rows = synthetic_rows(6, seed=4, first_id=8000)
    for row in rows:
        row["Room Type"] = "Hotel room"  # absent from the calibration (and training) rows
    data_dir = make_dataset_dir(tmp_path / "hotels", rows=rows)
    for coverage in ("0.6", "0.8"):  # the 7-row fixture supports up to 7/8
        out = tmp_path / f"p{coverage}.csv"
        assert main(["predict", "--model", str(saved_calibrated), "--data-dir", str(data_dir),
                     "--out", str(out), "--coverage", coverage]) == 0
        table = pd.read_csv(out)
        assert list(table.columns) == ["ID", "predicted_price", "price_low", "price_high"]
        assert (table["price_low"] <= table["predicted_price"]).all()
        assert (table["predicted_price"] <= table["price_high"]).all()
    bundle = load_bundle(saved_calibrated)
    pred = np.log(table["predicted_price"].to_numpy())
    frame = pd.DataFrame({"Room Type": ["Hotel room"] * len(pred)})
    assert set(bundle.intervals.group_of(pred, frame)) == {"all listings"}


def test_predict_says_when_coverage_is_measured_on_calibration_rows(saved_calibrated, calibrated,
                                                                   small_dir, tmp_path,
                                                                   isolated_cache, capsys):
    assert main(["predict", "--model", str(saved_calibrated), "--data-dir", str(small_dir),
                 "--out", str(tmp_path / "p.csv")]) == 0
    n_cal = len(calibrated[1].cal) + len(calibrated[1].val)
    assert f"note: {n_cal} of these listings calibrated the intervals" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["1.5", "0", "1", "-0.1", "abc", "nan"])
def test_predict_rejects_a_coverage_outside_zero_one(bad, saved_calibrated, priced_dir, tmp_path,
                                                      capsys):
    out = tmp_path / "p.csv"
    status = main(["predict", "--model", str(saved_calibrated), "--data-dir", str(priced_dir),
                   "--out", str(out), f"--coverage={bad}"])
    assert status == EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("airbnb-dl: error: --coverage:")
    assert "strictly between 0 and 1" in err and not out.exists()


def test_predict_rejects_a_coverage_its_calibration_cannot_support(saved_calibrated, calibrated,
                                                                   priced_dir, tmp_path, capsys):
    n = calibrated[0].intervals.n
    too_high = f"{(n + 0.5) / (n + 1):.6f}"
    status = main(["predict", "--model", str(saved_calibrated), "--data-dir", str(priced_dir),
                   "--out", str(tmp_path / "p.csv"), "--coverage", too_high])
    assert status == EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"this calibration has {n}" in err


def test_predict_with_a_model_saved_without_intervals(small_dataset, priced_dir, tmp_path,
                                                      isolated_cache, capsys):
    preprocessor = feats.make_preprocessor().fit(small_dataset.frame)
    estimator = Ridge().fit(preprocessor.transform(small_dataset.frame),
                            feats.log_target(small_dataset.prices))
    model = save_bundle(ModelBundle("old", ("tabular",), estimator, preprocessor=preprocessor,
                                    deliverable="deliverable1"), tmp_path / "old")
    out = tmp_path / "p.csv"

    assert main(["predict", "--model", str(model), "--data-dir", str(priced_dir),
                 "--out", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["ID", "predicted_price"]
    assert "has no interval calibration" in capsys.readouterr().err

    status = main(["predict", "--model", str(model), "--data-dir", str(priced_dir),
                   "--out", str(tmp_path / "q.csv"), "--coverage", "0.8"])
    assert status == EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no interval calibration" in err
    assert "retrain it with `nox -s deliverable1`" in err


def test_interval_analysis_flags_models_whose_test_coverage_is_significantly_off():
    def record(coverage, ci):
        return {"intervals": {"test": {"0.8": {"coverage": coverage, "coverage_ci95": ci,
                                               "median_width_eur": 30.0, "nominal": 0.8}}}}

    results = {"ok": record(0.79, [0.74, 0.84]), "low": record(0.70, [0.64, 0.76]),
               "high": record(0.90, [0.86, 0.94])}
    analysis = interval_analysis(results, {"ok": "tabular", "low": "fusion", "high": "photo"},
                                 {"tabular": "ok"})
    assert analysis["under_covered"] == ["low"] and analysis["over_covered"] == ["high"]
    assert "low" in analysis["calibration_check"] and "validation rows" in analysis["calibration_check"]
    fine = interval_analysis({"ok": results["ok"]}, {"ok": "tabular"}, {"tabular": "ok"})
    assert fine["under_covered"] == [] and "no model" in fine["calibration_check"]
