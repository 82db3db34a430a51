"""The ablation: tabular only vs photo only vs fusion, on the same test rows, and why.

* :func:`paired_comparisons` - every fusion model against the best tabular-only model, paired
  bootstrap of the MAE difference over the same resampled test listings
  (:func:`shared.evaluation.metrics.paired_bootstrap_mae`): the difference (EUR, negative = fusion
  better), its 95% interval and the share of resamples in which fusion is better.
* :func:`ablation_table` - one table: role, test MAE and R² (log) with 95% intervals, validation
  MAE, and the paired comparison.
* :func:`goal_check` - the deliverable's goal (:data:`GOALS`: a lower test MAE than the best
  tabular-only model by a margin, better in most resamples), for the fusion model validation
  would pick.
* :func:`photo_redundancy` - how much of what the photo model predicts is already predictable
  from the tabular features, and whether it correlates with what the tabular model gets wrong.
* :func:`photo_permutation` - how much worse a fusion model gets when each listing is given
  another listing's photo: the share of its accuracy that comes from the photo.
* plots: paired differences; mean absolute error by group (room type, price band).

Nothing here trains or selects a model: the models are fixed before their test predictions are
read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from deliverable2.references import tabular_references
from shared.evaluation import metrics as evaluation
from shared.evaluation.metrics import lowest, paired_bootstrap_mae
from shared.evaluation.verdicts import AT_MOST, NOT_REACHED, REACHED, UNDECIDED, combine, decide
from shared.features import tabular as feats
from shared.models import registry
from shared.models.families.blend import blend_log
from shared.models.end_to_end import encode_photos, split_end_to_end
from shared.models.families.late_fusion import uses_pretrained_backbone

#: The tabular-only references, the tabular-only models of deliverable 2 (the tabular blend, a
#: control) and the fusion models, in training order (from the registry).
TABULAR = tabular_references()
TABULAR_ONLY = (*TABULAR, *registry.names(deliverable="deliverable2", role="tabular"))
FUSION = registry.names(deliverable="deliverable2", role="fusion")
NEURAL_FUSION_MODELS = registry.names(deliverable="deliverable2", role="fusion", neural=True)
#: The deliverable's goal, its one definition (issue 11, on the 10,351-listing set): the fusion
#: model validation picks has a test MAE at least 3% below the best tabular-only model's, and is
#: better in at least 95% of the paired bootstrap resamples, and better in every seed of the seed
#: study but at most one (4 of 5): the paired bootstrap resamples the test rows, the seeds the
#: training randomness.
GOALS = {"max_relative_diff": -0.03, "min_p_better": 0.95, "max_seeds_lost": 1}


def roles(image_reference: str) -> dict[str, str]:
    """Model name -> its role in the ablation."""
    return {**{name: "tabular only" for name in TABULAR}, image_reference: "photo only",
            **{name: "fusion" for name in FUSION}}


def best_tabular(exp, names=TABULAR) -> str:
    """The tabular-only model with the lowest *test* MAE: the strictest yardstick for fusion
    (choosing it on test can only make the comparison harder for the fusion models)."""
    return lowest((n for n in names if n in exp.results), lambda n: exp.results[n]["test"]["mae"])


def selection_mae(record: dict) -> float:
    """The validation MAE (EUR) a fusion model is selected by: its validation MAE, or, for a model
    that chose among many candidates on the validation part itself (the blend), the
    cross-validated MAE of that choice (``params["selection_val_mae"]``), which is not flattered
    by it (:func:`shared.models.families.blend.cross_validated_mae`)."""
    return float(record.get("params", {}).get("selection_val_mae", record["val"]["mae"]))


def chosen_tabular(exp, names=TABULAR_ONLY) -> str:
    """The tabular-only model validation picks (lowest :func:`selection_mae`), the tabular blend
    included: what the photo's gain is measured against."""
    return lowest((n for n in names if n in exp.results), lambda n: selection_mae(exp.results[n]))


def chosen_fusion(exp, names=FUSION) -> str:
    """The fusion model validation picks (lowest :func:`selection_mae`): the one the goal is
    judged on."""
    return lowest((n for n in names if n in exp.results), lambda n: selection_mae(exp.results[n]))


def paired_comparisons(exp, reference: str, names=FUSION, part: str = "test") -> dict[str, dict]:
    """{fusion name: paired_bootstrap_mae(y, pred_fusion, pred_reference)} on ``part``."""
    y = exp.data.y_eur(part)
    ref = exp.predictions[reference][part]
    return {n: paired_bootstrap_mae(y, exp.predictions[n][part], ref, seed=exp.cfg.seed)
            for n in names if n in exp.predictions}


def ablation_table(exp, model_roles: dict[str, str], comparisons: dict[str, dict],
                   reference: str) -> pd.DataFrame:
    """One row per model: role, test MAE / R² log with 95% intervals, validation MAE, and for
    fusion models the paired difference to ``reference``."""
    rows = []
    for name, role in model_roles.items():
        if name not in exp.results:
            continue
        test, val = exp.results[name]["test"], exp.results[name]["val"]
        row = {"model": name, "role": role,
               "test MAE (EUR)": f"{test['mae']:.2f} [{test['mae_ci95'][0]:.2f}, {test['mae_ci95'][1]:.2f}]",
               "test R² log": f"{test['r2_log']:.3f} [{test['r2_log_ci95'][0]:.3f}, "
                              f"{test['r2_log_ci95'][1]:.3f}]",
               "test MAPE %": round(test["mape"], 1), "val MAE (EUR)": round(val["mae"], 2),
               "selected by (val MAE)": round(selection_mae(exp.results[name]), 2)}
        c = comparisons.get(name)
        if c is not None:
            row.update({f"MAE - {reference} (EUR)": f"{c['mae_diff']:+.2f} [{c['mae_diff_ci95'][0]:+.2f}, "
                                                   f"{c['mae_diff_ci95'][1]:+.2f}]",
                        "relative": f"{c['relative_diff'] * 100:+.1f}%",
                        "P(fusion better)": round(c["p_a_better"], 3)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model").fillna("")


def paired(exp, name: str, reference: str, part: str = "test") -> dict:
    """:func:`shared.evaluation.metrics.paired_bootstrap_mae` of ``name`` against ``reference``
    on ``part``, plus the difference relative to the reference's MAE with its 95% interval
    (``relative_ci95``) and both names."""
    y = exp.data.y_eur(part)
    c = paired_bootstrap_mae(y, exp.prices(name, part), exp.prices(reference, part),
                             seed=exp.cfg.seed)
    ref = evaluation.mae(y, exp.prices(reference, part))
    return {"model": name, "reference": reference, **c,
            "relative_ci95": [c["mae_diff_ci95"][0] / ref, c["mae_diff_ci95"][1] / ref]}


def relative_seed_range(model: dict, reference: dict) -> list[float] | None:
    """[low, high] of ``model``'s test MAE relative to ``reference``'s, seed by seed (the two
    records' ``seeds``); None without both seed studies."""
    pairs = {s["seed"]: s["test_mae"] for s in reference.get("seeds", [])}
    values = [s["test_mae"] / pairs[s["seed"]] - 1 for s in model.get("seeds", [])
              if s["seed"] in pairs]
    return [min(values), max(values)] if values else None


def goal_check(exp, comparisons: dict[str, dict], reference: str) -> dict:
    """The goal (:data:`GOALS`), judged on the fusion model validation picks against
    ``reference`` (listed for every fusion model): reached / not reached / undecided from its
    relative test MAE difference, that difference's paired 95% interval and, with seed studies,
    its range over the seeds (:func:`shared.evaluation.verdicts.decide`)."""
    chosen = chosen_fusion(exp, tuple(comparisons))
    met = {n: meets_goal(c) for n, c in comparisons.items()}
    c = comparisons[chosen]
    ref_mae = exp.results[reference]["test"]["mae"]
    interval = [c["mae_diff_ci95"][0] / ref_mae, c["mae_diff_ci95"][1] / ref_mae]
    seed_range = relative_seed_range(exp.results.get(chosen, {}), exp.results.get(reference, {}))
    margin = decide(c["relative_diff"], interval, GOALS["max_relative_diff"], AT_MOST,
                    seed_range=seed_range, label=f"{chosen}'s test MAE relative to {reference}'s",
                    fmt="+.1%")
    seeds = seeds_won(exp.results.get(chosen, {}), exp.results.get(reference, {}))
    won = ({"verdict": UNDECIDED, "label": "no seed study"} if seeds["won"] is None else
           {"verdict": REACHED if seeds["enough"] else NOT_REACHED,
            "label": f"better in {seeds['won']} of {seeds['of']} seeds of the seed study"})
    verdict = combine([margin, won], label="the fusion goal")
    verdict["reason"] = f"{margin['reason']}; {won['label']}"
    return {"reference": reference, "chosen_on_validation": chosen,
            "relative_diff": c["relative_diff"], "relative_ci95": interval,
            "p_fusion_better": c["p_a_better"], "seeds": seeds, **verdict,
            "reached": verdict["verdict"] == REACHED,
            "reached_by": [n for n, ok in met.items() if ok]}


def photo_verdict(exp, photo: str, tabular: str) -> dict:
    """Does the photo help? ``photo`` (the photo-seeing model validation picks) against
    ``tabular`` (the tabular-only model or blend validation picks), paired on the test rows:
    "yes" when significantly better (the paired 95% interval of the MAE difference below zero)
    by at least the goal's margin (:data:`GOALS`), "slightly" when significantly better by
    less, "no" otherwise (not significant, or worse)."""
    c = paired(exp, photo, tabular)
    significant = c["mae_diff_ci95"][1] < 0
    word = ("yes" if significant and c["relative_diff"] <= GOALS["max_relative_diff"]
            else "slightly" if significant else "no")
    return {**c, "word": word, "significant": bool(significant),
            "margin": GOALS["max_relative_diff"],
            "selection_mae": {n: selection_mae(exp.results[n]) for n in (photo, tabular)},
            "seed_range": relative_seed_range(exp.results[photo], exp.results[tabular])}


def controls(exp) -> dict:
    """What isolates the photo: every fusion model against the tabular model it is built on
    (its registry ``base``; a blend's is its tabular member), and ``blend`` against
    ``tabular_blend`` (plain ensembling without the photo), paired on the test rows."""
    bases = {s.name: s.base for s in registry.specs(deliverable="deliverable2", role="fusion")
             if s.base}
    for name in FUSION:
        if name in exp.results and name not in bases and "members" in exp.results[name]["params"]:
            bases[name] = exp.results[name]["params"]["members"][0]
    out = {"vs_base": {n: paired(exp, n, base) for n, base in bases.items()
                       if n in exp.results and base in exp.bundles}}
    if "blend" in exp.results and "tabular_blend" in exp.results:
        out["blend_vs_tabular_blend"] = paired(exp, "blend", "tabular_blend")
    return out


def near_ties(exp, chosen: str, names) -> list[dict]:
    """The runners-up of a pick on validation that validation cannot tell from it: for each
    other candidate, its selection MAE, the gap (EUR) and whether the paired 95% interval of
    their validation MAE difference contains zero (``tie``)."""
    rows = []
    for name in names:
        if name == chosen or name not in exp.results:
            continue
        c = paired(exp, name, chosen, part="val")
        rows.append({"model": name, "selection_mae": selection_mae(exp.results[name]),
                     "gap_eur": selection_mae(exp.results[name])
                     - selection_mae(exp.results[chosen]),
                     "tie": bool(c["mae_diff_ci95"][0] <= 0 <= c["mae_diff_ci95"][1])})
    return sorted(rows, key=lambda r: r["gap_eur"])


def blend_pair_ties(exp, name: str = "blend", most: int = 3) -> list[dict]:
    """The ``most`` runner-up pairs of a blend's choice (its ``params["trials"]``: each pair at
    its best weight) with their validation MAE, the gap to the chosen pair (EUR), whether the
    paired 95% interval of their validation difference contains zero (``tie``) and, reported
    only as such, the test MAE the runner-up would have given."""
    params = exp.results[name]["params"]
    chosen = blend_prices(exp, params["members"], params["weight"])
    y = {part: exp.data.y_eur(part) for part in ("val", "test")}
    rows = []
    for trial in sorted(params["trials"], key=lambda t: t["val_mae"]):
        if trial["members"] == params["members"]:
            continue
        other = blend_prices(exp, trial["members"], trial["weight"])
        c = paired_bootstrap_mae(y["val"], other["val"], chosen["val"], seed=exp.cfg.seed)
        rows.append({"members": trial["members"], "weight": trial["weight"],
                     "val_mae": trial["val_mae"], "gap_eur": c["mae_diff"],
                     "tie": bool(c["mae_diff_ci95"][0] <= 0 <= c["mae_diff_ci95"][1]),
                     "test_mae": evaluation.mae(y["test"], other["test"])})
    return rows[:most]


def blend_prices(exp, members, weight: float) -> dict:
    """{"val", "test": (n,) EUR} of the blend of two of the run's models at ``weight``."""
    first, second = members
    return {part: feats.price_from_log(blend_log(np.log(exp.prices(first, part)),
                                                 np.log(exp.prices(second, part)), weight))
            for part in ("val", "test")}


def seeds_won(fusion: dict, reference: dict) -> dict:
    """In how many seeds of the seed study the fusion model's test MAE is below the reference's
    (seed by seed); ``enough`` when it wins in all but at most one (:data:`GOALS`). Without a
    seed study for both, ``enough`` is False and ``why`` says so."""
    a, b = fusion.get("seeds"), reference.get("seeds")
    if not a or not b:
        return {"won": None, "of": None, "enough": False,
                "why": fusion.get("seeds_skipped", "no seed study")}
    pairs = {r["seed"]: r["test_mae"] for r in b}
    won = sum(r["test_mae"] < pairs[r["seed"]] for r in a if r["seed"] in pairs)
    return {"won": int(won), "of": len(a), "enough": won >= len(a) - GOALS["max_seeds_lost"]}


def meets_goal(comparison: dict) -> bool:
    """Whether one paired comparison (:func:`shared.evaluation.metrics.paired_bootstrap_mae`) meets
    :data:`GOALS`: significantly better, and by the goal's margin."""
    return bool(comparison["relative_diff"] <= GOALS["max_relative_diff"]
                and significantly_better(comparison["relative_diff"], comparison["p_a_better"]))


def significantly_better(relative_diff: float, p_better: float) -> bool:
    """The confidence half of :data:`GOALS`: a lower MAE (``relative_diff`` < 0) that the paired
    bootstrap confirms (``p_better`` >= ``GOALS["min_p_better"]``), whatever its size."""
    return bool(relative_diff < 0 and p_better >= GOALS["min_p_better"])


def photo_redundancy(exp, photo_signal: dict[str, np.ndarray], tabular_name: str,
                     parts=("val", "test")) -> dict[str, dict]:
    """Is the photo's price signal new information, given the tabular features?

    Args:
        photo_signal: {"train" and each of ``parts``: (n,) or (n, 1)} a one-number summary of
            what the photo says about the price, *out of sample* on every part (e.g. the photo
            price score with out-of-fold values on the training rows: in-sample values would be
            overfitted).
        tabular_name: the tabular model whose errors are examined.

    Returns, per part of ``parts`` (one ridge, fitted once on the training rows, for all):
        ``r2_photo_from_tabular``: R² on the part of a ridge that predicts the photo signal from
            the tabular features: the share of what the photo says that the tabular features
            already say;
        ``corr_photo_target``: correlation of the photo signal with log price on the part;
        ``corr_photo_residual``: correlation of the photo signal with the tabular model's
            residual (log price minus its prediction): what fusion could still gain;
        ``corr_unique_residual``: the same for the part of the photo signal the tabular
            features do not predict.
    """
    train = np.asarray(photo_signal["train"], dtype=np.float64).reshape(-1)
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 11)).fit(exp.data.tabular["train"], train)
    out = {}
    for part in parts:
        photo = np.asarray(photo_signal[part], dtype=np.float64).reshape(-1)
        unique = photo - ridge.predict(exp.data.tabular[part])
        y_log = feats.log_target(exp.data.y_eur(part))
        residual = y_log - np.log(exp.predictions[tabular_name][part])
        ss_res = float(np.sum(unique ** 2))
        ss_tot = float(np.sum((photo - photo.mean()) ** 2))
        out[part] = {"r2_photo_from_tabular": 1.0 - ss_res / ss_tot,
                     "corr_photo_target": float(np.corrcoef(photo, y_log)[0, 1]),
                     "corr_photo_residual": float(np.corrcoef(photo, residual)[0, 1]),
                     "corr_unique_residual": float(np.corrcoef(unique, residual)[0, 1])}
    return out


def _photo_inputs(bundle, exp, part: str, raw_part: np.ndarray):
    """(predict(photo) function, photo inputs of ``part``) for a fusion bundle: the photo
    columns for early fusion (``tabular`` + ``image_features``), the photo vectors of the model's
    own backbone for two-branch networks (``tabular`` + ``image``): the cached features when it
    is the unchanged ImageNet backbone, else its (fine-tuned) encoder applied to the photos."""
    tabular = exp.data.tabular[part]
    if "image_features" in bundle.inputs:
        photo = np.asarray(bundle.image_reducer.transform(raw_part), dtype=np.float32)

        def predict(p):
            x = np.hstack([tabular, p])
            return (bundle.estimator.predict(x, verbose=0) if bundle.is_keras
                    else bundle.estimator.predict(x))
        return predict, photo
    encoder, network = split_end_to_end(bundle)
    photo = (np.asarray(raw_part, dtype=np.float32) if uses_pretrained_backbone(bundle)
             else encode_photos(encoder, exp.data.paths(part), bundle.image_size))

    def predict(p):
        return network.predict({"tabular": tabular, "image": p}, verbose=0)
    return predict, photo


def photo_permutation(exp, bundle, raw_part: np.ndarray, *, seed: int, part: str = "test",
                      n_repeats: int = 20) -> dict:
    """MAE (EUR) of ``bundle`` on ``part`` as is, and with the photos shuffled between listings.

    Args:
        raw_part: (n, D) cached ImageNet backbone features of ``part`` at the bundle's size.

    Returns mae, mae_shuffled (mean over ``n_repeats`` seeded permutations), increase (EUR) and
    its 2.5-97.5% range over the permutations. An increase near zero: the model barely uses
    the photo.
    """
    predict, photo = _photo_inputs(bundle, exp, part, raw_part)
    y = exp.data.y_eur(part)

    def mae(p):
        return evaluation.mae(y, feats.price_from_log(predict(p)))

    base = mae(photo)
    rng = np.random.default_rng(seed)
    shuffled = np.array([mae(photo[rng.permutation(len(photo))]) for _ in range(n_repeats)])
    return {"mae": base, "mae_shuffled": float(shuffled.mean()),
            "increase": float(shuffled.mean() - base),
            "increase_range95": [float(np.percentile(shuffled - base, 2.5)),
                                 float(np.percentile(shuffled - base, 97.5))]}


# --------------------------------------------------------------------------- plots


