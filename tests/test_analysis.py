"""deliverable1.analysis: goals judged on models chosen on validation, thresholds from GOALS."""

from __future__ import annotations

from deliverable1 import analysis


def _results(val_mae: dict, test: dict) -> dict:
    return {name: {"val": {"mae": val_mae[name]}, "test": test[name]} for name in val_mae}


def test_transfer_goal_is_judged_on_the_model_validation_picks():
    names = ("mean", "ridge", "hgb", "mlp", "cnn_scratch", "transfer_frozen", "transfer_finetuned")
    val = dict(zip(names, (25.0, 12.0, 12.0, 11.0, 25.0, 21.0, 22.0), strict=True))
    test = {n: {"mae": 20.0, "r2_log": 0.1} for n in names}
    test["transfer_finetuned"] = {"mae": 18.0, "r2_log": 0.5}   # better on test only
    results = _results(val, test)
    goals = analysis.check_goals(results)
    assert analysis.best_on_validation(results, analysis.TRANSFER) == "transfer_frozen"
    assert goals[1]["measured"].startswith("transfer_frozen") and not goals[1]["reached"]
    results["transfer_finetuned"]["val"]["mae"] = 20.0           # now validation picks it
    assert analysis.check_goals(results)[1]["reached"]


def test_network_goal_needs_the_single_run_and_the_seed_mean(monkeypatch):
    names = ("mean", "ridge", "hgb", "mlp", "tabular_net", "cnn_scratch", "transfer_frozen",
             "transfer_finetuned")
    results = _results(dict.fromkeys(names, 10.0), {n: {"mae": 10.0, "r2_log": 0.2} for n in names})
    results["mlp"]["val"]["mae"] = 11.0                            # validation picks tabular_net
    results["tabular_net"]["test"]["mae"] = 10.5                  # 5% above hgb
    results["hgb"]["seeds"] = [{"seed": s, "test_mae": 10.0} for s in range(5)]
    results["tabular_net"]["seeds"] = [{"seed": s, "test_mae": 10.4} for s in range(5)]
    monkeypatch.setitem(analysis.GOALS, "network_vs_hgb_max_relative", 0.06)
    first = analysis.check_goals(results)[0]
    assert first["reached"] and first["measured"].startswith("tabular_net")
    monkeypatch.setitem(analysis.GOALS, "network_vs_hgb_max_relative", 0.0)
    assert not analysis.check_goals(results)[0]["reached"]
    assert any("does not beat" in line for line in analysis.conclusions(results))
    results["tabular_net"]["test"]["mae"] = 9.9                   # the single run wins ...
    assert not analysis.check_goals(results)[0]["reached"]        # ... but not over the seeds
    results["tabular_net"]["seeds"] = [{"seed": s, "test_mae": 9.9} for s in range(5)]
    assert analysis.check_goals(results)[0]["reached"]
    del results["tabular_net"]["seeds"]                           # no seed study: not reached
    assert "no seed study" in analysis.check_goals(results)[0]["measured"]


def test_cnn_goal_is_reached_at_the_threshold_and_missed_below_it(monkeypatch):
    names = ("mean", "ridge", "hgb", "mlp", "cnn_scratch", "transfer_frozen", "transfer_finetuned")
    results = _results(dict.fromkeys(names, 10.0), {n: {"mae": 10.0, "r2_log": 0.2} for n in names})
    threshold = analysis.GOALS["cnn_min_r2_log"]
    results["cnn_scratch"]["test"]["r2_log"] = threshold
    assert analysis.check_goals(results)[2]["reached"]
    results["cnn_scratch"]["test"]["r2_log"] = threshold - 0.01
    assert not analysis.check_goals(results)[2]["reached"]
