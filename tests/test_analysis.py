"""The deliverables' analyses: goals judged on the models validation picks, verdicts reached /
not reached / undecided, and every comparative sentence decided by the numbers it states (each
comparison flipped here, and the sentence flips with it)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from deliverable1 import analysis
from deliverable2 import conclusions
from shared.reporting import sentences

NAMES = ("mean", "ridge", "hgb", "mlp", "tabular_net", "cnn_scratch", "transfer_frozen",
         "transfer_finetuned")


def _exp(test_mae: dict, val_mae: dict | None = None, r2: dict | None = None, n: int = 400):
    """A stand-in run: each model's test predictions have exactly its test MAE (a constant
    relative error), its R² log a 95% interval of +-0.02."""
    y = np.random.default_rng(0).uniform(20, 150, n)
    val_mae = val_mae or {}
    predictions, results = {}, {}
    for name in NAMES:
        mae = test_mae.get(name, 20.0)
        predictions[name] = {"test": y + mae}
        r = (r2 or {}).get(name, 0.1)
        results[name] = {"val": {"mae": val_mae.get(name, 10.0)}, "params": {},
                         "test": {"mae": mae, "r2_log": r, "r2_log_ci95": [r - 0.02, r + 0.02]}}
    return types.SimpleNamespace(results=results, predictions=predictions,
                                 data=types.SimpleNamespace(y_eur=lambda part: y),
                                 cfg=types.SimpleNamespace(seed=42))


def test_transfer_goal_is_judged_on_the_model_validation_picks():
    exp = _exp({}, val_mae={"transfer_frozen": 21.0, "transfer_finetuned": 22.0},
               r2={"transfer_frozen": 0.1, "transfer_finetuned": 0.5})   # better on test only
    goals = analysis.check_goals(exp)
    assert goals[1]["measured"].startswith("transfer_frozen")
    assert goals[1]["verdict"] == "not reached"
    exp.results["transfer_finetuned"]["val"]["mae"] = 20.0                   # validation picks it
    assert analysis.check_goals(exp)[1]["verdict"] == "reached"


def test_a_goal_inside_the_interval_is_undecided():
    threshold = analysis.GOALS["cnn_min_r2_log"]
    for r2, verdict in ((threshold + 0.05, "reached"), (threshold + 0.01, "undecided"),
                        (threshold - 0.01, "undecided"), (threshold - 0.05, "not reached")):
        exp = _exp({}, r2={"cnn_scratch": r2})
        goal = analysis.check_goals(exp)[2]
        assert goal["verdict"] == verdict, (r2, goal["reason"])


def test_network_goal_uses_the_paired_interval_and_the_seed_range():
    exp = _exp({"hgb": 10.0, "tabular_net": 10.5}, val_mae={"mlp": 11.0})  # picks tabular_net
    first = analysis.check_goals(exp)[0]
    assert first["measured"].startswith("tabular_net") and first["verdict"] == "not reached"
    exp.predictions["tabular_net"]["test"] = exp.predictions["hgb"]["test"] - 20.0  # far better
    exp.results["tabular_net"]["test"]["mae"] = 10.0 - 20.0 + 20.0
    assert analysis.check_goals(exp)[0]["verdict"] == "reached"
    exp.results["hgb"]["seeds"] = [{"seed": s, "test_mae": 10.0} for s in range(5)]
    exp.results["tabular_net"]["seeds"] = [{"seed": s, "test_mae": 9.5 + 0.3 * s}
                                           for s in range(5)]   # some seeds above hgb
    assert analysis.check_goals(exp)[0]["verdict"] == "undecided"


@pytest.mark.parametrize("before, after, word", [
    (23.20, 23.196, "left unchanged"), (23.20, 22.90, "lowered"), (23.20, 23.50, "raised")])
def test_the_fine_tuning_sentence_says_what_the_numbers_say(before, after, word):
    results = {"transfer_finetuned": {"val": {"mae": after}, "test": {"mae": 21.0}, "params": {
        "started_from": {"backbone": "efficientnet_lite0", "head": "linear",
                         "val_mae_one_view": before}}},
               "transfer_frozen": {"val": {"mae": 22.0}, "test": {"mae": 21.5}}}
    assert word in analysis.finetuning_sentence(results)


def _c(diff: float, low: float, high: float, model="blend", reference="tabular_blend") -> dict:
    return {"model": model, "reference": reference, "mae_diff": diff, "mae_diff_ci95": [low, high],
            "relative_diff": diff / 12.0, "p_a_better": 0.99 if high < 0 else 0.5}


@pytest.mark.parametrize("comparison, word, phrase", [
    (_c(-0.6, -0.9, -0.3), "Yes", "significantly lower"),
    (_c(-0.2, -0.35, -0.05), "Slightly", "significantly lower"),
    (_c(-0.1, -0.3, 0.1), "No", "not significantly different"),
    (_c(+0.3, 0.1, 0.5), "No", "significantly higher")])
def test_the_verdict_flips_with_the_paired_interval(comparison, word, phrase):
    v = dict(comparison)
    v["significant"] = comparison["mae_diff_ci95"][1] < 0
    v["word"] = ("yes" if v["significant"] and v["relative_diff"] <= -0.03 else
                 "slightly" if v["significant"] else "no")
    v["margin"] = -0.03
    results = {"blend": {"test": {"mae": 12.0 + comparison["mae_diff"]}},
               "tabular_blend": {"test": {"mae": 12.0}}}
    text = conclusions.verdict_sentence(v, results)
    assert text.startswith(f"**Does the photo help? {word}.**") and phrase in text
    assert ("less than the 3%" in text) == (word == "Slightly")


def test_the_photo_beyond_ensembling_follows_its_interval():
    assert "significantly lower" in conclusions.ensembling_sentence(
        {"blend_vs_tabular_blend": _c(-0.3, -0.5, -0.1)})
    assert "not significantly different" in conclusions.ensembling_sentence(
        {"blend_vs_tabular_blend": _c(-0.05, -0.2, 0.1)})
    assert conclusions.ensembling_sentence({}) is None


def test_a_pick_is_a_near_tie_only_when_validation_cannot_resolve_it():
    tie = [{"model": "hgb_with_embeddings", "gap_eur": 0.03, "tie": True}]
    clear = [{"model": "hgb_with_embeddings", "gap_eur": 0.4, "tie": False}]
    assert "near tie" in conclusions.pick_sentence(tie, "blend", "The fusion pick")
    assert "is clear" in conclusions.pick_sentence(clear, "blend", "The fusion pick")


def test_networks_against_gradient_boosting_flips_with_the_gains():
    def controls(neural: float, trees: float) -> dict:
        return {"vs_base": {
            "early_fusion": {**_c(neural * 12, neural * 12 - 0.2, neural * 12 + 0.2,
                                  "early_fusion", "mlp"), "relative_diff": neural},
            "hgb_with_embeddings": {**_c(trees * 12, trees * 12 - 0.2, trees * 12 + 0.2,
                                         "hgb_with_embeddings", "hgb"), "relative_diff": trees}}}
    vs_hgb = {"early_fusion": _c(0.5, 0.2, 0.8, "early_fusion", "hgb")}
    assert "does better than" in conclusions.base_sentence(controls(-0.05, -0.02), vs_hgb)
    assert "does worse than" in conclusions.base_sentence(controls(-0.01, -0.03), vs_hgb)
    assert "about as well as" in conclusions.base_sentence(controls(-0.030, -0.031), vs_hgb)
    assert "significantly higher than `hgb`'s" in conclusions.base_sentence(
        controls(-0.05, -0.02), vs_hgb)


def test_the_photo_signal_sentence_follows_the_correlation_and_the_gains():
    redundancy = {"test": {"corr_unique_residual": 0.3}}
    gain = {"vs_base": {"a": _c(-0.5, -0.8, -0.2, "a", "mlp")}}
    none = {"vs_base": {"a": _c(-0.1, -0.4, 0.2, "a", "mlp")}}
    assert "1 of 1 fusion models turn" in conclusions.signal_sentence(redundancy, gain, 6210)
    assert "no fusion model turns" in conclusions.signal_sentence(redundancy, none, 6210)
    weak = {"test": {"corr_unique_residual": 0.05}}
    assert "mostly know already" in conclusions.signal_sentence(weak, gain, 6210)


@pytest.mark.parametrize("a, b, phrase", [(10.0, 20.0, "50% narrower than"),
                                          (20.0, 10.0, "2.0 times as wide as"),
                                          (10.2, 10.0, "about as wide as")])
def test_width_comparisons_follow_the_widths(a, b, phrase):
    assert sentences.width_comparison(a, b) == phrase


@pytest.mark.parametrize("r2, phrase", [(0.42, "explains 42% of the variance"),
                                        (-0.12, "does worse than always answering the mean")])
def test_an_r2_below_zero_is_not_called_a_share_explained(r2, phrase):
    assert phrase in sentences.r2_phrase(r2)
    assert ("explains" in sentences.r2_phrase(r2)) == (r2 >= 0)


def test_the_goal_line_states_its_verdict_once():
    goal = {"reference": "hgb", "verdict": "not reached",
            "reason": "not reached: x's test MAE relative to hgb's -1.0% misses the goal"}
    line = conclusions.goal_sentence(goal)
    assert line.count("not reached") == 1 and "x's test MAE relative" in line


def _report(overall: float, private: float, n_private: int = 300) -> dict:
    """A test interval report at 80% and 90% with two room types and one predicted band."""
    def metrics(cov, priv):
        group = {"coverage_ci95": None, "median_width_eur": 30.0}
        return {"coverage": cov, "coverage_ci95": [cov - 0.02, cov + 0.02], "median_width_eur": 30.0,
                "n": 1000, "groups": {
                    "room_type": {"Entire home/apt": {"n": 600, "coverage": cov, **group},
                                  "Private room": {"n": n_private, "coverage": priv, **group},
                                  "Shared room": {"n": 30, "coverage": 0.5, **group}},
                    "predicted_band": {"30-50": {"n": 400, "coverage": cov, **group}},
                    "price_band": {">=120": {"n": 100, "coverage": 0.3, **group}}}}
    return {"0.8": metrics(overall, private), "0.9": metrics(overall + 0.1, private + 0.1)}


@pytest.mark.parametrize("overall, private, n_private, met", [
    (0.80, 0.79, 300, True),     # every judged group in range
    (0.80, 0.74, 300, False),    # a judged group below 75%
    (0.80, 0.74, 99, True),      # the same group too small to judge
    (0.77, 0.79, 300, False),    # overall below 78%
])
def test_the_coverage_goal_follows_overall_and_judged_groups(overall, private, n_private, met):
    from shared.evaluation.coverage import coverage_check, coverage_goal

    check = coverage_check(_report(overall, private, n_private))
    assert check["0.8"]["met"] is met
    # the true price band is never judged, however low
    assert all(g["breakdown"] != "price_band" for g in check["0.8"]["groups"])
    sentence = sentences.coverage_goal_sentence("hgb", check)
    judged_part = sentence.split("too few")[0]
    assert ("Private room 74.0%" in judged_part) == (private == 0.74 and n_private >= 100)
    assert "Shared room (n=30)" in sentence.split("too few test listings to judge:")[1]
    tiny = _report(overall, private, n_private)
    for metrics in tiny.values():
        for groups in metrics["groups"].values():
            for g in groups.values():
                g["n"] = 50
    # every group too small: said once, no list of groups, no vacuous "every judged group"
    tiny_sentence = sentences.coverage_goal_sentence("hgb", coverage_check(tiny))
    assert "no group large enough to judge" in tiny_sentence
    assert "too few" not in tiny_sentence and "every judged" not in tiny_sentence
    goal = coverage_goal({"hgb": {"intervals": {"test": _report(overall, private, n_private)}}},
                         ["hgb"])
    assert goal["reached"] is met and (goal["verdict"] == "reached") is met


def test_the_group_coverage_table_sets_the_earlier_method_beside_the_new():
    from shared.reporting import tables

    results = {"hgb": {"intervals": {"test": _report(0.8, 0.79),
                                     "test_earlier_method": _report(0.77, 0.70)}}}
    table = tables.group_coverage_table(results, ["hgb"], 0.8)
    row = table.loc[("hgb", "room type Private room")]
    assert row["coverage"].startswith("79.0%") and row["earlier method: coverage"].startswith("70.0%")
    assert ("hgb", "all") in table.index and not any("price band >=" in g for _, g in table.index)
