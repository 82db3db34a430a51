"""shared.evaluation.conformal and the Mondrian calibration of shared.evaluation.intervals.

Synthetic data with a known truth: a listing's log-price noise depends on its room type and on
the band of its predicted price, with one noisy cell (private rooms predicted at 30-50 EUR) that
neither one pooled quantile nor today's difficulty model (additive in room type and price) can
follow. Tolerances: with ``n_g`` calibration rows in a group, Mondrian split conformal covers a
new listing of that group with probability in ``[c, c + 1 / (n_g + 1)]`` (continuous scores);
one repetition's coverage in a group of ``m`` test rows varies with standard deviation about
``sqrt(c (1 - c) (1 / n_g + 1 / m))`` (~3.6 points for ``n_g = 150``, ``m = 700``), so the mean
over 60 repetitions (sd ~0.5 point) must lie within 1.5 points of that range.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from shared.evaluation.conformal import (BANDS, MIN_ROOM_ROWS, POOLED, MondrianGroups,
                                         _merged_runs, group_quantiles, predicted_band)
from shared.evaluation.intervals import (CALIBRATION_PARTS, IntervalCalibration, IntervalError, fit_calibration,
                                         load_calibration, save_calibration)

ROOMS = np.array(["Entire home/apt", "Private room"])


def listings(rng, n: int, first_id: int = 0):
    """(pred_log (n,), y_log (n,), frame with ID and Room Type, noisy-cell mask (n,)).

    Entire homes are predicted at 30-200 EUR, private rooms at 18-50 EUR; the noise sd is 0.2
    (log price), times 2.2 for private rooms predicted at 30-50 EUR (the noisy cell). With
    1,200 calibration rows every (room type, band) cell has 100 or more rows, so no band is
    merged with another and the guarantee holds in each band (a merged group's guarantee is
    for the group: its bands share one quantile)."""
    private = rng.uniform(size=n) < 0.45
    pred = np.where(private, rng.uniform(np.log(18), np.log(50), n),
                    rng.uniform(np.log(30), np.log(200), n))
    noisy = private & (predicted_band(pred) == "30-50")
    sd = 0.2 * np.where(noisy, 2.2, 1.0)
    frame = pd.DataFrame({"ID": np.arange(first_id, first_id + n),
                          "Room Type": ROOMS[private.astype(int)]})
    return pred, pred + sd * rng.standard_normal(n), frame, noisy


def hits(calibration, pred, y, frame, coverage) -> np.ndarray:
    low, high = calibration.interval(pred, frame, coverage)
    return (np.exp(y) >= low) & (np.exp(y) <= high)


# --------------------------------------------------------------------------- coverage per group

def test_mondrian_covers_every_group_where_pooled_under_covers_one():
    n_train, n_cal, n_test, reps = 1000, 1200, 3000, 60
    cov = {name: {0.8: [], 0.9: []} for name in ("mondrian", "pooled")}
    sizes = []
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        train, cal = listings(rng, n_train), listings(rng, n_cal, n_train)
        pred, y, frame, _ = listings(rng, n_test, n_train + n_cal)
        groups = {"room": frame["Room Type"].to_numpy(), "band": predicted_band(pred)}
        fitted = {"mondrian": fit_calibration(*cal[:3], *train[:3]),
                  "pooled": fit_calibration(*cal[:3], *train[:3], mondrian=False)}
        assert len(fitted["mondrian"].group_scores) == 6  # 4 bands of entire homes, 2 of rooms
        sizes.append(min(len(s) for s in fitted["mondrian"].group_scores.values()))
        for name, calibration in fitted.items():
            for c in (0.8, 0.9):
                h = hits(calibration, pred, y, frame, c)
                cov[name][c].append({f"{k}={v}": h[labels == v].mean()
                                     for k, labels in groups.items()
                                     for v in np.unique(labels)} | {"all": h.mean()})
    slack = 1 / (min(sizes) + 1)
    for c in (0.8, 0.9):
        mondrian = pd.DataFrame(cov["mondrian"][c]).mean()
        pooled = pd.DataFrame(cov["pooled"][c]).mean()
        assert mondrian.between(c - 0.015, c + slack + 0.015).all(), (c, mondrian.to_dict())
        # the premise: one pooled quantile (today's method; its difficulty model follows the room
        # type and the price, not their interaction) covers on average, but under-covers the
        # noisy band and over-covers a calm one
        assert abs(pooled["all"] - c) < 0.015
        assert pooled["band=30-50"] < c - 0.04 and pooled["band=<30"] > c + 0.03


def test_groups_merge_small_bands_and_pool_rare_room_types():
    assert _merged_runs([10, 300, 400, 120, 20], 100) == [[0, 1], [2], [3, 4]]
    assert _merged_runs([0, 150, 40, 30, 5], 100) == [[0, 1, 2, 3, 4]]
    assert _merged_runs([200, 200, 200, 200, 200], 100) == [[0], [1], [2], [3], [4]]
    rooms = np.array(["Entire home/apt"] * 850 + ["Private room"] * 40 + ["Shared room"] * 9)
    bands = np.array(["<30"] * 10 + ["30-50"] * 300 + ["50-80"] * 400 + ["80-120"] * 120
                     + [">=120"] * 20 + ["<30"] * 40 + ["<30"] * 9)
    groups = MondrianGroups.fit(rooms, bands)
    assert groups.labels == ("Entire home/apt, predicted <30 to 30-50",
                             "Entire home/apt, predicted 50-80",
                             "Entire home/apt, predicted 80-120 to >=120",
                             "Private room, predicted <30 to >=120")
    assigned = groups.assign(np.array(["Private room", "Shared room", "Hotel room",
                                       "Entire home/apt"]), np.array(["80-120", "<30", "50-80",
                                                                      ">=120"]))
    assert assigned.tolist() == ["Private room, predicted <30 to >=120", POOLED, POOLED,
                                 "Entire home/apt, predicted 80-120 to >=120"]
    assert MIN_ROOM_ROWS > 9  # the shared rooms' 9 rows are too few for a group of their own


def test_a_room_type_absent_from_calibration_gets_the_pooled_quantile():
    rng = np.random.default_rng(11)
    pred, y, frame, _ = listings(rng, 600)
    calibration = fit_calibration(pred, y, frame)
    new = pd.DataFrame({"Room Type": ["Hotel room", "Shared room", None]})
    new_pred = np.log([60.0, 25.0, 140.0])
    for c in (0.5, 0.8, 0.9):
        low, high = calibration.interval(new_pred, new, c)
        np.testing.assert_allclose(np.log(high) - new_pred, calibration.quantile(c))
        np.testing.assert_allclose(new_pred - np.log(low), calibration.quantile(c))
    assert calibration.group_of(new_pred, new).tolist() == [POOLED] * 3


def test_a_group_too_small_for_the_coverage_takes_the_pooled_quantile():
    pooled = tuple(np.linspace(0.01, 1.0, 100))
    small = tuple(np.linspace(0.1, 1.2, 12))      # 12 rows: an 80% rank (11), no 95% rank (13)
    at80, at95 = group_quantiles(pooled, {"g": small}, 0.8), group_quantiles(pooled, {"g": small},
                                                                             0.95)
    assert at80["g"] == small[math.ceil(13 * 0.8) - 1] and at80[POOLED] == pooled[80]
    assert at95["g"] == at95[POOLED] == pooled[math.ceil(101 * 0.95) - 1]
    with pytest.raises(IntervalError, match="this calibration has 100"):
        group_quantiles(pooled, {"g": small}, 0.995)


def test_intervals_agree_with_crepes_mondrian_conformal_regressor():
    crepes = pytest.importorskip("crepes")
    rng = np.random.default_rng(5)
    train, cal, test = listings(rng, 800), listings(rng, 700, 800), listings(rng, 400, 1500)
    calibration = fit_calibration(*cal[:3], *train[:3])
    sigma_cal = calibration.sigma(cal[0], cal[2])
    reference = crepes.ConformalRegressor().fit(cal[1] - cal[0], sigmas=sigma_cal,
                                                bins=calibration.group_of(cal[0], cal[2]))
    for c in (0.73, 0.83, 0.91):  # (n_g + 1)(1 - c) never a whole number here
        assert all(((len(s) + 1) * (1 - c)) % 1 > 1e-6 for s in calibration.group_scores.values())
        expected = reference.predict_int(test[0], sigmas=calibration.sigma(test[0], test[2]),
                                         bins=calibration.group_of(test[0], test[2]),
                                         confidence=c)
        low, high = calibration.interval(test[0], test[2], c)
        np.testing.assert_allclose(np.log(low), expected[:, 0], atol=1e-12)
        np.testing.assert_allclose(np.log(high), expected[:, 1], atol=1e-12)


# --------------------------------------------------------------------------- saving and loading

def test_format_2_round_trip_and_format_1_files_still_load(tmp_path):
    rng = np.random.default_rng(2)
    train, cal, test = listings(rng, 500), listings(rng, 400, 500), listings(rng, 50, 900)
    calibration = fit_calibration(*cal[:3], *train[:3])
    loaded = load_calibration(save_calibration(calibration, tmp_path).parent)
    assert loaded == calibration and loaded.to_dict()["format"] == 2
    assert "Mondrian" in loaded.method and set(BANDS) >= set(predicted_band(test[0]))

    pooled = fit_calibration(*cal[:3], *train[:3], mondrian=False).to_dict()
    old = {k: v for k, v in pooled.items() if k not in ("groups", "group_scores")}
    old["format"] = 1  # what today's intervals.json files hold
    from_old = IntervalCalibration.from_dict(json.loads(json.dumps(old)))
    for c in (0.8, 0.9):
        np.testing.assert_array_equal(
            from_old.interval(test[0], test[2], c),
            fit_calibration(*cal[:3], *train[:3], mondrian=False).interval(test[0], test[2], c))
    with pytest.raises(IntervalError, match="format 3, this project reads formats"):
        IntervalCalibration.from_dict({**pooled, "format": 3})
    broken = calibration.to_dict()
    broken["group_scores"].popitem()
    with pytest.raises(IntervalError, match="groups and group scores disagree"):
        IntervalCalibration.from_dict(broken)


# --------------------------------------------------------------------------- no test rows

class _Guarded(dict):
    """A part mapping whose test part cannot be read."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("the calibration read the test part")
        return super().__getitem__(key)


def test_the_experiment_calibrates_without_reading_the_test_part(small_dir, tmp_path):
    from shared.features import tabular as feats
    from shared.models.bundle import ModelBundle
    from shared.run.start import prepare

    exp = prepare(small_dir, tmp_path / "models", smoke=True)
    data = exp.data
    model = Ridge(alpha=3.0).fit(data.tabular["train"], data.y_log("train"))
    bundle = ModelBundle("ridge", ("tabular",), model, preprocessor=data.preprocessor)
    pred = {p: feats.price_from_log(model.predict(data.tabular[p])) for p in CALIBRATION_PARTS}
    exp.data = dataclasses.replace(data, parts=MappingProxyType(_Guarded(data.parts)),
                                   tabular=MappingProxyType(_Guarded(data.tabular)))
    calibration = exp.calibrate_intervals(bundle, pred)

    split = data.split
    used = set(calibration.calibration_ids)
    assert used == {int(i) for p in CALIBRATION_PARTS for i in getattr(split, p)}
    assert used <= set(split.cal) | set(split.val)
    assert not used & set(split.test) and not used & set(split.train)
