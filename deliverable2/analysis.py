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

from deliverable2 import ablation
from deliverable2.references import photo_references
from shared.evaluation import metrics as evaluation
from shared.reporting.sentences import interval_analysis, results_intervals
from shared.features.backbones import DEFAULT_BACKBONE
from shared.features.photo_reducers import fit_image_reducer, reduced_features
from shared.models import registry
from shared.models.families.late_fusion import TRANSFER_MODELS
from shared.models.families.transfer import default_image_size

#: |correlation| of the photo score's unique part with the tabular residual above which the
#: photo is said to carry price information the tabular features lack.
UNIQUE_SIGNAL = 0.15
NEURAL_FUSION = registry.names(deliverable="deliverable2", role="fusion", neural=True)
PERMUTATIONS = 20   # photo shuffles per fusion model

#: The prediction-interval goal (test set): the nominal 80% interval of the best tabular model
#: and of the fusion model validation picks each cover a share of the true prices within
#: ``coverage_range``, and the fusion model's median width is the narrower.
INTERVAL_GOAL = {"coverage": 0.8, "coverage_range": (0.78, 0.82)}


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
    """Mean absolute error by room type and by price band (test), one DataFrame each."""
    frame = exp.data.parts["test"].frame
    y = exp.data.y_eur("test")
    return {"by room type (test)": ablation.group_errors(exp, names, frame["Room Type"].to_numpy()),
            "by price band (test)": ablation.group_errors(exp, names, evaluation.price_band(y),
                                                          ordered_by=y)}


def conclusions(exp, best_image: str, a: dict, branches_params: dict) -> list[str]:
    """The report's conclusions (Markdown bullet lines) from the analysis ``a``."""
    r, comparisons, goal, reference = exp.results, a["comparisons"], a["goal"], a["reference"]
    redundancy, vs_mlp = a["photo_redundancy"], a["vs_mlp"]
    chosen, p = goal["chosen_on_validation"], branches_params
    c = comparisons[chosen]
    best_fusion_test = min(comparisons, key=lambda n: r[n]["test"]["mae"])
    rel, p_better = ablation.GOALS["max_relative_diff"], ablation.GOALS["min_p_better"]
    unique_test, unique_val = (redundancy["test"]["corr_unique_residual"],
                               redundancy["val"]["corr_unique_residual"])
    lines = [
        f"- Tabular only: `{reference}` is the better tabular model on test, MAE "
        f"{r[reference]['test']['mae']:.2f} EUR (R² log {r[reference]['test']['r2_log']:.3f}).",
        f"- Photo only: `{best_image}`, MAE {r[best_image]['test']['mae']:.2f} EUR, R² log "
        f"{r[best_image]['test']['r2_log']:.3f}: the photo alone is a weak predictor.",
        f"- Fusion: validation picks `{chosen}`; its test MAE is {r[chosen]['test']['mae']:.2f} EUR, "
        f"{c['relative_diff'] * 100:+.1f}% vs `{reference}` (paired difference {c['mae_diff']:+.2f} EUR, "
        f"95% interval [{c['mae_diff_ci95'][0]:+.2f}, {c['mae_diff_ci95'][1]:+.2f}], better in "
        f"{c['p_a_better'] * 100:.0f}% of the resamples).",
        f"- Of the {len(comparisons)} fusion models, `{best_fusion_test}` has the lowest test MAE "
        f"({r[best_fusion_test]['test']['mae']:.2f} EUR, "
        f"{comparisons[best_fusion_test]['relative_diff'] * 100:+.1f}%, "
        f"P(better) {comparisons[best_fusion_test]['p_a_better']:.2f}); reading this off the test "
        "table is a selection on test and is reported only as such.",
        "- The neural fusion models against the neural tabular reference `mlp` (same family), paired "
        "on the test rows: "
        + ", ".join(f"`{n}` {v['relative_diff'] * 100:+.1f}% (P(better) {v['p_a_better']:.2f})"
                    for n, v in vs_mlp.items())
        + (": the photo helps the neural networks more than it helps gradient boosting, but not "
           "enough to overtake gradient boosting on the tabular features alone."
           if min(v["relative_diff"] for v in vs_mlp.values()) < rel and not goal["reached"] else "."),
        f"- Goal (MAE at least {-rel:.0%} lower and P(better) >= {p_better} for the model validation "
        f"picks): **{'reached' if goal['reached'] else 'not reached'}**.",
        f"- Why: on the test rows, a ridge on the tabular features reproduces "
        f"{redundancy['test']['r2_photo_from_tabular']:.0%} of the photo price score; the score "
        f"correlates {redundancy['test']['corr_photo_target']:+.2f} with log price but "
        f"{redundancy['test']['corr_photo_residual']:+.2f} with the residual of `{reference}` "
        f"({unique_test:+.2f} for its part the tabular features do not reproduce; validation: "
        f"{unique_val:+.2f}). "
        + photo_signal_sentence(goal, unique_test, len(exp.data.parts["train"].frame)),
        "- Shuffling the photos between test listings changes the fusion models' MAE by "
        + ", ".join(f"{v['increase']:+.2f} EUR (`{n}`)" for n, v in a["permutation"].items())
        + ": how much each model relies on the photo being the right one (an upper bound on what "
        "the photo is worth to it: a shuffled photo is also a listing-photo pair no model saw in "
        "training).",
        f"- Late fusion from deliverable-1 branches: phase A {'kept' if p['head_kept'] else 'reverted'}, "
        f"phase B {'kept' if p['joint_kept'] else 'reverted'} on validation; it starts as the `mlp` "
        "and can only depart from it where validation agrees, which is what makes it trainable at all.",
    ]
    if not goal["reached_by"]:
        lines.append(published_comparison_sentence(goal, len(exp.data.dataset.frame)))
    return lines


def photo_signal_sentence(goal: dict, unique_corr: float, n_train: int) -> str:
    """The end of the conclusions' "Why" line: what the photo adds, given the goal check
    (:func:`deliverable2.ablation.goal_check`), the correlation of the photo score's unique part
    with the tabular residual (test) and the number of training listings."""
    if abs(unique_corr) < UNIQUE_SIGNAL:
        return "What the photo knows about the price, the listing's features mostly know already."
    carries = "The photo does carry some price information the tabular features lack"
    if ablation.significantly_better(goal["relative_diff"], goal["p_fusion_better"]):
        return (f"{carries}, and the fusion model validation picks turns part of it into a real gain "
                f"({goal['relative_diff'] * 100:+.1f}%, P(better) {goal['p_fusion_better']:.2f}), "
                "but a small one: most of what the photo shows, the tabular features already say.")
    return (f"{carries}, but it is weak and noisy, and {n_train} training listings are few for a "
            "fusion model to learn to use it without losing more to variance than it gains.")


def published_comparison_sentence(goal: dict, n_listings: int) -> str:
    """The closing conclusion when the goal is missed: how the measured answer compares with
    published work, worded by whether the chosen fusion model is significantly better at all."""
    if ablation.significantly_better(goal["relative_diff"], goal["p_fusion_better"]):
        verdict = (f"on these {n_listings} listings the fusion model validation picks is better, "
                   f"significantly (P(better) {goal['p_fusion_better']:.2f}), but by "
                   f"{-goal['relative_diff']:.1%}, less than the goal's "
                   f"{-ablation.GOALS['max_relative_diff']:.0%}")
    else:
        verdict = (f"on these {n_listings} listings the photo does not make the chosen fusion "
                   "model significantly better")
    return (f"- Against its goal, {verdict}. The measured answer is the deliverable's result, "
            "not tuned away on the test set.")


def interval_goal(exp, reference: str, fusion: str) -> dict:
    """:data:`INTERVAL_GOAL` checked for ``reference`` (best tabular) and ``fusion`` (chosen on
    validation): {"tabular", "fusion": {"model", "coverage", "coverage_ci95", "median_width_eur"},
    "coverage_ok", "narrower", "reached"}."""
    low, high = INTERVAL_GOAL["coverage_range"]
    metrics = results_intervals(exp.results, (reference, fusion), INTERVAL_GOAL["coverage"])
    sides = {role: {"model": name, "coverage": metrics[name]["coverage"],
                    "coverage_ci95": metrics[name].get("coverage_ci95"),
                    "median_width_eur": metrics[name]["median_width_eur"]}
             for role, name in (("tabular", reference), ("fusion", fusion))}
    coverage_ok = all(low <= side["coverage"] <= high for side in sides.values())
    narrower = sides["fusion"]["median_width_eur"] < sides["tabular"]["median_width_eur"]
    return {**sides, "coverage_ok": bool(coverage_ok), "narrower": bool(narrower),
            "reached": bool(coverage_ok and narrower)}


def answer(exp, best_image: str, a: dict) -> list[str]:
    """The report's five-line answer (Markdown bullets), every number from the run."""
    r, goal, reference = exp.results, a["goal"], a["reference"]
    chosen = goal["chosen_on_validation"]
    blend = r.get("blend", {}).get("params", {})
    seeds = goal["seeds"]
    lines = [
        f"- **Tabular only**: `{reference}` misses a new host's price by "
        f"{r[reference]['test']['mae']:.2f} EUR a night on average.",
        f"- **Photo only**: `{best_image}` explains {r[best_image]['test']['r2_log']:.0%} "
        "of the variance of log price: the photo alone is a weak predictor.",
        f"- **Both**: validation picks `{chosen}`, {r[chosen]['test']['mae']:.2f} EUR, "
        f"{goal['relative_diff'] * 100:+.1f}% against `{reference}` (better in "
        f"{goal['p_fusion_better']:.0%} of the paired resamples"
        + (f", {seeds['won']} of {seeds['of']} seeds" if seeds.get("won") is not None else "")
        + f"): the {-ablation.GOALS['max_relative_diff']:.0%} goal is "
        f"**{'reached' if goal['reached'] else 'not reached'}**.",
    ]
    if blend:
        first, second = blend["members"]
        lines.append(f"- **Blend**: validation weighs `{second}` {blend['weight']:.0%} against "
                     f"`{first}`; test MAE {r['blend']['test']['mae']:.2f} EUR.")
    ig = a["interval_goal"]
    lines.append(f"- **Price ranges**: the 80% ranges cover {ig['tabular']['coverage']:.0%} "
                 f"(`{ig['tabular']['model']}`) and {ig['fusion']['coverage']:.0%} "
                 f"(`{ig['fusion']['model']}`) of test prices; the fusion range is "
                 f"{'narrower' if ig['narrower'] else 'not narrower'}: interval goal "
                 f"**{'reached' if ig['reached'] else 'not reached'}**.")
    return lines


def analyse(run) -> dict:
    """Everything the report shows beyond the models themselves (see the module docstring)."""
    exp, best_image = run.exp, run.best_image
    reference = ablation.best_tabular(exp)
    roles = ablation.roles(best_image)
    comparisons = ablation.paired_comparisons(exp, reference)
    score = photo_score(exp)
    a = {"reference": reference, "roles": roles, "comparisons": comparisons,
         "pca_curve": pca_curve(fusion_photos(exp)["train"], exp.cfg.seed),
         "group_errors": group_tables(exp, [n for n in roles if n in exp.predictions]),
         "goal": ablation.goal_check(exp, comparisons, reference),
         "photo_redundancy": ablation.photo_redundancy(exp, score, reference),
         "permutation": permutations(exp),
         "vs_mlp": ablation.paired_comparisons(exp, "mlp", names=NEURAL_FUSION)}
    fusion = a["goal"]["chosen_on_validation"]
    kinds = {**{n: "tabular" for n in ablation.TABULAR}, best_image: "photo",
             **{n: "fusion" for n in ablation.FUSION}}
    a["intervals"] = interval_analysis(exp.results, kinds, {"tabular": reference,
                                                            "photo": best_image,
                                                            "fusion": fusion})
    a["interval_goal"] = interval_goal(exp, reference, fusion)
    a["references"] = {"origin": exp.origin,
                       "image_val_mae": {n: exp.val_mae(n) for n in photo_references()
                                         if exp.has(n)},
                       "best_image": best_image,
                       "best_transfer": exp.best_on_validation(TRANSFER_MODELS)}
    a["conclusions"] = conclusions(exp, best_image, a,
                                   exp.bundles["late_fusion_from_branches"].params)
    a["answer"] = answer(exp, best_image, a)
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
            "roles": a["roles"], "goal": a["goal"], "photo_redundancy": a["photo_redundancy"],
            "intervals": a["intervals"], "interval_goal": a["interval_goal"],
            "conclusions": a["conclusions"], "answer": a["answer"]}
