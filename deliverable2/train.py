"""Deliverable 2's one evaluation path: train every model, analyse, write ``metrics.json``.

    python -m deliverable2.train [--data-dir D] [--models-dir M] [--smoke] [--out DIR]

:func:`run` is what both ``python -m deliverable2.train`` and the report
(``deliverable2/report.py``, rendered by ``nox -s deliverable2``) call, so both write the same
``metrics.json``: the deliverable-1 references (loaded when saved on this split, trained
otherwise), then ``early_fusion``, ``hgb_with_embeddings`` (same photo reducers),
``late_fusion``, ``late_fusion_from_branches`` and ``blend`` (a tabular and a photo-seeing model
averaged in log space, pair and weight chosen on validation), then the analysis
(:mod:`deliverable2.analysis`). ``--out`` defaults to ``docs/deliverable2/``
(``<models-dir>/smoke-metrics/deliverable2/`` with ``--smoke``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deliverable2 import ablation, analysis
from deliverable2.references import TABULAR_REFERENCES, References, load_or_train
from shared.backbones import DEFAULT_BACKBONE
from shared.bundles import ModelBundle
from shared.experiment import Experiment, Trained, start_run, training_main
from shared.models import baselines, blend, early_fusion, late_fusion, reseed_of
from shared.models.mlp import config_of
from shared.models.transfer import backbone_features, default_image_size

MODEL_NAMES = ablation.FUSION  # in training order; ``blend`` last, it combines the others


@dataclass
class FusionRun:
    """What the fusion steps share (the references, the cached backbone features per size) and
    what a run produced (bundles, the analysis, where ``metrics.json`` went)."""

    exp: Experiment
    backbone: str = DEFAULT_BACKBONE
    refs: References | None = None
    bundles: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)         # this run's fusion models, by name
    photo_reducers: dict = field(default_factory=dict)  # early fusion's fitted candidates, by label
    _features: dict = field(default_factory=dict)
    extraction: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)   # see deliverable2.analysis.analyse
    metrics_path: Path | None = None

    @property
    def image_size(self) -> int:
        return default_image_size(self.exp.cfg)

    def raw_features(self, image_size: int | None = None, backbone: str | None = None) -> dict:
        """{part: (n, 1280) float32} cached ImageNet backbone features (default: the run's
        backbone at the budget's photo side)."""
        key = (backbone or self.backbone, image_size or self.image_size)
        if key not in self._features:
            self._features[key], stats = backbone_features(self.exp.data, self.exp.cfg, *key)
            self.extraction[f"{key[0]}@{key[1]}"] = stats
        return self._features[key]

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
    branch = refs.bundles[refs.best_transfer]
    return late_fusion.train_late_fusion_from_branches(
        run.exp.data, run.exp.cfg, refs.bundles["mlp"], branch, refs.best_transfer,
        lambda size: run.raw_features(size, branch.backbone), log=log)


def member_predictors(run: FusionRun) -> dict:
    """{model: part -> (n,) EUR, computed once per part} of every model a blend may combine: the
    tabular references and the image reference, and this run's fusion models (with their own
    predictions from the cached photo features where the trainer kept them)."""
    data, exp = run.exp.data, run.exp

    def cached(name, bundle, own=None):
        @functools.cache
        def predict_part(part):
            if part in exp.predictions.get(name, {}):
                return exp.predictions[name][part]
            pred = own(part) if own is not None else None
            return pred if pred is not None else bundle.predict_eur(data.parts[part])
        return predict_part

    members = {name: cached(name, run.refs.bundles[name])
               for name in (*TABULAR_REFERENCES, run.refs.best_image)}
    for name, trained in run.trained.items():
        members[name] = cached(name, trained.bundle, trained.predict)
    return members


def train_blend(run: FusionRun, log=print) -> Trained:
    """``blend``: every (tabular reference, photo-seeing model) pair, the weight of the second
    from 0 to 1, chosen together on validation (:func:`shared.models.blend.choose_blend`)."""
    start = time.perf_counter()
    members = member_predictors(run)
    photo_side = [run.refs.best_image, *run.trained]
    pairs = [(tab, photo) for tab in TABULAR_REFERENCES for photo in photo_side]
    val_log = {name: np.log(members[name]("val")) for name in members}
    y_val = run.exp.data.y_eur("val")
    choice = blend.choose_blend(val_log, y_val, pairs)
    selection = blend.cross_validated_mae(val_log, y_val, pairs, seed=run.exp.cfg.seed)
    first, second = choice["members"]
    log(f"  blend: {first} and {second} with weight {choice['weight']:.2f} on {second}, chosen "
        f"on validation (MAE {choice['val_mae']:.2f} EUR, {len(pairs)} pairs; "
        f"{selection['folds']}-fold cross-validated {selection['mae']:.2f} EUR)")
    bundle = ModelBundle("blend", (), None, deliverable="deliverable2",
                         params={"members": choice["members"], "weight": choice["weight"],
                                 "selection_val_mae": round(selection["mae"], 4),
                                 "selection_folds": selection["folds"],
                                 "selection_fold_choices": selection["choices"],
                                 "weights_tried": list(blend.WEIGHTS), "trials": choice["trials"],
                                 "saved": "no folder of its own: the members' folders and this "
                                          "weight rebuild it"})
    return Trained(bundle, time.perf_counter() - start,
                   predict=blend.blend_predictor(members, choice),
                   reseed=blend_reseed(run, choice, members))


def blend_reseed(run: FusionRun, choice: dict, members: dict):
    """``seed -> predict`` of the blend with its members retrained with that seed (a member
    without a cheap retrain keeps the reported run's predictions); None when neither has one."""
    exp, (first, second) = run.exp, choice["members"]
    reseeds = {first: reseed_of(first, exp.data, exp.cfg, run.refs.bundles[first].params)}
    reseeds[second] = (run.trained[second].reseed if second in run.trained
                       else reseed_of(second, exp.data, exp.cfg, run.refs.bundles[second].params))
    if all(r is None for r in reseeds.values()):
        return None

    def reseed(seed):
        predictors = {name: (r(seed) if r is not None else members[name])
                      for name, r in reseeds.items()}
        return blend.blend_predictor(predictors, choice)

    return reseed


STEPS = {"early_fusion": train_early, "hgb_with_embeddings": train_hgb_embeddings,
         "late_fusion": train_late, "late_fusion_from_branches": train_from_branches,
         "blend": train_blend}


def train_all(exp: Experiment, log=print) -> FusionRun:
    """References, then every fusion model, each evaluated, calibrated and saved by ``exp``."""
    run = FusionRun(exp)
    start = time.perf_counter()
    run.refs = load_or_train(exp.data, exp.cfg, exp, log=log)
    for name, how in run.refs.origin.items():
        log(f"  {name}: {how}")
    log(f"references ready ({time.perf_counter() - start:.0f} s)")
    trained = run.trained
    for name in MODEL_NAMES:
        trained[name] = STEPS[name](run, log=log)
        exp.evaluate(trained[name], save=name != "blend", log=log)  # a blend is its members
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
    exp.record_seeds(reference, reseed_of(reference, exp.data, exp.cfg,
                                          run.refs.bundles[reference].params), log=log)


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
