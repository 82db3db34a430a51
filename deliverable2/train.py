"""Deliverable 2's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable2.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable2.train`` and the report
(``deliverable2/report.py``, rendered by ``nox -s deliverable2``) call, so both write the same
``metrics.json``: the deliverable-1 references (:mod:`deliverable2.references`: reused when
saved on this split, trained otherwise), then every deliverable-2 model of the registry in
training order (``tabular_blend``, the control; ``early_fusion``, ``hgb_with_embeddings``,
``late_fusion``, ``late_fusion_from_branches``; ``blend``, which combines them), each evaluated,
calibrated and saved by the one loop (:class:`shared.run.experiment.Experiment`), the seed
study, then the analysis (:mod:`deliverable2.analysis`). ``--out`` defaults to
``docs/deliverable2/`` (``<models-dir>/smoke-metrics/deliverable2/`` with ``--smoke``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from deliverable2 import ablation, analysis, references
from shared.models import registry
from shared.run.experiment import Experiment
from shared.run.records import save_json_if_chief, write_run_metrics
from shared.run.start import start_run, training_main

log = logging.getLogger(__name__)


def model_names() -> tuple[str, ...]:
    """Deliverable 2's models, in training order."""
    return registry.names(deliverable="deliverable2")


@dataclass
class FusionRun:
    """What one run produced: the experiment (data, configuration, bundles, results, cached
    photo features), the photo-only reference, the analysis and where ``metrics.json`` went."""

    exp: Experiment
    best_image: str = ""
    analysis: dict = field(default_factory=dict)   # see deliverable2.analysis.analyse
    metrics_path: Path | None = None

    @property
    def bundles(self) -> dict:
        return self.exp.bundles


def train_all(exp: Experiment) -> FusionRun:
    """References, then every deliverable-2 model, each evaluated, calibrated and saved."""
    start = time.perf_counter()
    fusion = FusionRun(exp, best_image=references.obtain(exp))
    log.info("references ready (%.0f s)", time.perf_counter() - start)
    exp.train(model_names())
    seed_study(exp)
    return fusion


def seed_study(exp: Experiment) -> None:
    """The fusion model and the tabular-only model validation picks (a blend: every member that
    can be retrained, retrained) and the goal's tabular reference, each retrained with the
    budget's seeds on the fixed split (``results[name]["seeds"]``; a model without a cheap
    retrain, the end-to-end late fusion network, records why it has none)."""
    names = (ablation.chosen_fusion(exp), ablation.chosen_tabular(exp), ablation.best_tabular(exp))
    for name in dict.fromkeys(names):
        exp.record_seeds(name)


#: Where a run records the models its validation picks (read by ``airbnb-dl serve``).
PICKS_FILE = "picks.json"


def picks(exp: Experiment) -> dict:
    """The models validation picks: the fusion model and the tabular-only one."""
    return {"fusion": ablation.chosen_fusion(exp), "tabular": ablation.chosen_tabular(exp)}


def run(data_dir, models_dir, smoke: bool = False, output_dir=None, budget=None) -> FusionRun:
    """Everything deliverable 2 computes; ``metrics.json`` into ``output_dir`` (None: not written)
    and the validation picks into ``<models_dir>/picks.json``."""
    exp = start_run(data_dir, models_dir, smoke=smoke, budget=budget)
    fusion = train_all(exp)
    save_json_if_chief(exp.cfg, exp.cfg.models_dir / PICKS_FILE, picks(exp))
    fusion.analysis = analysis.analyse(fusion)
    if output_dir is not None:
        fusion.metrics_path = write_run_metrics(exp, Path(output_dir) / "metrics.json",
                                                analysis.metrics_extra(fusion))
    return fusion


def main(argv=None) -> int:
    return training_main(run, "deliverable2", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
