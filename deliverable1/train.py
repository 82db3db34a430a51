"""Deliverable 1's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable1.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable1.train`` and the report
(``deliverable1/report.py``, rendered by ``nox -s deliverable1``) call: devices and seeds set up,
data loaded and split, every model trained, evaluated and saved (:func:`train_all`), the goals
checked and the conclusions computed (:mod:`deliverable1.analysis`), and ``metrics.json``
written. The report only displays what it returns. ``--out`` defaults to ``docs/deliverable1/``
(``<models-dir>/smoke-metrics/deliverable1/`` with ``--smoke``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import os

from deliverable1 import analysis, baselines, cnn_scratch, column_cost, mlp, transfer
from shared import schema
from shared.experiment import Experiment, prepare, start_run, timed_step, training_main

#: The dataset the column-cost table is computed on when the run's own dataset lacks columns:
#: ``$AIRBNB_COLUMN_COST_DATA_DIR``, else the 814-listing set beside the run's data directory.
COLUMN_COST_ENV = "AIRBNB_COLUMN_COST_DATA_DIR"
ALL_COLUMNS_SET = "airbnb-madrid"

MODEL_NAMES = ("mean", "ridge", "hgb", "mlp", "cnn_scratch", "transfer_frozen", "transfer_finetuned")


@dataclass
class Deliverable1Run:
    """What one run produced: the experiment (data, split, results, predictions, histories), the
    trained bundles, the backbone-feature extraction stats, the analysis and where
    ``metrics.json`` went."""

    exp: Experiment
    bundles: dict = field(default_factory=dict)
    extraction: dict = field(default_factory=dict)   # computed / cached / seconds
    analysis: dict = field(default_factory=dict)     # see deliverable1.analysis.analyse
    metrics_path: Path | None = None


def train_all(exp: Experiment, include=MODEL_NAMES, log=print) -> Deliverable1Run:
    """Train, evaluate and save the models named in ``include`` on ``exp``'s split (also used by
    deliverable 2 for missing references)."""
    result = Deliverable1Run(exp)
    steps = [("mean", baselines.train_mean), ("ridge", baselines.train_ridge),
             ("hgb", baselines.train_hgb), ("mlp", mlp.train_mlp),
             ("cnn_scratch", cnn_scratch.train_cnn_scratch)]
    for name, step in steps:
        if name in include:
            result.bundles[name] = timed_step(exp, name, lambda: step(exp), log)
    if {"transfer_frozen", "transfer_finetuned"} & set(include):
        frozen, result.extraction = timed_step(exp, "transfer_frozen",
                                               lambda: transfer.train_transfer_frozen(exp), log)
        result.bundles["transfer_frozen"] = frozen
        if "transfer_finetuned" in include:
            result.bundles["transfer_finetuned"] = timed_step(
                exp, "transfer_finetuned", lambda: transfer.train_transfer_finetuned(exp, frozen),
                log)
    return result


def column_cost_data_dir(data_dir) -> Path:
    """Where the column-cost table looks for a dataset with every column when ``data_dir`` lacks
    some: ``$AIRBNB_COLUMN_COST_DATA_DIR``, else ``airbnb-madrid`` beside ``data_dir``."""
    return Path(os.environ.get(COLUMN_COST_ENV) or Path(data_dir).parent / ALL_COLUMNS_SET)


def column_cost_experiment(exp: Experiment, models_dir) -> tuple[Experiment | None, str]:
    """The experiment the column-cost table runs on, and where its data came from.

    The run's own experiment when its dataset has every OpenDataSoft column; else a dataset with
    all of them (``$AIRBNB_COLUMN_COST_DATA_DIR``, else ``airbnb-madrid`` beside the run's data
    directory), prepared with its own split under ``<models>/column-cost/``. (None, reason) when
    there is none."""
    if not exp.dataset.absent_columns:
        return exp, "the run's own dataset"
    data_dir = column_cost_data_dir(exp.dataset.data_dir)
    if not (Path(data_dir) / "listings.csv").is_file():
        return None, (f"no dataset with all {len(schema.OPENDATASOFT_COLUMNS)} columns found "
                      f"(set {COLUMN_COST_ENV})")
    other = prepare(data_dir, Path(models_dir) / "column-cost", smoke=exp.smoke)
    if other.dataset.absent_columns:
        return None, f"{Path(data_dir).name} lacks {len(other.dataset.absent_columns)} columns"
    return other, Path(data_dir).name


def column_cost_table(exp: Experiment, models_dir, log=print) -> dict:
    """{"dataset", "listings", "rows": {variant: {...}}} of :func:`column_cost.column_cost`, or
    {"skipped": reason}."""
    other, origin = column_cost_experiment(exp, models_dir)
    if other is None:
        log(f"column cost skipped: {origin}")
        return {"skipped": origin}
    table = column_cost.column_cost(other)
    log(f"column cost on {origin}: " + "; ".join(f"{i} test MAE {r.test_mae:.2f} EUR"
                                                  for i, r in table.iterrows()))
    return {"dataset": origin, "listings": int(len(other.dataset.frame)),
            "split": {p: int(len(other.parts[p].frame)) for p in other.parts},
            "rows": table.to_dict(orient="index")}


def run(data_dir, models_dir, smoke: bool = False, output_dir=None, log=print) -> Deliverable1Run:
    """Everything deliverable 1 computes; ``metrics.json`` into ``output_dir`` (None: not written)."""
    exp = start_run(data_dir, models_dir, smoke=smoke)
    result = train_all(exp, log=log)
    result.analysis = analysis.analyse(exp.results)
    result.analysis["column_cost"] = column_cost_table(exp, models_dir, log)
    if output_dir is not None:
        result.metrics_path = Path(output_dir) / "metrics.json"
        exp.write_metrics(result.metrics_path, result.analysis)
    return result


def main(argv=None) -> int:
    return training_main(run, "deliverable1", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
