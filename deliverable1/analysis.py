"""Deliverable 1's goals, checked, and its conclusions, computed from the results (nothing is
trained or chosen on test here).

:data:`GOALS` is the one definition of the thresholds; :func:`analyse` turns ``exp.results``
into the goal table and the conclusion lines that ``metrics.json`` records and the report shows.
The transfer model a goal is judged on is the one *validation* picks (lowest validation MAE, as
in deliverable 2), never the better one on test.
"""

from __future__ import annotations

from shared.evaluation.coverage import coverage_goal
from shared.evaluation.metrics import lowest, paired_bootstrap_mae
from shared.evaluation.verdicts import AT_LEAST, AT_MOST, decide
from shared.reporting.sentences import change_word, interval_analysis, r2_phrase
from shared.models import registry
from shared.models.families import transfer

#: Deliverable 1's models by kind, from the registry.
TABULAR = registry.names(deliverable="deliverable1", role="tabular")
#: The tabular networks; the goal is judged on the one validation picks.
NETWORKS = registry.names(deliverable="deliverable1", role="tabular", neural=True)
PHOTO = registry.names(deliverable="deliverable1", role="photo")
TRANSFER = tuple(m.name for m in transfer.FAMILY.models)

#: The deliverable's goals on the test split of the 10,351-listing set.
GOALS = {
    "network_vs_hgb_max_relative": 0.0,  # the tabular network validation picks: test MAE <= hgb's,
                                         # and so is its mean over the seed study
    "transfer_min_r2_log": 0.40,       # the transfer model validation picks: R² on log price
    "cnn_min_r2_log": 0.20,            # cnn_scratch (no pretrained weights): R² on log price
}


def best_on_validation(results: dict, names) -> str:
    """The model among ``names`` with the lowest validation MAE (EUR; ties: the first)."""
    return lowest((n for n in names if n in results), lambda n: results[n]["val"]["mae"])


def seed_study_models(exp) -> tuple[str, ...]:
    """The models of the seed study: ``hgb`` and every tabular network."""
    return ("hgb", *NETWORKS)


def seed_mean(record: dict) -> float | None:
    """Mean test MAE (EUR) over a model's seed study (None without one)."""
    seeds = record.get("seeds")
    return sum(s["test_mae"] for s in seeds) / len(seeds) if seeds else None


def relative_seed_range(net: dict, hgb: dict) -> list[float] | None:
    """[low, high] of ``net``'s test MAE relative to ``hgb``'s, seed by seed (None without both
    seed studies)."""
    pairs = {s["seed"]: s["test_mae"] for s in hgb.get("seeds", [])}
    values = [s["test_mae"] / pairs[s["seed"]] - 1 for s in net.get("seeds", [])
              if s["seed"] in pairs]
    return [min(values), max(values)] if values else None


def network_goal(exp, net: str) -> dict:
    """The network goal: ``net``'s test MAE relative to ``hgb``'s <= 0, judged on the single
    run with its paired 95% interval and on the seed study's range (verdicts.decide)."""
    y, results = exp.data.y_eur("test"), exp.results
    paired = paired_bootstrap_mae(y, exp.predictions[net]["test"],
                                  exp.predictions["hgb"]["test"], seed=exp.cfg.seed)
    hgb_mae = results["hgb"]["test"]["mae"]
    interval = [paired["mae_diff_ci95"][0] / hgb_mae, paired["mae_diff_ci95"][1] / hgb_mae]
    means = {n: seed_mean(results[n]) for n in (net, "hgb")}
    seeds_text = (f"; over the seed study {means[net]:.2f} vs {means['hgb']:.2f} EUR"
                  if None not in means.values() else "; no seed study")
    verdict = decide(paired["relative_diff"], interval, GOALS["network_vs_hgb_max_relative"],
                     AT_MOST, seed_range=relative_seed_range(results[net], results["hgb"]),
                     label=f"{net}'s test MAE relative to hgb's", fmt="+.1%")
    return {"goal": "tabular network (chosen on validation) test MAE <= hgb's",
            "measured": f"{net} {results[net]['test']['mae']:.2f} vs hgb {hgb_mae:.2f} EUR "
                        f"({paired['relative_diff']:+.1%}, paired 95% interval "
                        f"{interval[0]:+.1%} to {interval[1]:+.1%}){seeds_text}",
            **verdict}


def r2_goal(results: dict, name: str, threshold: float, what: str) -> dict:
    """A goal "R² on log price >= threshold" for ``name``, with its 95% bootstrap interval."""
    test = results[name]["test"]
    verdict = decide(test["r2_log"], test.get("r2_log_ci95"), threshold, AT_LEAST,
                     label=f"{name}'s R² on log price", fmt=".3f")
    return {"goal": f"{what} R² on log price >= {threshold:.2f}",
            "measured": f"{name} R² {test['r2_log']:.3f} (95% interval "
                        f"{test['r2_log_ci95'][0]:.3f} to {test['r2_log_ci95'][1]:.3f})",
            **verdict}


def check_goals(exp) -> list[dict]:
    """One row per goal: {"goal", "measured", "verdict" (reached / not reached / undecided),
    "reason", ...} from test metrics; the model a goal is judged on is validation's pick."""
    results = exp.results
    return [network_goal(exp, best_on_validation(results, NETWORKS)),
            r2_goal(results, best_on_validation(results, TRANSFER), GOALS["transfer_min_r2_log"],
                    "transfer model (chosen on validation), from the photo alone,"),
            r2_goal(results, "cnn_scratch", GOALS["cnn_min_r2_log"],
                    "cnn_scratch (no pretrained weights)")]


def conclusions(results: dict) -> list[str]:
    """The report's conclusions (Markdown bullet lines), every number from ``results``."""
    r = {n: results[n]["test"] for n in results}
    net = best_on_validation(results, NETWORKS)
    best_tab = min(TABULAR, key=lambda n: r[n]["mae"])
    best_img = min(PHOTO, key=lambda n: r[n]["mae"])
    return [
        f"- Lowest test MAE of the tabular models: **{best_tab}**, {r[best_tab]['mae']:.2f} EUR "
        f"(mean predictor {r['mean']['mae']:.2f} EUR), R² on log price {r[best_tab]['r2_log']:.3f}.",
        f"- The tabular network validation picks (**{net}**) "
        f"{'matches or beats' if r[net]['mae'] <= r['hgb']['mae'] else 'does not beat'} gradient "
        f"boosting on test ({r[net]['mae']:.2f} vs {r['hgb']['mae']:.2f} EUR).",
        f"- Lowest test MAE of the photo-only models: **{best_img}**, {r[best_img]['mae']:.2f} EUR, "
        f"R² on log price {r[best_img]['r2_log']:.3f}: the photo carries some price information "
        f"({'more' if r[best_img]['r2_log'] > 0 else 'no more'} than the mean predictor), far less "
        "than the listing's description.",
        finetuning_sentence(results),
    ]


def finetuning_sentence(results: dict) -> str:
    """What fine-tuning did, like for like: the fine-tuned model against the frozen head it
    started from, on validation (the frozen model validation picks may use another backbone)."""
    ft = results["transfer_finetuned"]
    start = ft.get("params", {}).get("started_from") or {}
    picked = best_on_validation(results, TRANSFER)
    test = (f" On test, `transfer_finetuned` {ft['test']['mae']:.2f} EUR and `transfer_frozen` "
            f"{results['transfer_frozen']['test']['mae']:.2f}; validation picks `{picked}`.")
    before = start.get("val_mae_one_view", start.get("val_mae"))
    if before is None:
        return "- Fine-tuning:" + test
    return (f"- Fine-tuning the top blocks of {start['backbone']} "
            f"{change_word(before, ft['val']['mae'])} the validation MAE of the frozen "
            f"{start['head']} head it started from, each predicting from the photo alone "
            f"({before:.2f} -> {ft['val']['mae']:.2f} EUR).{test}")


def answer(results: dict, goals: list[dict], sensitivity: dict | None = None) -> list[str]:
    """The report's five-line answer (Markdown bullets), every number from ``results`` (and the
    split sensitivity's hgb row, when run)."""
    r = {n: results[n]["test"] for n in results}
    best_tab = min(TABULAR, key=lambda n: r[n]["mae"])
    net = best_on_validation(results, NETWORKS)
    photo = best_on_validation(results, PHOTO)
    net_goal, photo_goal, cnn_goal = (f"**{g['verdict']}**" for g in goals)
    cnn_stop = results["cnn_scratch"].get("params", {}).get("stopped_by", "n/a").replace("_", " ")
    lines = [
        f"- **From the listing's features**, `{best_tab}` prices a new host's listing within "
        f"{r[best_tab]['mae']:.2f} EUR a night on average (R² on log price "
        f"{r[best_tab]['r2_log']:.2f}); always answering the mean misses by {r['mean']['mae']:.2f} EUR.",
        f"- **The deep tabular network** validation picks, `{net}`, misses by {r[net]['mae']:.2f} "
        f"EUR, {(r[net]['mae'] / r['hgb']['mae'] - 1) * 100:+.1f}% against gradient boosting: "
        f"goal {net_goal}.",
        f"- **From the photo alone**, `{photo}` {r2_phrase(r[photo]['r2_log'])}, MAE "
        f"{r[photo]['mae']:.2f} EUR: goal of R² {GOALS['transfer_min_r2_log']:.2f} {photo_goal}.",
        f"- **A CNN from scratch** {r2_phrase(r['cnn_scratch']['r2_log'])}, stopped by the "
        f"{cnn_stop}: goal of R² {GOALS['cnn_min_r2_log']:.2f} {cnn_goal}.",
    ]
    hgb_random = ((sensitivity or {}).get("models", {}).get("hgb") or {})
    if "random_test_mae" in hgb_random:
        lines.append(
            f"- **Test listings are new hosts'**: a random split would have scored `hgb` "
            f"{hgb_random['random_test_mae']:.2f} EUR instead of {r['hgb']['mae']:.2f}, "
            "flattered by hosts it had seen in training.")
    return lines


def analyse(exp) -> dict:
    """Everything deliverable 1 concludes: {"best_transfer_on_validation", "goals",
    "conclusions", "intervals"} (written to ``metrics.json`` under ``run``); the interval
    sentence compares the tabular and photo models validation picks."""
    results = exp.results
    kinds = {**{n: "tabular" for n in TABULAR}, **{n: "photo" for n in PHOTO}}
    chosen = {"tabular": best_on_validation(results, TABULAR),
              "photo": best_on_validation(results, PHOTO)}
    return {"best_transfer_on_validation": best_on_validation(results, TRANSFER),
            "goals": check_goals(exp), "conclusions": conclusions(results),
            "intervals": interval_analysis(results, kinds, chosen),
            "interval_goal": coverage_goal(results, dict.fromkeys(
                ("hgb", best_on_validation(results, NETWORKS))))}
