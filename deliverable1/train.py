"""Deliverable 1's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable1.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable1.train`` and the report
(``deliverable1/report.py``, rendered by ``nox -s deliverable1``) call: devices and seeds set up,
data loaded and split, every deliverable-1 model of the registry (:mod:`shared.models.registry`)
trained, evaluated, calibrated and saved by the one loop (:class:`shared.run.experiment.
Experiment`), the seed study, the goals checked and the conclusions computed
(:mod:`deliverable1.analysis`), and ``metrics.json`` written. The report only displays what it
returns. ``--out`` defaults to ``docs/deliverable1/`` (a scratch folder with ``--smoke``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from deliverable1 import analysis, column_cost
from deliverable1.split_sensitivity import split_sensitivity
from shared import environment
from shared.data import schema
from shared.data.split import FRACTIONS
from shared.features.model_data import prepare_data
from shared.models import registry
from shared.run.experiment import Experiment
from shared.run.records import save_json_if_chief, write_run_metrics
from shared.run.start import start_run, training_main

log = logging.getLogger(__name__)


def model_names() -> tuple[str, ...]:
    """Deliverable 1's models, in training order."""
    return registry.names(deliverable="deliverable1")


@dataclass
class Deliverable1Run:
    """What one run produced: the experiment (data, configuration, bundles, results,
    predictions, histories, feature-extraction stats), the analysis and where ``metrics.json``
    went."""

    exp: Experiment
    analysis: dict = field(default_factory=dict)     # see deliverable1.analysis.analyse
    metrics_path: Path | None = None

    @property
    def bundles(self) -> dict:
        return self.exp.bundles


def published_split(exp: Experiment) -> dict:
    """The split every model of the run was trained and tested on, as ``docs/deliverable1/
    split.json`` publishes it: the listing IDs of each part, the dataset and the rule."""
    split = exp.data.split
    return {"rule": split.rule, "seed": int(split.seed), "fractions": FRACTIONS,
            "dataset": {"source": Path(exp.data.dataset.data_dir).name,
                        "listings_sha256": exp.data.dataset.csv_sha256,
                        "usable_listings": int(len(exp.data.dataset.frame))},
            "parts": {name: ids.tolist() for name, ids in split.parts().items()}}


def column_cost_data(exp: Experiment):
    """(data, origin) the column-cost table runs on: the run's own data when its dataset has every
    OpenDataSoft column; else a dataset with all of them (:func:`shared.environment.
    column_cost_data_dir`) prepared with its own split under ``<models>/column-cost/``. (None,
    reason) when there is none."""
    if not exp.data.dataset.absent_columns:
        return exp.data, "the run's own dataset"
    data_dir = environment.column_cost_data_dir(exp.data.dataset.data_dir)
    if not (Path(data_dir) / "listings.csv").is_file():
        return None, (f"no dataset with all {len(schema.OPENDATASOFT_COLUMNS)} columns found "
                      f"(set {environment.COLUMN_COST_ENV})")
    other = prepare_data(data_dir, exp.cfg.models_dir / "column-cost", exp.cfg.seed_for("run"))
    if other.dataset.absent_columns:
        return None, f"{Path(data_dir).name} lacks {len(other.dataset.absent_columns)} columns"
    return other, Path(data_dir).name


def column_cost_table(exp: Experiment) -> dict:
    """{"dataset", "listings", "split", "rows": {variant: {...}}} of
    :func:`column_cost.column_cost`, or {"skipped": reason}."""
    data, origin = column_cost_data(exp)
    if data is None:
        log.info("column cost skipped: %s", origin)
        return {"skipped": origin}
    cfg = dataclasses.replace(exp.cfg, data_dir=Path(data.dataset.data_dir))
    table = column_cost.column_cost(data, cfg)
    log.info("column cost on %s: %s", origin, "; ".join(f"{i} test MAE {r.test_mae:.2f} EUR"
                                                       for i, r in table.iterrows()))
    return {"dataset": origin, "listings": int(len(data.dataset.frame)),
            "split": {p: int(len(data.parts[p].frame)) for p in data.parts},
            "rows": table.to_dict(orient="index")}


def run(data_dir, models_dir, smoke: bool = False, output_dir=None,
        budget=None) -> Deliverable1Run:
    """Everything deliverable 1 computes; ``metrics.json`` into ``output_dir`` (None: not written)."""
    exp = start_run(data_dir, models_dir, smoke=smoke, budget=budget)
    exp.train(model_names())
    result = Deliverable1Run(exp)
    # the seed study: hgb, mlp and the tabular network validation picks, retrained with other seeds
    for name in analysis.seed_study_models(exp):
        exp.record_seeds(name)
    result.analysis = analysis.analyse(exp)
    result.analysis["split_sensitivity"] = split_sensitivity(exp)
    result.analysis["column_cost"] = column_cost_table(exp)
    result.analysis["answer"] = analysis.answer(exp.results, result.analysis["goals"],
                                                result.analysis["split_sensitivity"])
    if output_dir is not None:
        result.metrics_path = write_run_metrics(exp, Path(output_dir) / "metrics.json",
                                                result.analysis)
        save_json_if_chief(exp.cfg, Path(output_dir) / "split.json", published_split(exp))
    return result


def main(argv=None) -> int:
    return training_main(run, "deliverable1", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
