"""Deliverable 1's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable1.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable1.train`` and the report
(``deliverable1/report.py``, rendered by ``nox -s deliverable1``) call: devices and seeds set up,
data loaded and split, every model trained (:mod:`shared.models`) and evaluated, calibrated and
saved by the one loop (:meth:`shared.experiment.Experiment.evaluate`), the goals checked and the
conclusions computed (:mod:`deliverable1.analysis`), and ``metrics.json`` written. The report only
displays what it returns. ``--out`` defaults to ``docs/deliverable1/`` (a scratch folder with
``--smoke``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from deliverable1 import analysis, column_cost
from deliverable1.split_sensitivity import split_sensitivity
from shared import config, schema
from shared.data import prepare_data
from shared.experiment import Experiment, save_json_if_chief, start_run, training_main
from shared.models import SINGLE_SOURCE_MODELS, train_single_source
from shared.split import FRACTIONS

MODEL_NAMES = SINGLE_SOURCE_MODELS


@dataclass
class Deliverable1Run:
    """What one run produced: the experiment (data, configuration, results, predictions,
    histories), the trained bundles, the backbone-feature extraction stats, the analysis and where
    ``metrics.json`` went."""

    exp: Experiment
    bundles: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)      # name -> shared.experiment.Trained
    extraction: dict = field(default_factory=dict)   # computed / cached / seconds
    analysis: dict = field(default_factory=dict)     # see deliverable1.analysis.analyse
    metrics_path: Path | None = None


def train_all(exp: Experiment, log=print) -> Deliverable1Run:
    """Train every deliverable-1 model on ``exp``'s split; each is evaluated, calibrated and saved
    by ``exp`` as soon as it is trained."""
    trained = train_single_source(exp, MODEL_NAMES, log=log)
    return Deliverable1Run(exp, bundles={name: t.bundle for name, t in trained.items()},
                           trained=trained,
                           extraction=trained["transfer_frozen"].extra["extraction"])




def published_split(exp: Experiment) -> dict:
    """The split every model of the run was trained and tested on, as ``docs/deliverable1/
    split.json`` publishes it: the listing IDs of each part, the dataset and the rule."""
    split = exp.data.split
    return {"rule": split.rule, "seed": int(split.seed), "fractions": FRACTIONS,
            "dataset": {"source": Path(exp.data.dataset.data_dir).name,
                        "listings_sha256": exp.data.dataset.csv_sha256,
                        "usable_listings": int(len(exp.data.dataset.frame))},
            "parts": {name: ids.tolist() for name, ids in split.parts().items()}}


def column_cost_experiment(exp: Experiment, log=print):
    """(data, origin) the column-cost table runs on: the run's own data when its dataset has every
    OpenDataSoft column; else a dataset with all of them (:func:`shared.config.column_cost_data_dir`)
    prepared with its own split under ``<models>/column-cost/``. (None, reason) when there is
    none."""
    if not exp.data.dataset.absent_columns:
        return exp.data, "the run's own dataset"
    data_dir = config.column_cost_data_dir(exp.data.dataset.data_dir)
    if not (Path(data_dir) / "listings.csv").is_file():
        return None, (f"no dataset with all {len(schema.OPENDATASOFT_COLUMNS)} columns found "
                      f"(set {config.COLUMN_COST_ENV})")
    other = prepare_data(data_dir, exp.cfg.models_dir / "column-cost", exp.cfg.seed)
    if other.dataset.absent_columns:
        return None, f"{Path(data_dir).name} lacks {len(other.dataset.absent_columns)} columns"
    return other, Path(data_dir).name


def column_cost_table(exp: Experiment, log=print) -> dict:
    """{"dataset", "listings", "split", "rows": {variant: {...}}} of
    :func:`column_cost.column_cost`, or {"skipped": reason}."""
    data, origin = column_cost_experiment(exp, log)
    if data is None:
        log(f"column cost skipped: {origin}")
        return {"skipped": origin}
    cfg = dataclasses.replace(exp.cfg, data_dir=Path(data.dataset.data_dir))
    table = column_cost.column_cost(data, cfg)
    log(f"column cost on {origin}: " + "; ".join(f"{i} test MAE {r.test_mae:.2f} EUR"
                                                  for i, r in table.iterrows()))
    return {"dataset": origin, "listings": int(len(data.dataset.frame)),
            "split": {p: int(len(data.parts[p].frame)) for p in data.parts},
            "rows": table.to_dict(orient="index")}


def run(data_dir, models_dir, smoke: bool = False, output_dir=None, log=print,
        budget=None) -> Deliverable1Run:
    """Everything deliverable 1 computes; ``metrics.json`` into ``output_dir`` (None: not written)."""
    exp = start_run(data_dir, models_dir, smoke=smoke, budget=budget)
    result = train_all(exp, log=log)
    # the seed study: hgb and the tabular network validation picks, retrained with other seeds
    for name in ("hgb", analysis.best_on_validation(exp.results, analysis.NETWORKS)):
        exp.record_seeds(name, result.trained[name].reseed, log=log)
    result.analysis = analysis.analyse(exp.results)
    result.analysis["split_sensitivity"] = split_sensitivity(exp, log)
    result.analysis["column_cost"] = column_cost_table(exp, log)
    result.analysis["answer"] = analysis.answer(exp.results, result.analysis["goals"],
                                                result.analysis["split_sensitivity"])
    if output_dir is not None:
        result.metrics_path = exp.write_metrics(Path(output_dir) / "metrics.json", result.analysis)
        save_json_if_chief(exp.cfg, Path(output_dir) / "split.json", published_split(exp))
    return result


def main(argv=None) -> int:
    return training_main(run, "deliverable1", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
