"""Deliverable 2's prose: the verdict, the answer and the conclusions, each sentence computed from
the numbers it states (:mod:`deliverable2.analysis` computes them).

Every comparative word is decided here from those numbers: "significantly" when a paired 95%
interval excludes zero; "larger" / "smaller" gains when they differ by more than
:data:`GAIN_TOLERANCE`; "near tie" when validation's paired 95% interval between a pick and its
runner-up contains zero. The tests feed synthetic analyses where each comparison flips.
"""

from __future__ import annotations

from deliverable2 import ablation
from shared.reporting.sentences import mae_comparison, paired_word, r2_phrase

#: Two relative gains (fractions) closer than this are "about the same".
GAIN_TOLERANCE = 0.005
#: |correlation| of the photo score's unique part with the tabular residual above which the
#: photo is said to carry price information the tabular features lack.
UNIQUE_SIGNAL = 0.15


def _paired_text(c: dict) -> str:
    lo, hi = c["mae_diff_ci95"]
    return (f"{c['relative_diff']:+.1%}, paired difference {c['mae_diff']:+.2f} EUR, 95% interval "
            f"[{lo:+.2f}, {hi:+.2f}], better in {c['p_a_better']:.0%} of the resamples")


def verdict_sentence(v: dict, results: dict) -> str:
    """The one-line answer to "does the photo help?" from :func:`ablation.photo_verdict`."""
    photo, tab = v["model"], v["reference"]
    size = ("" if not v["significant"] else
            f", at least the {-v['margin']:.0%} the deliverable aimed for"
            if v["word"] == "yes" else f", but by less than the {-v['margin']:.0%} it aimed for")
    return (f"**Does the photo help? {v['word'].capitalize()}.** The photo-seeing pick against "
            f"the tabular-only pick (model or blend; both chosen on validation): "
            f"{mae_comparison(v, photo, tab)} ({results[photo]['test']['mae']:.2f} vs "
            f"{results[tab]['test']['mae']:.2f} EUR; {_paired_text(v)}){size}.")


def ensembling_sentence(controls: dict) -> str | None:
    """What the photo adds beyond plain ensembling: ``blend`` against ``tabular_blend``."""
    c = controls.get("blend_vs_tabular_blend")
    if c is None:
        return None
    return (f"- **The photo beyond ensembling**: against `tabular_blend` (two tabular models "
            f"averaged by the same rule), {mae_comparison(c, 'blend', 'tabular_blend')} "
            f"({_paired_text(c)}).")


def pick_sentence(ties: list[dict], chosen: str, what: str) -> str:
    """Whether a validation pick is a near tie with its runner-up."""
    if not ties:
        return f"{what} `{chosen}` has no runner-up."
    first = ties[0]
    other = first.get("model") or " + ".join(f"`{m}`" for m in first["members"])
    other = other if other.startswith("`") else f"`{other}`"
    if first["tie"]:
        return (f"{what} `{chosen}` is a near tie: the runner-up {other} is "
                f"{first['gap_eur']:+.2f} EUR behind on validation, a difference validation "
                "cannot resolve (paired 95% interval contains 0), so another seed or CPU could "
                "pick it.")
    return (f"{what} `{chosen}` is clear: the runner-up {other} is {first['gap_eur']:+.2f} EUR "
            "behind on validation (paired 95% interval excludes 0).")


def base_sentence(controls: dict, vs_hgb: dict | None) -> str:
    """Every fusion model against the tabular model it is built on, and whether the networks
    gain more from the photo than gradient boosting and overtake it."""
    vs_base = controls["vs_base"]
    parts = ", ".join(f"`{n}` vs `{c['reference']}` {c['relative_diff']:+.1%} ({paired_word(c)})"
                      for n, c in vs_base.items())
    line = f"- **Each fusion model against the tabular model it is built on**: {parts}."
    neural = {n: c for n, c in vs_base.items() if n in ablation.NEURAL_FUSION_MODELS}
    trees = vs_base.get("hgb_with_embeddings")
    if neural and trees:
        best = min(neural, key=lambda n: neural[n]["relative_diff"])
        gap = neural[best]["relative_diff"] - trees["relative_diff"]
        word = ("better than" if gap < -GAIN_TOLERANCE else "worse than" if gap > GAIN_TOLERANCE
                else "about as well as")
        line += (f" Against its own tabular model, the best network fusion (`{best}`, "
                 f"{neural[best]['relative_diff']:+.1%}) does {word} gradient boosting with the "
                 f"photo (`hgb_with_embeddings`, {trees['relative_diff']:+.1%}; within "
                 f"{GAIN_TOLERANCE:.1%} counts as as well).")
        if vs_hgb is not None and best in vs_hgb:
            line += (" Against gradient boosting without the photo, "
                     f"{mae_comparison(vs_hgb[best], best, 'hgb')}.")
    return line


def signal_sentence(redundancy: dict, controls: dict, n_train: int) -> str:
    """The end of the "Why" line: what the photo adds beyond the tabular features."""
    unique = redundancy["test"]["corr_unique_residual"]
    if abs(unique) < UNIQUE_SIGNAL:
        return "What the photo knows about the price, the listing's features mostly know already."
    gains = [n for n, c in controls["vs_base"].items() if c["mae_diff_ci95"][1] < 0]
    carries = "The photo does carry some price information the tabular features lack"
    if gains:
        return (f"{carries}, and {len(gains)} of {len(controls['vs_base'])} fusion models turn "
                "it into a significant gain over the model they are built on: most of what the "
                "photo shows, the tabular features already say.")
    return (f"{carries}, but no fusion model turns it into a significant gain over the model it "
            f"is built on: it is weak and noisy for {n_train} training listings.")


def goal_sentence(goal: dict) -> str:
    """The fusion goal, its verdict and why."""
    return (f"- **Goal** (the fusion model validation picks at least "
            f"{-ablation.GOALS['max_relative_diff']:.0%} below `{goal['reference']}`, the "
            f"better tabular model on test): **{goal['verdict']}**: "
            f"{goal['reason'].removeprefix(goal['verdict'] + ': ')}")


def answer(exp, a: dict) -> list[str]:
    """The report's answer: the verdict, then the numbers behind it (Markdown lines)."""
    r, goal, v = exp.results, a["goal"], a["verdict"]
    lines = [verdict_sentence(v, r), "",
             f"- **Tabular only**: validation picks `{v['reference']}`, "
             f"{r[v['reference']]['test']['mae']:.2f} EUR a night off on average; the better "
             f"tabular model on test, `{a['reference']}`, {r[a['reference']]['test']['mae']:.2f}.",
             f"- **Photo only**: `{a['best_image']}` "
             f"{r2_phrase(r[a['best_image']]['test']['r2_log'])}.",
             goal_sentence(goal),
             "- " + pick_sentence(a["fusion_ties"], goal["chosen_on_validation"],
                                  "The fusion pick")]
    ensembling = ensembling_sentence(a["controls"])
    if ensembling:
        lines.append(ensembling)
    return lines


def conclusions(exp, a: dict) -> list[str]:
    """The report's conclusions (Markdown bullet lines) from the analysis ``a``."""
    r, comparisons, reference = exp.results, a["comparisons"], a["reference"]
    redundancy, p = a["photo_redundancy"], exp.bundles["late_fusion_from_branches"].params
    best_fusion_test = min(comparisons, key=lambda n: r[n]["test"]["mae"])
    lines = [
        f"- Lowest fusion test MAE: `{best_fusion_test}` "
        f"({r[best_fusion_test]['test']['mae']:.2f} EUR, "
        f"{comparisons[best_fusion_test]['relative_diff']:+.1%} against `{reference}`), a "
        "selection on test reported only as such.",
        base_sentence(a["controls"], a["vs_hgb"]),
        f"- Why: on the test rows, a ridge on the tabular features reproduces "
        f"{redundancy['test']['r2_photo_from_tabular']:.0%} of the photo price score; the score "
        f"correlates {redundancy['test']['corr_photo_target']:+.2f} with log price and "
        f"{redundancy['test']['corr_unique_residual']:+.2f} (its part the tabular features do "
        f"not reproduce) with the residual of `{reference}`. "
        + signal_sentence(redundancy, a["controls"], len(exp.data.parts["train"].frame)),
        "- Shuffling the photos between test listings changes the fusion models' MAE by "
        + ", ".join(f"{v['increase']:+.2f} EUR (`{n}`)" for n, v in a["permutation"].items())
        + ": how much each model relies on the photo being the right one.",
        f"- Late fusion from deliverable-1 branches: phase A "
        f"{'kept' if p['head_kept'] else 'reverted'}, phase B "
        f"{'kept' if p['joint_kept'] else 'reverted'} on validation; it starts as the `mlp` and "
        "departs from it only where validation agrees.",
    ]
    return lines
