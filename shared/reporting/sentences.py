"""Sentences the reports print, each computed from the numbers it states.

Every comparative word (wider, narrower, significantly, ...) is decided here from the numbers,
with the tolerance stated beside it, so a sentence stays true when the data, split or model
changes.
"""

from __future__ import annotations

from shared.evaluation.intervals import DEFAULT_COVERAGES

#: A change of a validation MAE smaller than this (EUR) is called "unchanged": below the
#: resolution of the two decimals the reports print and of validation-sampling noise.
CHANGE_EUR = 0.05
#: Two median widths within this relative difference are "about as wide".
WIDTH_TOLERANCE = 0.05
#: Said wherever the reports speak of test hygiene.
_CALIBRATION_ROWS = "the rows that calibrate the price ranges (validation and calibration parts)"
_CALIBRATION_READ = "the test coverage of a calibration-part-only variant had been seen for hgb"
CALIBRATION_RULE_NOTE = f"{_CALIBRATION_ROWS} were chosen after {_CALIBRATION_READ}"
SELECTION_RULE_NOTE = ("two rules were adopted after test results had been read: the one that "
                       "selects the blend (its cross-validated validation MAE), after an earlier "
                       f"render's, and {_CALIBRATION_ROWS}, after {_CALIBRATION_READ}")


def change_word(before: float, after: float, tolerance: float = CHANGE_EUR) -> str:
    """"lowered" / "raised" / "left unchanged (within ``tolerance``)" for a move of an error
    from ``before`` to ``after`` (same unit)."""
    if after < before - tolerance:
        return "lowered"
    if after > before + tolerance:
        return "raised"
    return f"left unchanged (within {tolerance:g})"


def r2_phrase(r2_log: float) -> str:
    """What an R² on log price says: the share of variance explained, or, below zero, that the
    model does worse than always answering the mean log price."""
    if r2_log < 0:
        return (f"does worse than always answering the mean log price (R² on log price "
                f"{r2_log:.2f})")
    return f"explains {r2_log:.0%} of the variance of log price (R² {r2_log:.2f})"


def paired_word(comparison: dict) -> str:
    """"significantly lower" / "significantly higher" / "not significantly different": a
    paired comparison (:func:`shared.evaluation.metrics.paired_bootstrap_mae` of A against B) is
    significant when its 95% interval of the MAE difference excludes zero."""
    low, high = comparison["mae_diff_ci95"]
    if high < 0:
        return "significantly lower"
    if low > 0:
        return "significantly higher"
    return "not significantly different"


def mae_comparison(comparison: dict, model: str, reference: str) -> str:
    """The paired test comparison of ``model`` with ``reference`` in words, e.g. "`a`'s test MAE
    is significantly lower than `b`'s" (:func:`paired_word` decides the words)."""
    word = paired_word(comparison)
    if word == "not significantly different":
        return f"`{model}`'s test MAE is not significantly different from `{reference}`'s"
    return f"`{model}`'s test MAE is {word} than `{reference}`'s"


def _pick(metrics_by_model: dict[str, dict], kinds: dict[str, str], kind: str,
          chosen: dict[str, str]):
    """(median width, model name, "the narrowest " or "the ") of ``kind``, or None."""
    if kind in chosen:
        name = chosen[kind]
        return metrics_by_model[name]["median_width_eur"], name, "the "
    candidates = [(m["median_width_eur"], name) for name, m in metrics_by_model.items()
                  if kinds.get(name) == kind]
    return (*min(candidates), "the narrowest ") if candidates else None


def width_comparison(a: float, b: float, tolerance: float = WIDTH_TOLERANCE) -> str:
    """How width ``a`` compares with width ``b``: "N times as wide as", "N% narrower than" or
    "about as wide as" (within ``tolerance``, relative)."""
    ratio = a / b
    if ratio > 1 + tolerance:
        return f"{ratio:.1f} times as wide as"
    if ratio < 1 - tolerance:
        return f"{(1 - ratio):.0%} narrower than"
    return "about as wide as"


def coverage_sentence(metrics_by_model: dict[str, dict], kinds: dict[str, str],
                      chosen: dict[str, str] | None = None) -> str:
    """One sentence, computed from the numbers, on what the interval widths say about the photo
    models vs the tabular ones (and the fusion models when present).

    Args:
        metrics_by_model: ``{model: interval_metrics(...)}`` at one nominal coverage.
        kinds: ``{model: "tabular" | "photo" | "fusion"}`` (see :func:`model_kind`).
        chosen: optional ``{kind: model}`` naming the model to speak for a kind (e.g. the best
            tabular model by validation MAE, the chosen fusion model); by default the model of
            that kind with the narrowest median width.
    """
    chosen = chosen or {}
    tab = _pick(metrics_by_model, kinds, "tabular", chosen)
    if tab is None:
        return "No tabular model has intervals, so there is nothing to compare the widths with."
    nominal = next((m["nominal"] for m in metrics_by_model.values() if m.get("nominal")), None)
    t_width, t_name, t_article = tab
    t_cov = metrics_by_model[t_name]["coverage"]
    lead = f"At {nominal:.0%} nominal coverage" if nominal else "At equal nominal coverage"
    parts = []
    photo = _pick(metrics_by_model, kinds, "photo", chosen)
    if photo is not None:
        p_width, p_name, p_article = photo
        verdict = ("so a photo alone pins the price down less than the listing's description"
                   if p_width > t_width * (1 + WIDTH_TOLERANCE) else
                   "so a photo alone pins the price down more tightly than the description"
                   if p_width < t_width * (1 - WIDTH_TOLERANCE) else
                   "so a photo alone pins the price down about as well as the description")
        parts.append(f"{p_article}photo-only interval ({p_name}: median {p_width:.1f} EUR, "
                     f"test coverage {metrics_by_model[p_name]['coverage']:.0%}) is "
                     f"{width_comparison(p_width, t_width)} {t_article}tabular one ({t_name}: "
                     f"{t_width:.1f} EUR, coverage {t_cov:.0%}), {verdict}")
    fusion = _pick(metrics_by_model, kinds, "fusion", chosen)
    if fusion is not None:
        f_width, f_name, f_article = fusion
        parts.append(f"{f_article}fusion interval ({f_name}: {f_width:.1f} EUR, coverage "
                     f"{metrics_by_model[f_name]['coverage']:.0%}) is "
                     f"{width_comparison(f_width, t_width)} the tabular one"
                     + (", so the photo narrows the range"
                        if f_width < t_width * (1 - WIDTH_TOLERANCE) else
                        ", so adding the photo does not narrow the range"))
    if not parts:
        return (f"{lead}, {t_article}tabular interval ({t_name}) has a median width of "
                f"{t_width:.1f} EUR (test coverage {t_cov:.0%}); no photo model to compare with.")
    return f"{lead}, " + "; ".join(parts) + "."


def results_intervals(results: dict, names, coverage: float = DEFAULT_COVERAGES[0]) -> dict:
    """``{model: interval_metrics at coverage}`` for the models of ``names`` that have test
    intervals in ``results`` (``Experiment.results``: ``record["intervals"]["test"]``)."""
    key = f"{coverage:g}"
    return {n: results[n]["intervals"]["test"][key] for n in names
            if n in results and key in results[n].get("intervals", {}).get("test", {})}


def interval_analysis(results: dict, kinds: dict[str, str], chosen: dict[str, str],
                      coverage: float = DEFAULT_COVERAGES[0]) -> dict:
    """What a report says about its models' intervals: ``{"coverage", "kinds", "chosen",
    "sentence"}`` with the sentence from :func:`coverage_sentence` at ``coverage``.

    Args:
        kinds: ``{model: "tabular" | "photo" | "fusion"}`` for the models to compare.
        chosen: ``{kind: model}``, the model that speaks for each kind (chosen on validation,
            or the reference a deliverable compares with), never picked by test width.
    """
    metrics = results_intervals(results, kinds, coverage)
    under = [n for n, m in metrics.items()
             if m.get("coverage_ci95") and m["coverage_ci95"][1] < coverage]
    over = [n for n, m in metrics.items()
            if m.get("coverage_ci95") and m["coverage_ci95"][0] > coverage]
    return {"coverage": coverage, "kinds": kinds, "chosen": chosen,
            "under_covered": under, "over_covered": over,
            "sentence": coverage_sentence(metrics, {n: kinds[n] for n in metrics},
                                          {k: m for k, m in chosen.items() if m in metrics}),
            "calibration_check": calibration_check(coverage, under, over)}


def calibration_check(coverage: float, under: list[str], over: list[str]) -> str:
    """The report's verdict on the calibration rows, from the test coverage intervals: models
    whose 95% bootstrap interval of the test coverage lies wholly below (above) ``coverage``."""
    text = (f"Test check of the calibration: no model's {coverage:.0%} range covers significantly "
            "less than nominal" if not under else
            f"Test check of the calibration: the {coverage:.0%} range of {', '.join(under)} covers "
            "significantly less than nominal on test (its whole 95% bootstrap interval is below "
            f"{coverage:.0%}): the calibration rows' quantile fell low by chance, the test "
            "listings differ from them, or the validation rows among them (which chose "
            "hyperparameters) erred less than new listings do")
    if over:
        text += f"; {', '.join(over)} cover(s) significantly more than nominal (ranges wider than needed)"
    return text + "."


def _group_text(g: dict, coverage: bool = True) -> str:
    label = g["group"] if g["breakdown"] == "room_type" else f"predicted {g['group']} EUR"
    return f"{label} {g['coverage']:.1%} (n={g['n']})" if coverage else f"{label} (n={g['n']})"


def coverage_goal_sentence(name: str, check: dict) -> str:
    """Where ``name``'s calibrated ranges hold and where they are still off, per nominal
    coverage, from :func:`shared.evaluation.coverage.coverage_check`."""
    parts = []
    for c in check.values():
        (lo, hi), (glo, ghi) = c["overall"]["range"], c["group_range"]
        overall = (f"{c['nominal']:.0%} range {c['overall']['coverage']:.1%} overall (goal "
                   f"{lo:.0%}-{hi:.0%}: {'met' if c['overall']['met'] else 'missed'})")
        inside, outside = ((f"within {glo:.0%}-{ghi:.0%}", f"outside {glo:.0%}-{ghi:.0%}")
                           if ghi < 1 else (f"at least {glo:.0%}", f"below {glo:.0%}"))
        judged = [g for g in c["groups"] if g["judged"]]
        groups = ("no group large enough to judge" if not judged else
                  f"every judged group {inside}" if not c["off"] else
                  f"{outside}: " + ", ".join(_group_text(g) for g in c["off"]))
        parts.append(f"{overall}, {groups}")
    first = next(iter(check.values()), {"small": [], "groups": []})
    small = first["small"]
    tail = ("; too few test listings to judge: " + ", ".join(_group_text(g, False) for g in small)
            if small and len(small) < len(first["groups"]) else "")
    return f"`{name}`: " + "; ".join(parts) + tail + "."


def coverage_goal_text(goal: dict, min_n: int) -> str:
    """The coverage goal in words (``goal``: :data:`shared.evaluation.coverage.COVERAGE_GOAL`)."""
    parts = []
    for i, (nominal, ((lo, hi), (glo, ghi))) in enumerate(goal.items()):
        group = f"{glo:.0%}-{ghi:.0%}" if ghi < 1 else f"at least {glo:.0%}"
        where = ("in every room type and predicted-price band with at least "
                 f"{min_n} test listings" if i == 0 else "in each such group")
        parts.append(f"{nominal:.0%} range: {lo:.0%}-{hi:.0%} of test prices overall, {group} "
                     f"{where}")
    return "; ".join(parts)
