"""Deliverable 1's goals, checked, and its conclusions, computed from the results (nothing is
trained or chosen on test here).

:data:`GOALS` is the one definition of the thresholds; :func:`analyse` turns ``exp.results``
into the goal table and the conclusion lines that ``metrics.json`` records and the report shows.
The transfer model a goal is judged on is the one *validation* picks (lowest validation MAE, as
in deliverable 2), never the better one on test.
"""

from __future__ import annotations

from shared.reporting.sentences import interval_analysis
from shared.evaluation.metrics import lowest
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


def check_goals(results: dict) -> list[dict]:
    """One row per goal: {"goal", "measured", "reached"} (text, text, bool), from test metrics."""
    r = {n: results[n]["test"] for n in results}
    transfer = best_on_validation(results, TRANSFER)
    within, min_r2, cnn_r2 = (GOALS["network_vs_hgb_max_relative"], GOALS["transfer_min_r2_log"],
                              GOALS["cnn_min_r2_log"])
    net = best_on_validation(results, NETWORKS)
    relative = r[net]["mae"] / r["hgb"]["mae"] - 1
    means = {n: seed_mean(results[n]) for n in (net, "hgb")}
    seeds_ok = None not in means.values() and means[net] <= (1 + within) * means["hgb"]
    seeds_text = (f"; over the seed study {means[net]:.2f} vs {means['hgb']:.2f} EUR"
                  if None not in means.values() else "; no seed study")
    return [
        {"goal": "tabular network (chosen on validation) test MAE <= hgb's, single run and mean "
                 "over the seed study",
         "measured": f"{net} {r[net]['mae']:.2f} vs hgb {r['hgb']['mae']:.2f} EUR "
                     f"({relative * 100:+.1f}%){seeds_text}",
         "reached": bool(r[net]["mae"] <= (1 + within) * r["hgb"]["mae"] and seeds_ok)},
        {"goal": f"transfer model (chosen on validation) R² on log price >= {min_r2:.2f} "
                 "from the photo alone",
         "measured": f"{transfer} R² {r[transfer]['r2_log']:.3f}",
         "reached": bool(r[transfer]["r2_log"] >= min_r2)},
        {"goal": f"cnn_scratch (no pretrained weights) R² on log price >= {cnn_r2:.2f}",
         "measured": f"R² {r['cnn_scratch']['r2_log']:.3f}",
         "reached": bool(r["cnn_scratch"]["r2_log"] >= cnn_r2)},
    ]


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
    change = ft["val"]["mae"] - before
    return (f"- Fine-tuning the top blocks of {start['backbone']} "
            f"{'lowered' if change < 0 else 'did not lower'} the validation MAE of the frozen "
            f"{start['head']} head it started from, each predicting from the photo alone "
            f"({before:.2f} -> {ft['val']['mae']:.2f} EUR).{test}")


def answer(results: dict, goals: list[dict], sensitivity: dict | None = None) -> list[str]:
    """The report's five-line answer (Markdown bullets), every number from ``results`` (and the
    split sensitivity's hgb row, when run)."""
    r = {n: results[n]["test"] for n in results}
    best_tab = min(TABULAR, key=lambda n: r[n]["mae"])
    net = best_on_validation(results, NETWORKS)
    photo = best_on_validation(results, PHOTO)
    verdict = ["not reached", "reached"]
    net_goal, photo_goal, cnn_goal = (g["reached"] for g in goals)
    cnn_stop = results["cnn_scratch"].get("params", {}).get("stopped_by", "n/a").replace("_", " ")
    lines = [
        f"- **From the listing's features**, `{best_tab}` prices a new host's listing within "
        f"{r[best_tab]['mae']:.2f} EUR a night on average (R² on log price "
        f"{r[best_tab]['r2_log']:.2f}); always answering the mean misses by {r['mean']['mae']:.2f} EUR.",
        f"- **The deep tabular network** validation picks, `{net}`, misses by {r[net]['mae']:.2f} "
        f"EUR, {(r[net]['mae'] / r['hgb']['mae'] - 1) * 100:+.1f}% against gradient boosting: "
        f"goal {verdict[net_goal]}.",
        f"- **From the photo alone**, `{photo}` explains {r[photo]['r2_log']:.0%} of the variance "
        f"of log price (MAE {r[photo]['mae']:.2f} EUR): goal of "
        f"{GOALS['transfer_min_r2_log']:.0%} {verdict[photo_goal]}.",
        f"- **A CNN from scratch** explains {r['cnn_scratch']['r2_log']:.0%} (stopped by the "
        f"{cnn_stop}): goal of {GOALS['cnn_min_r2_log']:.0%} {verdict[cnn_goal]}.",
    ]
    hgb_random = ((sensitivity or {}).get("models", {}).get("hgb") or {})
    if "random_test_mae" in hgb_random:
        lines.append(
            f"- **Test listings are new hosts'**: a random split would have scored `hgb` "
            f"{hgb_random['random_test_mae']:.2f} EUR instead of {r['hgb']['mae']:.2f}, "
            "flattered by hosts it had seen in training.")
    return lines


def analyse(results: dict) -> dict:
    """Everything deliverable 1 concludes: {"best_transfer_on_validation", "goals",
    "conclusions", "intervals"} (written to ``metrics.json`` under ``run``); the interval
    sentence compares the tabular and photo models validation picks."""
    kinds = {**{n: "tabular" for n in TABULAR}, **{n: "photo" for n in PHOTO}}
    chosen = {"tabular": best_on_validation(results, TABULAR),
              "photo": best_on_validation(results, PHOTO)}
    return {"best_transfer_on_validation": best_on_validation(results, TRANSFER),
            "goals": check_goals(results), "conclusions": conclusions(results),
            "intervals": interval_analysis(results, kinds, chosen)}
