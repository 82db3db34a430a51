"""shared.evaluation.metrics: metric values, bootstrap intervals, paired comparisons, metrics.json, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shared.evaluation.metrics import (METRIC_NAMES, bootstrap_indices, paired_bootstrap_mae,
                                       price_band, regression_metrics)
from shared.reporting.tables import metrics_table
from shared.environment import cpu_kind
from shared.run.records import write_metrics


def test_point_metrics_match_hand_computed_values():
    y = np.array([100.0, 200.0, 50.0, 80.0])
    pred = np.array([110.0, 180.0, 50.0, 100.0])
    m = regression_metrics(y, pred, seed=None)

    # errors 10, -20, 0, 20; APE 10%, 10%, 0%, 25%
    assert m["mae"] == pytest.approx(12.5)
    assert m["rmse"] == pytest.approx(15.0)  # sqrt((100 + 400 + 0 + 400) / 4)
    assert m["mape"] == pytest.approx(11.25)
    assert m["medape"] == pytest.approx(10.0)
    log_y, log_p = np.log(y), np.log(pred)
    r2 = 1 - np.sum((log_y - log_p) ** 2) / np.sum((log_y - log_y.mean()) ** 2)
    assert m["r2_log"] == pytest.approx(r2)
    assert set(m) == set(METRIC_NAMES)  # no intervals when not asked


def test_perfect_and_mean_predictions():
    y = np.array([40.0, 60.0, 90.0, 120.0, 55.0])
    perfect = regression_metrics(y, y, seed=None)
    assert perfect["mae"] == 0 and perfect["rmse"] == 0 and perfect["r2_log"] == pytest.approx(1.0)
    mean_log = np.full_like(y, np.exp(np.log(y).mean()))
    assert regression_metrics(y, mean_log, seed=None)["r2_log"] == pytest.approx(0.0, abs=1e-12)


def test_inputs_are_flattened_and_shapes_checked():
    y = np.array([10.0, 20.0, 30.0])
    assert regression_metrics(y.reshape(-1, 1), y.reshape(1, -1), seed=None)["mae"] == 0
    with pytest.raises(ValueError, match="shape mismatch"):
        regression_metrics(y, y[:2], seed=None)


def test_bootstrap_intervals_contain_the_point_estimate_and_are_seeded():
    rng = np.random.default_rng(0)
    y = np.exp(rng.normal(4.0, 0.5, 300))
    pred = y * np.exp(rng.normal(0.0, 0.3, 300))
    m = regression_metrics(y, pred, n_boot=300, seed=42)

    for name in METRIC_NAMES:
        low, high = m[f"{name}_ci95"]
        assert low <= m[name] <= high, name
        assert low < high, name
    assert regression_metrics(y, pred, n_boot=300, seed=42) == m  # same seed, same intervals
    assert regression_metrics(y, pred, n_boot=300, seed=1)["mae_ci95"] != m["mae_ci95"]


def test_no_bootstrap_below_five_rows():
    m = regression_metrics([10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 33.0, 41.0], seed=42)
    assert not any(k.endswith("_ci95") for k in m)


def test_bootstrap_indices_shape_and_determinism():
    idx = bootstrap_indices(7, n_boot=11, seed=3)
    assert idx.shape == (11, 7) and idx.min() >= 0 and idx.max() < 7
    assert np.array_equal(idx, bootstrap_indices(7, n_boot=11, seed=3))


def test_paired_bootstrap_detects_the_better_model():
    rng = np.random.default_rng(1)
    y = np.exp(rng.normal(4.0, 0.5, 200))
    good = y + rng.normal(0, 5, 200)
    bad = y + rng.normal(0, 30, 200)

    a_better = paired_bootstrap_mae(y, good, bad, n_boot=500, seed=42)
    assert a_better["p_a_better"] > 0.99
    assert a_better["mae_diff"] < 0 and a_better["mae_diff_ci95"][1] < 0
    mae_good, mae_bad = np.mean(np.abs(good - y)), np.mean(np.abs(bad - y))
    assert a_better["mae_diff"] == pytest.approx(mae_good - mae_bad)
    assert a_better["relative_diff"] == pytest.approx(mae_good / mae_bad - 1)
    lo, hi = a_better["mae_diff_ci95"]
    assert lo <= a_better["mae_diff"] <= hi

    a_worse = paired_bootstrap_mae(y, bad, good, n_boot=500, seed=42)
    assert a_worse["p_a_better"] < 0.01 and a_worse["mae_diff"] > 0

    same = paired_bootstrap_mae(y, good, good, n_boot=200, seed=42)
    assert same["mae_diff"] == 0 and same["p_a_better"] == 0.0


def test_write_metrics_schema(tmp_path):
    y = np.array([50.0, 60.0, 70.0, 80.0, 90.0, 100.0])
    models = {
        "mlp": {"val": regression_metrics(y, y * 1.1, seed=None),
                "test": regression_metrics(y, y * 0.9, seed=42), "train_seconds": np.float64(1.5),
                "params": {"hidden": (8, 4), "lr": np.float32(1e-3)}},
    }
    dataset = {"source": "fixture", "listings_sha256": "ab" * 32, "rows_read": np.int64(6),
               "rows_usable": 6, "split": {"train": 4, "val": 1, "test": 1}, "seed": 42}
    path = tmp_path / "out" / "metrics.json"

    write_metrics(path, dataset, models, run={"device": "CPU", "smoke": True})

    data = json.loads(path.read_text())
    assert list(data) == ["dataset", "run", "models"]
    assert data["dataset"]["rows_read"] == 6 and data["dataset"]["split"]["train"] == 4
    assert data["run"] == {"device": "CPU", "smoke": True, "cpu": cpu_kind()}
    record = data["models"]["mlp"]
    assert set(record) == {"val", "test", "train_seconds", "params"}
    assert set(METRIC_NAMES) <= set(record["test"]) and "mae_ci95" in record["test"]
    assert len(record["test"]["mae_ci95"]) == 2
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # atomic: no temp left

    write_metrics(path, dataset, models, run={"cpu": "recorded"})
    assert json.loads(path.read_text())["run"] == {"cpu": "recorded"}  # a run's own CPU is kept


def test_metrics_table_formats_intervals():
    y = np.linspace(40, 140, 20)
    models = {"a": {"test": regression_metrics(y, y * 1.05, seed=42), "train_seconds": 2.345},
              "b": {"test": regression_metrics(y, y * 1.2, seed=None)}}
    table = metrics_table(models)

    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "mae"].startswith(f"{models['a']['test']['mae']:.2f} [")
    assert table.loc["a", "train_s"] == 2.3
    assert table.loc["b", "mae"] == round(models["b"]["test"]["mae"], 3)
    assert math.isnan(table.loc["b", "train_s"])


def test_tables_of_phases_controls_and_ties():
    from shared.reporting import tables

    phased = {"params": {"stopped_by": "epoch_limit", "phase1_epochs_run": 5, "phase1_max_epochs": 5,
                         "phase2_epochs_run": 1, "phase2_max_epochs": 2}, "n_params": 10}
    table = tables.training_table({"late_fusion": phased})
    assert table.loc["late_fusion", "epochs (trees) run"] == 6 and table.loc["late_fusion", "cap"] == 7

    def paired(model, reference, diff):
        return {"model": model, "reference": reference, "mae_diff": diff,
                "mae_diff_ci95": [diff - 1, diff + 1], "relative_diff": diff / 10,
                "relative_ci95": [(diff - 1) / 10, (diff + 1) / 10], "p_a_better": 0.5}

    controls = tables.controls_table({"vs_base": {"early_fusion": paired("early_fusion", "mlp", -0.5)},
                                      "blend_vs_tabular_blend": paired("blend", "tabular_blend", 0.2)})
    assert list(controls.index) == ["early_fusion vs mlp", "blend vs tabular_blend (ensembling control)"]
    assert controls.iloc[0, 0] == "-0.50 [-1.50, +0.50]" and controls.iloc[0, 1] == "-5.0% [-15.0%, +5.0%]"
    ties = tables.ties_table({"fusion pick": ("blend", [{"model": "hgb_with_embeddings", "gap_eur": 0.3,
                                                         "tie": True}]),
                              "blend's pair": ("hgb + late_fusion", [{"members": ["hgb", "mlp"],
                                                                       "gap_eur": 1.0, "tie": False}])})
    assert list(ties.index) == [("fusion pick: blend", "hgb_with_embeddings"),
                                ("blend's pair: hgb + late_fusion", "hgb + mlp")]
    assert ties.iloc[:, -1].tolist() == ["yes", "no"]
    assert tables.ties_table({"fusion pick": ("blend", [])}).empty


def test_price_band_edges():
    bands = price_band([10, 29.99, 30, 49.9, 50, 80, 119, 120, 500])
    assert bands.tolist() == ["<30", "<30", "30-50", "30-50", "50-80", "80-120", "80-120",
                              ">=120", ">=120"]


def test_plots_return_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.reporting import figures, tables

    y = np.linspace(20, 200, 30)
    predictions = {"a": y * 1.1, "b": y * 0.8}
    models = {name: {"test": regression_metrics(y, p, n_boot=50, seed=42)} for name, p in predictions.items()}
    drawn = [
        figures.plot_predicted_vs_actual(predictions, y),
        figures.plot_group_errors({"by price band": tables.group_mae(predictions, y, price_band(y),
                                                                    ordered_by=y)}),
        figures.plot_mae_with_intervals(models),
        figures.plot_learning_curves({"a": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, "b": {}}),
        figures.plot_pca_curve(np.linspace(0.1, 1.0, 50), marks=(8, 32)),
    ]
    for figure in drawn:
        assert figure.axes
        plt.close(figure)


def test_group_errors_say_true_price_and_drop_empty_bands():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.reporting import figures, tables

    y = np.array([20.0, 25.0, 60.0, 70.0, 150.0])
    table = tables.group_mae({"hgb": y * 1.1}, y, price_band(y), ordered_by=y)
    assert list(table.index) == ["<30", "50-80", ">=120"] and table["n"].tolist() == [2, 2, 1]
    assert table.loc["<30", "hgb"] == pytest.approx(2.25)
    table.loc["30-50"] = [0, np.nan]                              # an empty band
    fig = figures.plot_group_errors({"by price band (test)": table})
    ax = fig.axes[0]
    assert ax.get_title() == "by true price band (test)"
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["<30", "50-80", ">=120"]
    assert figures.band_title("by predicted price band") == "by predicted price band"
    plt.close(fig)


def test_learning_curves_mark_the_kept_epoch_grey_reverted_phases_and_zoom_short_ones():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from shared.reporting import figures

    val = list(np.linspace(1.0, 0.2, 100)) + [0.3, 0.25, 0.35]
    history = {"loss": [v * 0.9 for v in val], "val_loss": val}
    phases = [{"start": 0, "label": "1: cached features", "kept": True},
              {"start": 100, "label": "2: end to end reverted", "kept": False}]
    assert figures.restored_epoch(history, phases) == 99        # the best of the kept phase
    phases[1]["kept"] = True
    assert figures.restored_epoch(history, phases) == 101       # the best of the last kept phase
    assert figures.restored_epoch(history, [{**p, "kept": False} for p in phases]) is None
    assert figures.restored_epoch({"loss": [3, 2, 1], "val_loss": [3, 1, 2]}) == 1
    phases[1]["kept"] = False
    fig = figures.plot_learning_curves({"late_fusion": history, "tabular_net": history},
                                       {"late_fusion": {"loss": "mse", "phases": phases},
                                        "tabular_net": {"loss": "huber"}})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["late_fusion: MSE", "late_fusion: MSE (zoom on the last epochs)",
                      "tabular_net: Huber loss"]
    whole, zoom = fig.axes[0], fig.axes[1]
    colours = {to_hex(line.get_color()) for line in whole.lines}
    assert {figures.REVERTED, figures.model_colour("late_fusion")} <= colours
    assert "phase 2: end to end reverted" in [t.get_text() for t in whole.get_legend().get_texts()]
    assert "kept: epoch 100" in [t.get_text() for t in whole.get_legend().get_texts()]
    assert zoom.get_xlim()[0] > 80 and whole.get_yscale() == "log"
    plt.close(fig)


def test_paired_bootstrap_accepts_keras_shaped_predictions():
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 200, 50)
    good, bad = y + rng.normal(0, 5, 50), y + rng.normal(0, 30, 50)
    flat = paired_bootstrap_mae(y, good, bad, n_boot=200, seed=42)
    column = paired_bootstrap_mae(y, good.reshape(-1, 1), bad.reshape(-1, 1), n_boot=200, seed=42)
    assert column == flat
