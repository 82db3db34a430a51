"""Deliverable 2's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable2.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable2.train`` and the report
(``deliverable2/report.py``, rendered by ``nox -s deliverable2``) call, so both write the same
``metrics.json``: the deliverable-1 references (loaded when saved on this split, trained
otherwise), then ``early_fusion``, ``hgb_with_embeddings`` (same photo reducers),
``late_fusion`` and ``late_fusion_from_branches``, then the analysis
(:mod:`deliverable2.analysis`). ``--out`` defaults to ``docs/deliverable2/``
(``<models-dir>/smoke-metrics/deliverable2/`` with ``--smoke``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from deliverable2 import ablation, analysis
from deliverable2.references import References, load_or_train
from shared.backbones import DEFAULT_BACKBONE
from shared.experiment import Experiment, Trained, start_run, training_main
from shared.models import baselines, early_fusion, late_fusion, mlp, tabular_net
from shared.models.mlp import config_of
from shared.models.transfer import backbone_features, default_image_size

MODEL_NAMES = ("early_fusion", "hgb_with_embeddings", "late_fusion", "late_fusion_from_branches")


@dataclass
class FusionRun:
    """What the fusion steps share (the references, the cached backbone features per size) and
    what a run produced (bundles, the analysis, where ``metrics.json`` went)."""

    exp: Experiment
    backbone: str = DEFAULT_BACKBONE
    refs: References | None = None
    bundles: dict = field(default_factory=dict)
    photo_reducers: dict = field(default_factory=dict)  # early fusion's fitted candidates, by label
    _features: dict = field(default_factory=dict)
    extraction: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)   # see deliverable2.analysis.analyse
    metrics_path: Path | None = None

    @property
    def image_size(self) -> int:
        return default_image_size(self.exp.cfg)

    def raw_features(self, image_size: int | None = None) -> dict:
        """{part: (n, 1280) float32} cached ImageNet backbone features."""
        size = image_size or self.image_size
        if size not in self._features:
            self._features[size], self.extraction[size] = backbone_features(
                self.exp.data, self.exp.cfg, self.backbone, size)
        return self._features[size]

    def mlp_config(self) -> dict:
        return config_of(self.refs.bundles["mlp"].params)


def train_early(run: FusionRun, log=print) -> Trained:
    trained, run.photo_reducers = early_fusion.train_early_fusion(
        run.exp.data, run.exp.cfg, run.raw_features(), run.backbone, run.image_size,
        base_config=run.mlp_config(), log=log)
    return trained


def train_hgb_embeddings(run: FusionRun, log=print) -> Trained:
    early = run.bundles["early_fusion"]
    chosen = early_fusion.reducer_label(early.image_reducer)
    candidates = {chosen: early.image_reducer}
    score = run.photo_reducers.get("score")
    if score is not None and chosen != "score":
        candidates["score"] = score
    hgb = run.refs.bundles["hgb"].params  # deliverable 1's settings; only the photo columns are new
    settings = {key: hgb[key] for key in baselines.HGB_SPACE}
    return early_fusion.train_hgb_with_embeddings(run.exp.data, run.exp.cfg, run.raw_features(),
                                                  candidates, run.backbone, run.image_size,
                                                  grid=[settings])


def train_late(run: FusionRun, log=print) -> Trained:
    return late_fusion.train_late_fusion(run.exp.data, run.exp.cfg, run.raw_features(),
                                         run.backbone, run.image_size, run.mlp_config(), log=log)


def train_from_branches(run: FusionRun, log=print) -> Trained:
    refs = run.refs
    return late_fusion.train_late_fusion_from_branches(
        run.exp.data, run.exp.cfg, refs.bundles["mlp"], refs.bundles[refs.best_transfer],
        refs.best_transfer, run.raw_features, log=log)


STEPS = {"early_fusion": train_early, "hgb_with_embeddings": train_hgb_embeddings,
         "late_fusion": train_late, "late_fusion_from_branches": train_from_branches}


def train_all(exp: Experiment, log=print) -> FusionRun:
    """References, then every fusion model, each evaluated, calibrated and saved by ``exp``."""
    run = FusionRun(exp)
    start = time.perf_counter()
    run.refs = load_or_train(exp.data, exp.cfg, exp, log=log)
    for name, how in run.refs.origin.items():
        log(f"  {name}: {how}")
    log(f"references ready ({time.perf_counter() - start:.0f} s)")
    trained = {}
    for name in MODEL_NAMES:
        trained[name] = STEPS[name](run, log=log)
        exp.evaluate(trained[name], log=log)
        run.bundles[name] = trained[name].bundle
    seed_study(run, trained, log)
    return run


def seed_study(run: FusionRun, trained: dict, log=print) -> None:
    """The fusion model validation picks and the best tabular reference, each retrained with the
    budget's seeds on the fixed split (``results[name]["seeds"]``); a model without a cheap
    retrain (the end-to-end late fusion networks) records why it has none."""
    exp = run.exp
    chosen = ablation.chosen_fusion(exp)
    reference = ablation.best_tabular(exp)
    if trained[chosen].reseed is not None:
        exp.record_seeds(chosen, trained[chosen].reseed, log=log)
    else:
        exp.results[chosen]["seeds_skipped"] = ("retrained end to end on every photo; too slow "
                                                "for the budget")
    params = run.refs.bundles[reference].params
    reseed = {"hgb": baselines.hgb_reseed, "mlp": mlp.mlp_reseed,
              "tabular_net": tabular_net.tabular_net_reseed}[reference](exp.data, exp.cfg, params)
    exp.record_seeds(reference, reseed, log=log)


def run(data_dir, models_dir, smoke: bool = False, output_dir=None, log=print,
        budget=None) -> FusionRun:
    """Everything deliverable 2 computes; ``metrics.json`` into ``output_dir`` (None: not written)."""
    exp = start_run(data_dir, models_dir, smoke=smoke, budget=budget)
    fusion = train_all(exp, log=log)
    fusion.analysis = analysis.analyse(fusion)
    if output_dir is not None:
        fusion.metrics_path = exp.write_metrics(Path(output_dir) / "metrics.json",
                                                analysis.metrics_extra(fusion))
    return fusion


def main(argv=None) -> int:
    return training_main(run, "deliverable2", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
