"""Deliverable 2's analysis: everything the report shows that is not a trained model.

:func:`analyse` takes a trained :class:`deliverable2.train.FusionRun` and computes, without
training or choosing anything on test:

* the PCA curve of the training rows' backbone features (how much variance k components keep);
* the ablation: roles, paired comparisons with the best tabular-only model, errors by group;
* the goal (:data:`deliverable2.ablation.GOALS`), judged on the fusion model validation picks;
* why: the photo price score's redundancy with the tabular features and the photo permutation;
* the conclusions, as Markdown lines whose every number comes from the results.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from deliverable2 import ablation, conclusions
from deliverable2.references import photo_references
from shared.evaluation import metrics as evaluation
from shared.evaluation.coverage import coverage_goal
from shared.reporting import tables
from shared.reporting.sentences import interval_analysis
from shared.features.backbones import DEFAULT_BACKBONE
from shared.features.photo_reducers import fit_image_reducer, reduced_features
from shared.models import registry
from shared.models.families.from_branches import TRANSFER_MODELS
from shared.models.families.transfer import default_image_size

NEURAL_FUSION = registry.names(deliverable="deliverable2", role="fusion", neural=True)
PERMUTATIONS = 20   # photo shuffles per fusion model



def pca_curve(raw_train: np.ndarray, seed: int) -> np.ndarray:
    """Cumulative explained variance of the standardised training-row features, (n_components,)."""
    pca = PCA(random_state=seed).fit(StandardScaler().fit_transform(raw_train))
    return np.cumsum(pca.explained_variance_ratio_)


def fusion_photos(exp) -> dict:
    """{part: (n, D)} the cached ImageNet features at the fusion models' photo side."""
    return exp.features(DEFAULT_BACKBONE, default_image_size(exp.cfg))


def photo_score(exp) -> dict[str, np.ndarray]:
    """The photo price score per part (out-of-fold on the training rows): early fusion's fitted
    candidate, or one fitted on the training rows when early fusion did not try it."""
    raw = fusion_photos(exp)
    score = exp.shared.get("photo_reducers", {}).get("score") or fit_image_reducer(
        raw, "score", exp.cfg.seed, exp.data.y_log("train"))
    return reduced_features(raw, score)


def permutations(exp) -> dict[str, dict]:
    """:func:`deliverable2.ablation.photo_permutation` of every fusion model on test."""
    out = {}
    for name in ablation.FUSION:
        bundle = exp.bundles[name]
        if not bundle.inputs:  # the blend: its photo member's shuffle is measured on its own
            continue
        out[name] = ablation.photo_permutation(
            exp, bundle, exp.features(bundle.backbone, bundle.image_size)["test"],
            n_repeats=PERMUTATIONS, seed=exp.cfg.seed_for("run"))
    return out


def group_tables(exp, names) -> dict:
    """Mean absolute error by room type and by *true* price band (test), one DataFrame each."""
    frame, y = exp.data.parts["test"].frame, exp.data.y_eur("test")
    predictions = {n: exp.predictions[n]["test"] for n in names}
    return {"by room type (test)": tables.group_mae(predictions, y, frame["Room Type"].to_numpy()),
            "by true price band (test)": tables.group_mae(predictions, y,
                                                          evaluation.price_band(y), ordered_by=y)}


def analyse(run) -> dict:
    """Everything the report shows beyond the models themselves (see the module docstring)."""
    exp, best_image = run.exp, run.best_image
    reference = ablation.best_tabular(exp)
    roles = ablation.roles(best_image)
    comparisons = ablation.paired_comparisons(exp, reference)
    photo, tabular = ablation.chosen_fusion(exp), ablation.chosen_tabular(exp)
    a = {"reference": reference, "best_image": best_image, "roles": roles,
         "comparisons": comparisons,
         "pca_curve": pca_curve(fusion_photos(exp)["train"], exp.cfg.seed),
         "group_errors": group_tables(exp, [n for n in roles if n in exp.predictions]),
         "goal": ablation.goal_check(exp, comparisons, reference),
         "verdict": ablation.photo_verdict(exp, photo, tabular),
         "controls": ablation.controls(exp),
         "fusion_ties": ablation.near_ties(exp, photo, ablation.FUSION),
         "tabular_ties": ablation.near_ties(exp, tabular, ablation.TABULAR_ONLY),
         "photo_redundancy": ablation.photo_redundancy(exp, photo_score(exp), reference),
         "permutation": permutations(exp),
         "vs_hgb": ablation.paired_comparisons(exp, "hgb", names=NEURAL_FUSION)}
    if "members" in exp.results[photo]["params"]:
        a["blend_ties"] = ablation.blend_pair_ties(exp, photo)
    fusion = a["goal"]["chosen_on_validation"]
    kinds = {**{n: "tabular" for n in ablation.TABULAR}, best_image: "photo",
             **{n: "fusion" for n in ablation.FUSION}}
    a["intervals"] = interval_analysis(exp.results, kinds, {"tabular": reference,
                                                            "photo": best_image,
                                                            "fusion": fusion})
    a["interval_goal"] = coverage_goal(exp.results, dict.fromkeys(("hgb", fusion)))
    a["references"] = {"origin": exp.origin,
                       "image_val_mae": {n: exp.val_mae(n) for n in photo_references()
                                         if exp.has(n)},
                       "best_image": best_image,
                       "best_transfer": exp.best_on_validation(TRANSFER_MODELS)}
    a["conclusions"] = conclusions.conclusions(exp, a)
    a["answer"] = conclusions.answer(exp, a)
    return a


def metrics_extra(run) -> dict:
    """What ``metrics.json`` records under ``run`` besides the device and timings; also adds each
    fusion model's paired comparison and photo permutation to its record in ``exp.results``."""
    a = run.analysis
    for name, comparison in a["comparisons"].items():
        run.exp.results[name]["test_vs_best_tabular"] = {"reference": a["reference"], **comparison}
        if name in a["permutation"]:
            run.exp.results[name]["test_photo_permutation"] = a["permutation"][name]
    return {"references": a["references"],
            "roles": a["roles"], "goal": a["goal"], "verdict": a["verdict"],
            "controls": a["controls"], "fusion_ties": a["fusion_ties"],
            "tabular_ties": a["tabular_ties"], "blend_ties": a.get("blend_ties"),
            "photo_redundancy": a["photo_redundancy"],
            "intervals": a["intervals"], "interval_goal": a["interval_goal"],
            "conclusions": a["conclusions"], "answer": a["answer"]}
