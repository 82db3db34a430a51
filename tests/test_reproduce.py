"""The reproduction check (``nox -s reproduce``, :mod:`shared.run.reproduce`).

The comparison is a pure function of two ``metrics.json`` contents and is tested on small
hand-made ones and on the committed ``docs/deliverable1/metrics.json``; the command line is tested
without training (``--candidate``), and once end to end on the smoke budget: a smoke run of
deliverable 1 is the reference, ``python -m shared.run.reproduce deliverable1 --smoke`` trains again
into a scratch folder and must find every test metric equal (same machine), and a perturbed copy
of the reference must make it fail, naming the metric.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared import environment
from shared.environment import cpu_kind
from shared.run.reproduce import (DEFAULT_TOLERANCE, ReproduceError, Tolerance, compare_metrics,
                                  format_comparison, main, same_machine_kind, train_into_scratch)

ROOT = Path(__file__).resolve().parents[1]
CPU = {"model": "Intel(R) Xeon(R) Processor", "family_model": "family 6, model 167",
       "arch": "x86_64", "usable_cores": 2, "isa": ["avx2", "avx512f", "fma"]}
DEVICE = "CPU, default strategy, 1 replica, float32"


def metrics(cpu=CPU, device=DEVICE, **changes) -> dict:
    """A small metrics.json: two models; ``changes`` = {"model.metric": new value}."""
    test = {"mae": 12.0, "rmse": 19.0, "mape": 22.0, "medape": 16.0, "r2_log": 0.75,
            "mae_ci95": [11.5, 12.5], "r2_log_ci95": [0.73, 0.78]}
    data = {"dataset": {"source": "airbnb-madrid-10k", "listings_sha256": "ab" * 32,
                        "split_fingerprint": "f1"},
            "run": {"device": device, "smoke": False, **({"cpu": cpu} if cpu else {})},
            "models": {"hgb": {"val": {"mae": 1.0}, "test": dict(test)},
                       "mean": {"test": {**test, "mae": 26.7, "r2_log": -2.8e-05}}}}
    for key, value in changes.items():
        model, metric = key.split(".")
        data["models"][model]["test"][metric] = value
    return data


# --------------------------------------------------------------------------- comparison


def test_same_machine_kind_is_exact_and_everything_equal_agrees():
    comparison = compare_metrics(metrics(), metrics())
    assert comparison.exact and comparison.agrees
    assert len(comparison.differences) == 2 * 9  # 5 point metrics + 2 intervals x 2 bounds
    text = format_comparison(comparison, "docs/x/metrics.json", "/tmp/run/metrics.json")
    assert "comparison: exact: every test metric must be equal" in text
    assert "same machine kind as the published run: Intel(R) Xeon(R) Processor (family 6, " \
        "model 167), x86_64, 2 usable cores, avx2 avx512f fma" in text
    assert text.splitlines()[-1] == "AGREE: all 18 test metrics of the 2 published models are equal"
    header, hgb, mean = [line for line in text.splitlines() if line.startswith(("model", "hgb",
                                                                                 "mean"))]
    assert header.split() == ["model", "mae", "rmse", "mape", "medape", "r2_log", "95%",
                              "intervals"]
    assert hgb.split() == ["hgb"] + ["equal"] * 6


def test_on_the_same_machine_any_difference_fails_and_is_named():
    comparison = compare_metrics(metrics(), metrics(**{"hgb.mae": 12.0000001}))
    assert comparison.exact and not comparison.agrees
    assert [(d.model, d.metric, d.status) for d in comparison.failures] == \
        [("hgb", "mae", "differs")]
    text = format_comparison(comparison, "ref", "run")
    assert "  hgb test mae: published 12.0, this run 12.0000001 (+1e-07 (+0.00%)): must be " \
        "equal" in text
    assert text.splitlines()[-1] == "DIFFER: 1 of 18 test metrics of the 2 published models " \
        "(hgb mae)"


def test_another_cpu_or_an_unrecorded_one_allows_the_stated_tolerance():
    other = {**CPU, "model": "AMD EPYC", "family_model": "family 25, model 17"}
    close = metrics(cpu=other, **{"hgb.mae": 12.3, "mean.r2_log": 0.009})  # +2.5%, 0.009 apart
    comparison = compare_metrics(metrics(), close)
    assert not comparison.exact and comparison.agrees
    assert "another CPU (family_model, model differ)" in comparison.why
    assert {d.status for d in comparison.differences if d.metric in ("mae", "r2_log")} == \
        {"within", "equal"}
    text = format_comparison(comparison, "ref", "run")
    assert "within a tolerance: each test metric within 3% of the published value (at least " \
        "0.01 apart allowed)" in text
    assert text.splitlines()[-1] == "AGREE within the tolerance: 16 of 18 test metrics of the 2 " \
        "published models equal, 2 within it"

    far = compare_metrics(metrics(), metrics(cpu=other, **{"hgb.rmse": 19.0 * 1.031}))
    assert [d.metric for d in far.failures] == ["rmse"]
    assert "outside the tolerance" in format_comparison(far, "ref", "run")

    unrecorded = compare_metrics(metrics(cpu=None), metrics())
    assert not unrecorded.exact and unrecorded.agrees
    assert unrecorded.why == "the published run does not record its CPU (run.cpu)"
    assert compare_metrics(metrics(cpu=None), metrics(), exact=True).exact
    assert not compare_metrics(metrics(), metrics(device="1 GPU (A100), ...")).exact


def test_a_missing_model_fails_and_a_new_one_is_only_listed():
    candidate = metrics()
    candidate["models"]["late_fusion"] = candidate["models"].pop("mean")
    comparison = compare_metrics(metrics(), candidate)
    assert not comparison.agrees
    assert {d.status for d in comparison.failures} == {"missing"}
    assert comparison.extra_models == ["late_fusion"]
    text = format_comparison(comparison, "ref", "run")
    assert "mean test mae: published 26.7, absent from this run" in text
    assert "not in the published metrics, not compared: late_fusion" in text


def test_another_dataset_or_budget_is_noted():
    candidate = metrics()
    candidate["dataset"]["listings_sha256"] = "cd" * 32
    candidate["run"].update(smoke=True, budget="smoke")
    reference = metrics()
    reference["run"]["budget"] = "full"
    notes = compare_metrics(reference, candidate).notes
    assert notes[0].startswith("this run used another dataset: listings.csv sha256 " + "cd" * 32)
    assert notes[1:] == ["the published run has smoke=False, this run smoke=True",
                         "the published run has budget=full, this run budget=smoke"]


def test_tolerance_rule():
    assert Tolerance(0.03, 0.01) == DEFAULT_TOLERANCE
    assert Tolerance().allows(100.0, 103.0) and not Tolerance().allows(100.0, 103.01)
    assert Tolerance().allows(0.0, 0.01) and not Tolerance().allows(0.0, 0.011)


def test_the_committed_reports_agree_with_themselves():
    for deliverable in ("deliverable1", "deliverable2"):
        published = json.loads((ROOT / "docs" / deliverable / "metrics.json").read_text())
        comparison = compare_metrics(published, copy.deepcopy(published))
        assert comparison.agrees and len(comparison.models) == len(published["models"]) >= 7
        assert all(d.status == "equal" for d in comparison.differences)


def test_cpu_kind_is_recorded_and_compared():
    kind = cpu_kind()
    assert set(kind) == {"model", "family_model", "arch", "usable_cores", "isa"}
    assert kind["model"] and kind["usable_cores"] >= 1
    assert same_machine_kind({"device": DEVICE, "cpu": kind}, {"device": DEVICE, "cpu": kind})[0]
    experiment = (ROOT / "shared" / "experiment.py").read_text()
    assert 'run.setdefault("cpu", cpu_kind())' in experiment


# --------------------------------------------------------------------------- command line


def test_command_line_compares_files_and_exits_0_1_2(tmp_path, capsys):
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(metrics()))
    same, perturbed = tmp_path / "same.json", tmp_path / "perturbed.json"
    same.write_text(json.dumps(metrics()))
    perturbed.write_text(json.dumps(metrics(**{"mean.medape": 17.0})))

    assert main(["deliverable1", "--reference", str(reference), "--candidate", str(same)]) == 0
    assert "AGREE" in capsys.readouterr().out
    assert main(["deliverable1", "--reference", str(reference), "--candidate",
                 str(perturbed)]) == 1
    assert "mean test medape: published 16.0, this run 17.0" in capsys.readouterr().out
    assert main(["deliverable1", "--reference", str(tmp_path / "none.json"), "--candidate",
                 str(same)]) == 2
    assert "no published metrics at" in capsys.readouterr().err
    assert main(["deliverable1", "--smoke"]) == 2
    assert "a smoke run has no published reference" in capsys.readouterr().err
    # the default reference is the committed report
    assert main(["deliverable2", "--candidate", str(ROOT / "docs/deliverable2/metrics.json")]) \
        == 0
    assert "published: " + str(environment.DOCS_DIR / "deliverable2" / "metrics.json") in \
        capsys.readouterr().out


def test_the_scratch_folder_is_never_the_projects_models_or_docs():
    for scratch in (environment.PROJECT_ROOT, environment.DOCS_DIR, environment.DOCS_DIR / "deliverable1",
                    environment.DEFAULT_MODELS_DIR / "x"):
        with pytest.raises(ReproduceError, match="choose a folder outside them"):
            train_into_scratch("deliverable1", Path("unused"), scratch, smoke=True)


def test_nox_has_the_reproduce_session():
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "def reproduce(session" in noxfile
    assert '"-m", "shared.run.reproduce", *session.posargs' in noxfile


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_smoke_run_reproduces_a_smoke_run_and_a_perturbed_metric_is_named(small_dir, tmp_path):
    env = {**os.environ, "AIRBNB_DL_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("AIRBNB_DATA_DIR", None)
    first = subprocess.run(
        [sys.executable, "-m", "deliverable1.train", "--smoke", "--data-dir", str(small_dir),
         "--models-dir", str(tmp_path / "first-models"), "--out", str(tmp_path / "first")],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    reference = tmp_path / "first" / "metrics.json"
    assert json.loads(reference.read_text())["run"]["cpu"] == cpu_kind()

    again = subprocess.run(
        [sys.executable, "-m", "shared.run.reproduce", "deliverable1", "--smoke", "--data-dir",
         str(small_dir), "--reference", str(reference), "--scratch", str(tmp_path / "again")],
        capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)

    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "comparison: exact: every test metric must be equal" in again.stdout
    assert re.search(r"AGREE: all \d+ test metrics of the \d+ published models are equal",
                     again.stdout), again.stdout[-2000:]
    assert (tmp_path / "again" / "out" / "metrics.json").is_file()

    published = json.loads(reference.read_text())
    published["models"]["transfer_frozen"]["test"]["rmse"] *= 1.0001
    perturbed = tmp_path / "perturbed.json"
    perturbed.write_text(json.dumps(published))
    check = subprocess.run(
        [sys.executable, "-m", "shared.run.reproduce", "deliverable1", "--reference", str(perturbed),
         "--candidate", str(tmp_path / "again" / "out" / "metrics.json")],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert check.returncode == 1, check.stdout[-3000:]
    assert "transfer_frozen test rmse: published" in check.stdout
    assert check.stdout.splitlines()[-1].endswith("(transfer_frozen rmse)")
