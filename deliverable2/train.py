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

from deliverable1.mlp import config_of
from deliverable1.transfer import backbone_features, default_image_size
from deliverable2 import analysis, early_fusion, late_fusion
from deliverable2.references import References, load_or_train
from shared.backbones import DEFAULT_BACKBONE
from shared.experiment import Experiment, start_run, timed_step, training_main

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
        return default_image_size(self.exp)

    def raw_features(self, image_size: int | None = None) -> dict:
        """{"train"/"val"/"test": (n, 1280) float32} cached ImageNet backbone features."""
        size = image_size or self.image_size
        if size not in self._features:
            self._features[size], self.extraction[size] = backbone_features(self.exp, self.backbone,
                                                                            size)
        return self._features[size]

    def mlp_config(self) -> dict:
        return config_of(self.refs.bundles["mlp"].params)


def train_references(run: FusionRun, log=print) -> References:
    run.refs = load_or_train(run.exp, log=log)
    for name, how in run.refs.origin.items():
        log(f"  {name}: {how}")
    return run.refs


def train_early(run: FusionRun, log=print):
    bundle, run.photo_reducers = early_fusion.train_early_fusion(
        run.exp, run.raw_features(), run.backbone, run.image_size, base_config=run.mlp_config(),
        log=log)
    run.bundles[bundle.name] = bundle
    return bundle


def train_hgb_embeddings(run: FusionRun, log=print):
    early = run.bundles["early_fusion"]
    chosen = early_fusion.reducer_label(early.image_reducer)
    candidates = {chosen: early.image_reducer}
    score = run.photo_reducers.get("score")
    if score is not None and chosen != "score":
        candidates["score"] = score
    bundle = early_fusion.train_hgb_with_embeddings(run.exp, run.raw_features(), candidates,
                                                    run.backbone, run.image_size)
    run.bundles[bundle.name] = bundle
    return bundle


def train_late(run: FusionRun, log=print):
    bundle = late_fusion.train_late_fusion(run.exp, run.raw_features(), run.backbone,
                                           run.image_size, run.mlp_config(), log=log)
    run.bundles[bundle.name] = bundle
    return bundle


def train_from_branches(run: FusionRun, log=print):
    bundle = late_fusion.train_late_fusion_from_branches(run.exp, run.refs, run.raw_features,
                                                         log=log)
    run.bundles[bundle.name] = bundle
    return bundle


STEPS = {"early_fusion": train_early, "hgb_with_embeddings": train_hgb_embeddings,
         "late_fusion": train_late, "late_fusion_from_branches": train_from_branches}


def train_all(exp: Experiment, include=MODEL_NAMES, log=print) -> FusionRun:
    """References, then the fusion models named in ``include`` (saved under exp.models_dir)."""
    run = FusionRun(exp)
    start = time.perf_counter()
    train_references(run, log=log)
    log(f"references ready ({time.perf_counter() - start:.0f} s)")
    if "hgb_with_embeddings" in include and "early_fusion" not in include:
        include = ("early_fusion", *include)  # its photo reducer is early fusion's
    for name in MODEL_NAMES:
        if name in include:
            timed_step(exp, name, lambda: STEPS[name](run, log=log), log)
    return run


def run(data_dir, models_dir, smoke: bool = False, output_dir=None, log=print) -> FusionRun:
    """Everything deliverable 2 computes; ``metrics.json`` into ``output_dir`` (None: not written)."""
    exp = start_run(data_dir, models_dir, smoke=smoke)
    fusion = train_all(exp, log=log)
    fusion.analysis = analysis.analyse(fusion)
    if output_dir is not None:
        fusion.metrics_path = Path(output_dir) / "metrics.json"
        exp.write_metrics(fusion.metrics_path, analysis.metrics_extra(fusion))
    return fusion


def main(argv=None) -> int:
    return training_main(run, "deliverable2", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
