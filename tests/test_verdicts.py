"""Goal verdicts that say when the data cannot decide (:mod:`shared.evaluation.verdicts`).

The numbers are the published ones where the issue quotes them (issue 33): ``cnn_scratch`` R² on
log price 0.190 with the 95% interval [0.164, 0.215] against the goal 0.20; the fusion goal of
deliverable 2, a relative MAE difference <= -3%.
"""

from __future__ import annotations

import json
import math

import pytest

from shared.evaluation.verdicts import (AT_LEAST, AT_MOST, NOT_REACHED, REACHED, UNDECIDED,
                                        combine, compare_verdicts, contradicts, decide,
                                        describe_seed_band, format_verdict, format_verdict_changes,
                                        read_verdicts, seed_band, seed_range, seed_values,
                                        t_quantile, verdict_of)

CNN_R2, CNN_CI = 0.18977356094046416, [0.16388910225407585, 0.21499197561615802]


# --------------------------------------------------------------------------- decide


def test_an_interval_that_contains_the_goal_is_undecided():
    result = decide(CNN_R2, CNN_CI, 0.20, AT_LEAST, label="R² log")
    assert result["verdict"] == UNDECIDED
    assert result["interval"] == CNN_CI and result["seed_range"] is None
    assert result["threshold"] == 0.20 and result["direction"] == ">="
    assert result["reason"] == ("undecided: R² log 0.1898 (95% interval 0.1639 to 0.215), the goal "
                                ">= 0.2: the 95% interval contains it, the data cannot decide")
    # the point above the goal (the Zen 3 run's 0.200) is still undecided with such an interval
    assert decide(0.2004, [0.1745, 0.2256], 0.20, AT_LEAST)["verdict"] == UNDECIDED
    json.dumps(result)  # ready for metrics.json


def test_a_whole_interval_on_one_side_decides_in_both_directions():
    assert decide(0.283, [0.245, 0.317], 0.20, AT_LEAST)["verdict"] == REACHED
    assert decide(0.283, [0.245, 0.317], 0.40, AT_LEAST)["verdict"] == NOT_REACHED
    assert decide(-0.039, [-0.052, -0.031], -0.03, AT_MOST)["verdict"] == REACHED
    assert decide(0.01, [0.002, 0.02], -0.03, AT_MOST)["verdict"] == NOT_REACHED
    published = decide(-0.0161, [-0.0387, 0.0084], -0.03, AT_MOST, label="relative MAE diff")
    assert published["verdict"] == UNDECIDED
    missed = decide(0.283, [0.245, 0.317], 0.40, AT_LEAST, label="R² log")
    assert missed["reason"] == ("not reached: R² log 0.283 (95% interval 0.245 to 0.317) misses "
                                "the goal >= 0.4 with all of its range")
    assert decide(0.5, None, 0.4, AT_LEAST)["reason"].endswith("(no interval given)")


def test_a_bound_on_the_goal_meets_it():
    assert decide(0.25, [0.20, 0.30], 0.20, AT_LEAST)["verdict"] == REACHED
    assert decide(-0.05, [-0.07, -0.03], -0.03, AT_MOST)["verdict"] == REACHED
    assert decide(0.19, [0.15, 0.20], 0.20, AT_LEAST)["verdict"] == UNDECIDED


def test_the_seed_range_counts_too():
    # the interval alone would reach the goal; a seed below it makes the data undecided
    result = decide(0.25, [0.22, 0.28], 0.20, AT_LEAST, seed_range=[0.19, 0.26], label="R²")
    assert result["verdict"] == UNDECIDED and result["seed_range"] == [0.19, 0.26]
    assert "the seed range contains it" in result["reason"]
    assert decide(0.25, [0.22, 0.28], 0.20, AT_LEAST, seed_range=[0.21, 0.26])["verdict"] == REACHED
    both = decide(0.21, [0.19, 0.23], 0.20, AT_LEAST, seed_range=[0.18, 0.22])
    assert "the 95% interval and the seed range contain it" in both["reason"]
    # neither range contains the goal, but they lie on both sides of it
    split = decide(0.19, [0.21, 0.25], 0.20, AT_LEAST)
    assert split["verdict"] == UNDECIDED
    assert "its ranges fall on both sides of it" in split["reason"]


@pytest.mark.parametrize("args, message", [
    ((math.nan, [0, 1], 0.2, AT_LEAST), "point must be a finite number"),
    ((0.3, [0, 1], None, AT_LEAST), "threshold must be a finite number"),
    ((True, [0, 1], 0.2, AT_LEAST), "point must be a finite number"),
    ((0.3, [0, 1], 0.2, "=="), "direction must be one of"),
    ((0.3, [0.4, 0.2], 0.2, AT_LEAST), "interval must be two finite numbers"),
    ((0.3, [0.1, 0.2, 0.4], 0.2, AT_LEAST), "interval must be two finite numbers"),
    ((0.3, [0.1, math.inf], 0.2, AT_LEAST), "interval must be two finite numbers"),
    ((0.3, "ab", 0.2, AT_LEAST), "interval must be"),
])
def test_bad_input_is_a_one_line_error(args, message):
    with pytest.raises(ValueError, match=message):
        decide(*args)


def test_combine_is_not_reached_when_a_part_misses_and_undecided_when_one_is_open():
    single = decide(13.16, [12.5, 13.8], 12.57, AT_MOST, label="single run")
    seeds = decide(12.88, [12.5, 13.2], 12.57, AT_MOST, label="seed mean")
    assert combine([single, seeds])["verdict"] == UNDECIDED
    assert combine([REACHED, REACHED])["verdict"] == REACHED
    missed = combine([single, NOT_REACHED, REACHED], label="network vs hgb")
    assert missed["verdict"] == NOT_REACHED
    assert missed["reason"] == "not reached: network vs hgb: not reached by part 2"
    assert combine([single, REACHED])["reason"] == ("undecided: the goal: single run undecided, no "
                                                    "part missed")
    with pytest.raises(ValueError, match="combine needs verdicts"):
        combine([])
    with pytest.raises(ValueError, match="combine needs verdicts"):
        combine(["maybe"])


# --------------------------------------------------------------------------- seed studies


def test_t_quantile_matches_the_tables():
    for p, df, table in ((0.975, 1, 12.7062047), (0.975, 4, 2.7764451), (0.975, 29, 2.0452296),
                         (0.995, 10, 3.1692727), (0.975, 1000, 1.9623391), (0.5, 3, 0.0)):
        assert t_quantile(p, df) == pytest.approx(table, abs=1e-5)
    with pytest.raises(ValueError, match="t_quantile needs"):
        t_quantile(1.0, 4)


def test_the_seed_band_is_the_prediction_interval_of_one_more_run():
    band = seed_band([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451 * math.sqrt(2.5) * math.sqrt(1.2)
    assert band["n"] == 5 and band["mean"] == 3.0 and band["sd"] == pytest.approx(math.sqrt(2.5))
    assert (band["low"], band["high"]) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-5)
    assert describe_seed_band(band).startswith("5 seeds 1.0000 to 5.0000, mean 3.0000")
    # never narrower than the seeds' own range (an outlier among many seeds)
    wide = seed_band([0.0] * 29 + [100.0])
    assert wide["high"] == 100.0 and wide["low"] < 0
    assert seed_band([12.0]) is None and seed_band([12.0, math.nan]) is None


def test_seed_values_and_range_read_a_seed_study():
    record = {"seeds": [{"seed": 42, "reported": True, "test_mae": 13.16}, {"test_mae": math.nan},
                        {"seed": 1042, "test_mae": 12.61}, {"seed": 2042}]}
    assert seed_values(record) == [13.16, 12.61]
    assert seed_values({"test": {}}) == [] and seed_values({"seeds": "skipped"}) == []
    assert seed_range([13.16, 12.61, math.nan]) == [12.61, 13.16]
    with pytest.raises(ValueError, match="at least one finite value"):
        seed_range([math.nan])


# --------------------------------------------------------------------------- words


def test_verdict_words_read_old_and_new_records_and_format_for_reports():
    assert verdict_of({"verdict": "undecided", "reached": False}) == UNDECIDED
    assert verdict_of({"reached": True}) == REACHED and verdict_of({"reached": False}) == NOT_REACHED
    assert verdict_of({"reached": "yes"}) is None and verdict_of({}) is None
    assert verdict_of("reached") == REACHED and verdict_of("maybe") is None and verdict_of(3) is None
    assert format_verdict("undecided") == "undecided (the data cannot decide)"
    assert format_verdict({"verdict": "not reached"}, markdown=True) == "**not reached**"
    assert format_verdict(UNDECIDED, markdown=True) == "**undecided** (the data cannot decide)"
    with pytest.raises(ValueError, match="not a verdict"):
        format_verdict("maybe")
    assert contradicts(REACHED, NOT_REACHED) and contradicts(NOT_REACHED, REACHED)
    assert not contradicts(REACHED, UNDECIDED) and not contradicts(REACHED, REACHED)


def _d1(cnn, transfer="not reached") -> dict:
    return {"run": {"goals": [{"goal": "cnn R2 >= 0.20", **cnn},
                              {"goal": "transfer R2 >= 0.40", "verdict": transfer}]}}


def test_read_verdicts_takes_the_goal_list_and_goal_dicts():
    metrics = {"run": {"goals": [{"goal": "a", "verdict": "reached"}, {"reached": False},
                                 {"id": "g3", "goal": "c", "reached": True}, "junk"],
                       "goal": {"reference": "hgb", "reached": False},
                       "interval_goal": {"verdict": "undecided"}, "intervals": {"coverage": 0.8}}}
    assert read_verdicts(metrics) == {
        "a": {"verdict": REACHED, "legacy": False},
        "run.goals[1]": {"verdict": NOT_REACHED, "legacy": True},
        "g3": {"verdict": REACHED, "legacy": True},
        "run.goal": {"verdict": NOT_REACHED, "legacy": True},
        "run.interval_goal": {"verdict": UNDECIDED, "legacy": False}}
    assert read_verdicts({}) == {} and read_verdicts({"run": []}) == {}


def test_a_flip_fails_and_a_change_to_undecided_is_only_reported():
    published = _d1({"reached": False})
    flipped = compare_verdicts(published, _d1({"reached": True}))
    assert [(r["goal"], r["change"], r["failed"]) for r in flipped] == [
        ("cnn R2 >= 0.20", "flipped", True), ("transfer R2 >= 0.40", "same", False)]
    assert flipped[0]["published_legacy"] and flipped[0]["candidate_legacy"]
    lines = format_verdict_changes(flipped)
    assert "  verdict changed: cnn R2 >= 0.20: published not reached, this run reached (FAIL: " \
        "reached and not reached contradict each other)" in lines
    assert '  * read from an older "reached" flag, which cannot say undecided' in lines

    opened = compare_verdicts(published, _d1({"verdict": "undecided"}))
    assert (opened[0]["change"], opened[0]["failed"]) == ("changed", False)
    assert any("reported, not a failure" in line for line in format_verdict_changes(opened))
    assert compare_verdicts(_d1({"verdict": "undecided"}), _d1({"verdict": "reached"}))[0][
        "change"] == "changed"


def test_absent_new_and_unrecorded_goals_are_listed_not_failed():
    published = {"run": {"goals": [{"goal": "a", "reached": True}, {"goal": "b", "note": "x"}]}}
    candidate = {"run": {"goals": [{"goal": "b", "verdict": "reached"},
                                   {"goal": "c", "verdict": "undecided"}]}}
    rows = compare_verdicts(published, candidate)
    assert [(r["goal"], r["change"]) for r in rows] == [
        ("a", "absent from this run"), ("b", "not recorded"), ("c", "only in this run")]
    assert not any(r["failed"] for r in rows)
    assert format_verdict_changes([]) == ["goal verdicts: none recorded in either file"]
