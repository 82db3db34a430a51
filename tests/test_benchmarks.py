"""The benchmarks package: its harness helpers, its report, and a quick run end to end.

Benchmarks are not timed tests: nothing here checks a time or a ratio's value, only that the
harness runs the real code paths and writes every figure with its reference and ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import tree_state
from benchmarks import e2e, harness, memory
from benchmarks.cli import main
from benchmarks.report import SCHEMA_VERSION, findings, merge_reports, write_report
from shared import environment

EXPECTED_QUICK_FIGURES = {"decode", "backbone", "feature_cache", "memory_transfer_finetuned",
                          "memory_late_fusion", "memory_original_float64", "serve",
                          "serve_startup"}


def test_replicate_dataset_gives_new_unique_ids_and_links_photos(small_dir, tmp_path):
    from shared.data.dataset import load_dataset

    before = tree_state(small_dir)
    original = load_dataset(small_dir, check_photos=False)
    info = harness.replicate_dataset(small_dir, tmp_path / "big", factor=3)
    big = load_dataset(info["data_dir"])  # validates every row and decodes every photo

    n = len(original.frame)
    assert info["rows"] == 3 * n and len(big.frame) == 3 * n and not big.drops
    assert len(set(big.ids.tolist())) == 3 * n
    assert set(original.ids.tolist()) <= set(big.ids.tolist())  # copy 0 keeps the IDs
    assert sum(info["links"].values()) == 3 * n
    # same price distribution, photos with the same bytes as the originals
    assert sorted(big.prices.tolist()) == sorted(original.prices.tolist() * 3)
    first = original.ids[0]
    copies = [i for i in big.ids.tolist() if i % 10 ** len(str(max(original.ids))) == first]
    assert len(copies) == 3
    photos = {(Path(info["data_dir"]) / "images" / f"{i}.jpg").read_bytes() for i in copies}
    assert len(photos) == 1
    assert tree_state(small_dir) == before  # the source directory is only read


def test_replicate_dataset_rows_and_bad_factor(small_dir, tmp_path):
    info = harness.replicate_dataset(small_dir, tmp_path / "few", factor=2, rows=5)
    assert info["rows"] == 10
    with pytest.raises(ValueError, match="factor"):
        harness.replicate_dataset(small_dir, tmp_path / "none", factor=0)


def test_bounded_dataset_takes_the_first_rows_once_and_a_small_source_whole(small_dir, tmp_path):
    from shared.data.dataset import load_dataset

    info = harness.bounded_dataset(small_dir, tmp_path, 7, factor=3)
    assert (info["rows"], info["factor"], info["source_rows"]) == (21, 3, 40)
    first = load_dataset(small_dir, check_photos=False).ids[:7].tolist()
    assert load_dataset(info["data_dir"], check_photos=False).ids[:7].tolist() == first
    listings = Path(info["data_dir"]) / "listings.csv"
    stamp = listings.stat().st_mtime_ns
    assert harness.bounded_dataset(small_dir, tmp_path, 7, factor=3) == info  # reused, not rewritten
    assert listings.stat().st_mtime_ns == stamp
    assert harness.bounded_dataset(small_dir, tmp_path, 1000)["rows"] == 40


def test_max_rows_setting(capsys):
    assert harness.Settings().max_rows == harness.DEFAULT_MAX_ROWS
    assert harness.Settings(quick=True).max_rows == harness.Settings(quick=True).rows
    assert harness.Settings(max_rows=5).max_rows == 5 and harness.Settings().rows is None
    with pytest.raises(ValueError, match="max_rows"):
        harness.Settings(max_rows=-1)
    assert main(["--max-rows", "0"]) == 2
    assert "--max-rows must be >= 1, got 0" in capsys.readouterr().err


def _rows_of(args: list[str]) -> int:
    from shared.data.dataset import read_listings_csv

    return len(read_listings_csv(Path(args[args.index("--data-dir") + 1])))


def test_memory_and_e2e_train_on_at_most_max_rows_of_a_larger_dataset(small_dir, tmp_path,
                                                                      monkeypatch):
    """The training figures get the first ``max_rows`` rows (x replication for the large memory
    copy) of a dataset that has more; the children are replaced, nothing is trained."""
    calls = []

    def fake_child(args, log, env=None):
        calls.append((args, env))
        return {"wall_s": 1.0, "peak_rss_mib": 100.0 + _rows_of(args), "result": {}}

    monkeypatch.setattr(memory, "run_child", fake_child)
    monkeypatch.setattr(e2e, "run_child", fake_child)
    settings = harness.Settings(max_rows=7, replication=3, memory_repeats=1)
    figures = memory.run(small_dir, settings, tmp_path, warm=True)
    rows = sorted({_rows_of(args) for args, _ in calls})
    assert rows == [7, 21] and len(calls) == 2 * len(memory.ENTRIES) + 2  # + the original's pair
    assert all(fig["details"]["listings"] == {"1x": 7, "3x": 21} for fig in figures)
    assert "the first 7 of the dataset's 40 rows" in figures[0]["data"]

    calls.clear()
    figures = e2e.run(small_dir, settings, tmp_path)
    assert [_rows_of(args) for args, _ in calls] == [7, 7]  # deliverable 1, then 2
    assert len(figures) == 2 and "the first 7 of the dataset's 40 rows" in figures[0]["data"]
    from shared.environment import COLUMN_COST_ENV, column_cost_data_dir

    # the column-cost table looks where it would for the real dataset, not beside the copy
    assert calls[0][1] == {COLUMN_COST_ENV: str(column_cost_data_dir(small_dir))}


def test_goals_and_ratios():
    assert harness.goal_met("decode", 1.7) is True
    assert harness.goal_met("decode", 1.5) is False
    assert harness.goal_met("memory_transfer_finetuned", 1.2) is True
    assert harness.goal_met("memory_transfer_finetuned", 1.3) is False
    assert harness.goal_met("e2e_deliverable1", 3.0) is None
    assert harness.goal_met("decode", None) is None
    assert harness.ratio_of(3.0, 0) is None and harness.ratio_of(3.0, 2.0) == 1.5


def test_interleaved_runs_counts_items_and_repeats():
    calls = []
    runs = harness.interleaved_runs({"a": lambda: calls.append("a") or 4,
                                     "b": lambda: calls.append("b") or 2}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert len(runs["a"]["wall_s"]) == 3 and runs["a"]["items"] == 4 and runs["b"]["items"] == 2


def test_training_throughput_from_metrics():
    metrics = {"dataset": {"split": {"train": 100}}, "models": {
        "cnn": {"train_seconds": 10.0, "params": {"epochs_run": 5}},
        "mlp": {"train_seconds": 4.0, "params": {"trials": [{"epochs_run": 3}, {"epochs_run": 5}]}},
        "ridge": {"train_seconds": 1.0, "params": {"trials": [{"alpha": 1}, {"alpha": 2}]}},
        "mean": {"train_seconds": 0.0, "params": {}},
        "fusion": {"train_seconds": 20.0, "params": {"phase1_epochs": 10, "phase2_epochs_run": 2}},
    }}
    rows = {r["model"]: r for r in e2e.training_throughput(metrics)}
    assert rows["cnn"]["samples_per_s"] == 50.0
    assert rows["mlp"]["passes"] == 8 and rows["mlp"]["samples_per_s"] == 200.0
    assert rows["ridge"]["passes"] == 2 and "fits" in rows["ridge"]["basis"]
    assert rows["mean"]["samples_per_s"] is None
    assert rows["fusion"]["passes"] == 12


def test_run_child_measures_the_childs_own_peak_rss_and_names_a_failed_command(tmp_path):
    import numpy as np

    ballast = np.ones(400 * 2**20 // 8)  # this process: 400 MiB more resident than its child needs
    code = ("import numpy as np; from benchmarks.harness import print_result; "
            "a = np.ones(100 * 2**20 // 8); print_result({'items': int(a.size)})")
    out = harness.run_child(["-c", code], tmp_path / "ok.log")
    assert out["result"] == {"items": 100 * 2**20 // 8} and out["wall_s"] > 0
    # the child's 100 MiB array and interpreter, not the 400+ MiB of the process that started it
    assert 100 <= out["peak_rss_mib"] < 300 < ballast.nbytes / 2**20
    with pytest.raises(RuntimeError, match=r"exit 3\)[\s\S]*boom"):
        harness.run_child(["-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "bad.log")


def _fake_report() -> dict:
    figure = harness.figure(
        "decode", "Photo decoding", {"label": "pipeline", "value": 300.0, "unit": "images/s",
                                     "runs": [300.0], "cpu_ms_per_item": 5.0},
        {"label": "Pillow", "value": 200.0, "unit": "images/s", "runs": [200.0],
         "cpu_ms_per_item": 3.0}, 1.5, "pipeline / Pillow",
        details={"cpu_ms_per_photo_single_thread": {"tf: read + decode_image": 1.5,
                 "tf: decode_photo (decode + area resize + round/cast)": 4.0,
                 "tf: decode + antialiased bilinear resize (previous decoder)": 5.0},
                 "cpu_bound_ceiling": 1.2, "usable_cores": 2}, data="every usable photo (300)")
    return {"schema_version": 1, "started": "now", "machine": harness.machine_info(),
            "settings": harness.Settings(quick=True).to_json(), "benchmarks": ["decode"],
            "dataset": {"source": "some-set", "rows": 1234, "listings_sha256": "ab" * 32},
            "partial": True, "load_average": {"start": [1.0], "end": [1.0]}, "seconds": 60.0,
            "results": [figure, harness.skipped("memory_late_fusion", "Memory: late fusion",
                                                 "not there")],
            "findings": findings([figure])}


def test_report_markdown_lists_every_figure_and_the_findings(tmp_path):
    report = _fake_report()
    assert report["results"][0]["met"] is False and report["findings"]
    md, js = write_report(report, tmp_path)
    text = md.read_text()
    assert "| Photo decoding | pipeline: **300 images/s** | Pillow: 200 images/s | **1.50 x**" in text
    assert "skipped: not there" in text and "Not a full run" in text
    assert "- data: `some-set`, every usable photo (300)" in text
    assert "| dataset | `some-set`, 1,234 rows in listings.csv" in text
    assert "quick run: every figure on its first 100 rows" in text
    assert f"| CPU | {report['machine']['cpu_model']} |" in text
    # the finding is computed from the figure's own stage costs: 4.0 - 1.5 ms is the resize
    assert "is the JPEG decode itself and 2.50 ms the area resize" in text
    assert json.loads(js.read_text())["results"][0]["ratio"] == 1.5
    # re-rendering from the JSON gives the same page
    assert main(["--from-json", str(js), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "benchmarks.md").read_text() == text


def test_a_partial_run_merges_into_a_full_report_and_says_so(tmp_path):
    full = {**_fake_report(), "partial": False, "started": "earlier",
            "settings": {**harness.Settings(quick=True).to_json(), "quick": False}}
    later = {**full, "started": "later", "benchmarks": ["serve"],
             "results": [{**full["results"][0], "ratio": 0.9, "met": True},
                         harness.skipped("serve", "Price-estimate page", "no models")]}
    merged = merge_reports(full, later)
    ids = [fig["id"] for fig in merged["results"]]
    assert ids == ["decode", "memory_late_fusion", "serve"]          # replaced in place, added
    assert merged["results"][0]["ratio"] == 0.9 and merged["results"][0]["run"]["started"] == "later"
    assert "run" not in merged["results"][1] and merged["benchmarks"] == ["decode", "serve"]
    assert merged["findings"] == []                                   # computed from the merged figures
    text = write_report(merged, tmp_path)[0].read_text()
    assert "| later partial run | started later: serve" in text
    assert "- measured in a later partial run started later" in text
    with pytest.raises(ValueError, match="dataset differs"):
        merge_reports(full, {**later, "dataset": {"listings_sha256": "cd" * 32}})
    with pytest.raises(ValueError, match="quick"):
        merge_reports(full, {**later, "settings": harness.Settings(quick=True).to_json()})


def test_machine_info_records_cpu_and_cores():
    info = harness.machine_info()
    assert info["cpu_model"] and info["cpu_count"] >= 1 and 1 <= info["usable_cores"] <= info["cpu_count"]
    assert "tensorflow" in info["versions"]


def test_quick_or_partial_runs_never_write_over_docs(capsys):
    assert main(["--quick", "--out", str(environment.DOCS_DIR)]) == 2
    assert main(["--skip-e2e", "--out", str(environment.DOCS_DIR)]) == 2
    assert "never writes over docs" in capsys.readouterr().err
    assert main(["--only", "nonsense"]) == 2


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.timeout(1200)
def test_quick_harness_end_to_end(real_data_dir, tmp_path):
    """``python -m benchmarks --quick`` on the real data: every figure, with its reference
    and ratio, in the JSON and the Markdown; docs/benchmarks.* untouched."""
    docs = {name: (environment.DOCS_DIR / name).stat().st_mtime_ns
            for name in ("benchmarks.md", "benchmarks.json") if (environment.DOCS_DIR / name).exists()}
    out = tmp_path / "out"
    env = {**os.environ, "AIRBNB_DATA_DIR": str(real_data_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          cwd=environment.PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "benchmarks.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION and report["settings"]["quick"]
    assert report["machine"]["cpu_model"] and report["machine"]["usable_cores"] >= 1
    assert report["load_average"]["start"] and report["load_average"]["end"]
    figures = {fig["id"]: fig for fig in report["results"]}
    assert set(figures) == EXPECTED_QUICK_FIGURES
    for fig in figures.values():
        assert not fig["skipped"], fig["id"]
        for side in ("measured", "reference"):
            assert fig[side]["value"] is not None and fig[side]["value"] > 0, fig["id"]
            assert fig[side]["unit"] and fig[side]["runs"], fig["id"]
        assert fig["ratio"] is not None and fig["ratio"] > 0, fig["id"]
        assert fig["ratio_definition"]
        assert (fig["goal"] is None) == (fig["id"] not in harness.GOALS)
        assert fig["met"] in (True, False, None)
    assert figures["feature_cache"]["details"]["features_cached_second_run"] > 0
    text = (out / "benchmarks.md").read_text()
    for fig in figures.values():
        assert fig["title"] in text
    assert docs == {name: (environment.DOCS_DIR / name).stat().st_mtime_ns for name in docs}


def test_e2e_quotes_the_committed_render_only_when_it_comes_from_the_same_dataset(
        small_dir, tmp_path, monkeypatch):
    from shared.io import sha256_file

    monkeypatch.setattr(environment, "DOCS_DIR", tmp_path)
    (tmp_path / "deliverable1").mkdir()
    metrics = tmp_path / "deliverable1" / "metrics.json"
    sha = sha256_file(small_dir / "listings.csv")
    metrics.write_text(json.dumps({"dataset": {"listings_sha256": sha, "rows_usable": 40},
                                   "run": {"seconds": 123.4, "smoke": False}}))
    assert e2e.rendered_run("deliverable1", small_dir) == {"seconds": 123.4, "listings": 40,
                                                           "smoke": False}
    metrics.write_text(json.dumps({"dataset": {"listings_sha256": "0" * 64}, "run": {"seconds": 1}}))
    assert e2e.rendered_run("deliverable1", small_dir) is None
    assert e2e.rendered_run("deliverable2", small_dir) is None  # no report
