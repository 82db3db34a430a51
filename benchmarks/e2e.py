"""Figures ``e2e_<deliverable>``: wall time of each deliverable's report command vs the summed
training time of its models, and the training throughput per model (from its metrics.json).

The reports run on the first ``settings.max_rows`` rows of the dataset
(:func:`benchmarks.harness.bounded_dataset`), whatever its size: the figure is the overhead of the
command around its trainings (wall / training time) and the training throughput, which a bounded
run measures as well as a full one, while full renders on the 10,351-listing set take over an
hour. The time of the full render is in the rendered report's own ``metrics.json``
(``run.seconds``); the figure quotes it when that report was rendered from the same dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import bounded_dataset, figure, fmt, ratio_of, run_child
from shared import environment

if TYPE_CHECKING:
    from benchmarks.harness import Settings

REPORTS = ("deliverable1", "deliverable2")


def training_throughput(metrics: dict) -> list[dict]:
    """Training throughput per model from a deliverable's ``metrics.json``.

    samples/s = training rows x epochs (summed over the searched candidates when they record
    ``epochs_run``) / ``train_seconds``. Models without epochs (sklearn fits, the frozen-feature
    head whose trials record none) report training rows x fits / s, labelled as such.
    """
    n_train = int(metrics.get("dataset", {}).get("split", {}).get("train", 0))
    rows = []
    for name, record in metrics.get("models", {}).items():
        params = record.get("params", {}) or {}
        seconds = float(record.get("train_seconds", 0.0))
        trials = params.get("trials") or []
        epoch_keys = [k for k in params if isinstance(params[k], int) and not isinstance(
            params[k], bool) and (k == "epochs_run" or k.endswith("_epochs_run")
                                  or k.endswith("phase1_epochs"))]
        if seconds <= 0:  # a model reused from an earlier run (deliverable 2 reloads its references)
            rows.append({"model": name, "train_seconds": 0.0, "n_train": n_train, "passes": 0,
                         "basis": "reused, not trained in this run", "samples_per_s": None})
            continue
        if epoch_keys:
            passes, basis = int(sum(params[k] for k in epoch_keys)), "epochs (" + " + ".join(epoch_keys) + ")"
        elif trials and all("epochs_run" in t for t in trials):
            passes, basis = int(sum(t["epochs_run"] for t in trials)), "epochs summed over the search"
        elif trials:
            passes, basis = len(trials), "fits (no epochs recorded)"
        else:
            passes, basis = 1, "one fit"
        rows.append({"model": name, "train_seconds": round(seconds, 2), "n_train": n_train,
                     "passes": passes, "basis": basis,
                     "samples_per_s": round(n_train * passes / seconds, 1)})
    return rows


def run(data_dir: Path, settings: Settings, workdir: Path) -> list[dict]:
    """Wall time of each deliverable's report command on the first ``settings.max_rows`` rows of
    ``data_dir``, and training throughput per model.

    Deliverable 2 reuses the models deliverable 1 wrote into the same temporary models folder,
    as ``nox -s deliverable2`` does after ``nox -s deliverable1``. The column-cost table of
    deliverable 1 looks for its all-column dataset where it would for ``data_dir`` (the bounded
    copy lives in a temporary folder).
    """
    from shared.environment import COLUMN_COST_ENV, column_cost_data_dir

    bounded = bounded_dataset(data_dir, workdir, settings.max_rows)
    env = {COLUMN_COST_ENV: str(column_cost_data_dir(data_dir))}
    models = workdir / "e2e-models"
    figures = []
    for deliverable in REPORTS:
        out = workdir / f"e2e-{deliverable}" / "docs"
        out.parent.mkdir(parents=True, exist_ok=True)
        args = ["-m", "shared.cli", "report", deliverable, "--data-dir", bounded["data_dir"],
                "--out", str(out), "--models-dir", str(models)]
        wall = run_child(args + (["--smoke"] if settings.e2e_smoke else []),
                         out.parent / f"{deliverable}.log", env=env)["wall_s"]
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
        figures.append(_figure(deliverable, wall, metrics, bounded, settings,
                               rendered_run(deliverable, data_dir)))
    return figures


def _figure(deliverable: str, wall: float, metrics: dict, bounded: dict, settings: Settings,
            rendered: dict | None) -> dict:
    throughput = training_throughput(metrics)
    train_total = sum(r["train_seconds"] for r in throughput) or None
    listings = metrics.get("dataset", {}).get("rows_usable")
    return figure(
        f"e2e_{deliverable}", f"Wall time of nox -s {deliverable} (airbnb-dl report {deliverable})",
        {"label": "wall time of the report command", "value": wall, "unit": "s",
         "runs": [round(wall, 1)]},
        {"label": "sum of the models' train_seconds", "value": train_total, "unit": "s",
         "runs": [round(train_total, 1)] if train_total else []},
        ratio_of(wall, train_total), "wall time / summed training time",
        details={"throughput": throughput,
                 "models_dir_reused_from": "deliverable1" if deliverable != "deliverable1" else None,
                 "report_run": metrics.get("run", {}), "listings": listings,
                 "max_rows": settings.max_rows, "rendered_full_run": rendered},
        notes=[f"The report runs on a bounded copy of the dataset (max_rows={settings.max_rows:,}):"
               " the ratio is the command's overhead around its trainings and the throughput "
               "table the training speed, neither of which needs the whole dataset, while a full "
               "render of a large dataset takes as long as the report's budget allows (its own "
               "time is quoted below when the committed report comes from this dataset). One "
               "run (a report takes minutes; repeating it on a shared 2-core machine would not "
               "make it more representative). Same command as the nox session, output and "
               "models in temporary folders (docs/ and models/ untouched), environment reused, "
               "feature cache warm (as on any rerun; the first-ever run adds the extraction time "
               "of the feature-cache figure)."],
        data=(f"the first {bounded['rows']:,} of the dataset's {bounded['source_rows']:,} rows "
              f"({listings if listings is not None else 'n/a'} usable listings; "
              f"max_rows={settings.max_rows:,} whatever the dataset's size)"))


def rendered_run(deliverable: str, data_dir: Path) -> dict | None:
    """The full render's own timing, from ``docs/<deliverable>/metrics.json``, when that report
    was rendered from ``data_dir`` (same listings.csv sha256): {"seconds", "listings",
    "smoke"}; None otherwise (no report, another dataset, no timing)."""
    from shared.io import sha256_file

    path = environment.DOCS_DIR / deliverable / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    dataset, run = metrics.get("dataset", {}), metrics.get("run", {})
    if dataset.get("listings_sha256") != sha256_file(Path(data_dir) / "listings.csv") \
            or run.get("seconds") is None:
        return None
    return {"seconds": run["seconds"], "listings": dataset.get("rows_usable"),
            "smoke": bool(run.get("smoke"))}


def section(fig: dict) -> list[str]:
    """Markdown details: the throughput table (when the run's metrics.json had models)."""
    details = fig["details"]
    lines, rendered = [], details.get("rendered_full_run")
    if rendered:
        lines += [f"When this benchmark ran, the committed report "
                  f"(docs/{fig['id'][len('e2e_'):]}/metrics.json), rendered "
                  f"on the whole dataset ({rendered['listings']} usable listings"
                  + (", smoke settings" if rendered["smoke"] else "")
                  + f"), took {fmt(rendered['seconds'], 's')} by its own clock.", ""]
    throughput = details.get("throughput")
    if not throughput:
        return lines
    lines += ["Training throughput per model (from the run's metrics.json):", "",
             "| model | train s | training rows | passes | basis | samples/s |",
             "|---|---|---|---|---|---|"]
    for row in throughput:
        lines.append(f"| {row['model']} | {fmt(row['train_seconds'], '', 1)} | {row['n_train']} | "
                     f"{row['passes']} | {row['basis']} | {fmt(row['samples_per_s'], '', 1)} |")
    return lines + [""]


def finding(fig: dict) -> None:
    """The e2e figures have no goal, so nothing to explain."""
    return None
