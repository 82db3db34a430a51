"""Goal verdicts that say when the data cannot decide: ``reached``, ``not reached`` or ``undecided``.

A goal is a threshold on one number: R² on log price ``>= 0.20``, a relative MAE difference
``<= -0.03`` (-3%). A measured value comes with its uncertainty: the 95% bootstrap interval of
the test metric (test-sampling noise: another test set of the same size could give any value in
it) and, for a model with a seed study, the range of the seeds' values (training noise: another
seed, or another CPU, could give any value in it). :func:`decide` looks at all of them together,
the *span* ``[min(point, interval, seed range), max(...)]``:

* ``reached`` when the whole span meets the goal (``>=``: ``span_low >= threshold``; ``<=``:
  ``span_high <= threshold``),
* ``not reached`` when the whole span misses it (``>=``: ``span_high < threshold``; ``<=``:
  ``span_low > threshold``),
* ``undecided`` otherwise: the interval or the seed range contains the threshold, so the data is
  consistent with both answers.

A goal made of several such parts (all must be met) is combined by :func:`combine`: not reached
when one part is not reached, reached when all are, undecided otherwise.

Only two definite verdicts can contradict each other (:func:`contradicts`): ``reached`` in one run
and ``not reached`` in another means their uncertainty ranges lie on opposite sides of the goal.
``undecided`` is consistent with either, so a change to or from it is not a contradiction.

``metrics.json`` stores a verdict as ``{"verdict": "reached" | "not reached" | "undecided", ...}``;
older files store only ``"reached": true | false``, which :func:`verdict_of` reads as reached /
not reached. :func:`read_verdicts` and :func:`compare_verdicts` read and compare the goals of two
``metrics.json`` contents (``run.goals``: a list of goal dicts; ``run.<key>``: one goal dict such as
``run.goal``). :func:`seed_band` gives where one more training run would fall, given a seed
study (the reproduction check's rule, :mod:`shared.run.reproduce`). Pure functions: numbers in,
small JSON-ready dicts out (numpy only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

REACHED, NOT_REACHED, UNDECIDED = "reached", "not reached", "undecided"
VERDICTS = (REACHED, NOT_REACHED, UNDECIDED)
#: The two directions of a goal: the value must be at least / at most the threshold.
AT_LEAST, AT_MOST = ">=", "<="
DIRECTIONS = (AT_LEAST, AT_MOST)
_WORDS = {REACHED: "reached", NOT_REACHED: "not reached",
          UNDECIDED: "undecided (the data cannot decide)"}


# --------------------------------------------------------------------------- deciding


def decide(point: float, interval: Sequence[float] | None, threshold: float, direction: str, *,
           seed_range: Sequence[float] | None = None, label: str = "the value",
           fmt: str = ".4g") -> dict[str, Any]:
    """The verdict on "``point`` ``direction`` ``threshold``" given its uncertainty.

    ``point``: the measured value (a float, in the goal's unit: R² as a fraction, a relative
    difference as a fraction, an MAE in EUR ...). ``interval``: its 95% interval ``[low, high]``
    (two floats, same unit; None when there is none). ``seed_range``: ``[low, high]`` of the
    seed study's values (same unit; None without a seed study; see :func:`seed_range`).
    ``threshold``: the goal (same unit). ``direction``: :data:`AT_LEAST` (``">="``) or
    :data:`AT_MOST` (``"<="``). ``label`` names the value in the reason; ``fmt`` formats numbers.

    Returns ``{"verdict", "label", "point", "interval", "seed_range", "threshold", "direction",
    "reason"}``: the verdict (one of :data:`VERDICTS`), the numbers used (floats, ranges as
    two-float lists or None) and a one-line English reason computed from them. Raises
    ValueError on a non-finite number, a range that is not ``[low <= high]`` or another direction.
    """
    point, threshold = _number(point, "point"), _number(threshold, "threshold")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    ranges = {"95% interval": _range(interval, "interval"),
              "seed range": _range(seed_range, "seed_range")}
    values = [point, *(x for pair in ranges.values() if pair for x in pair)]
    low, high = min(values), max(values)
    if direction == AT_LEAST:
        verdict = REACHED if low >= threshold else NOT_REACHED if high < threshold else UNDECIDED
    else:
        verdict = REACHED if high <= threshold else NOT_REACHED if low > threshold else UNDECIDED
    return {"verdict": verdict, "label": label, "point": point,
            "interval": ranges["95% interval"], "seed_range": ranges["seed range"],
            "threshold": threshold, "direction": direction,
            "reason": _reason(verdict, label, point, ranges, threshold, direction, fmt)}


def _reason(verdict: str, label: str, point: float, ranges: dict, threshold: float,
            direction: str, fmt: str) -> str:
    shown = [f"{name} {pair[0]:{fmt}} to {pair[1]:{fmt}}" for name, pair in ranges.items() if pair]
    numbers = f"{label} {point:{fmt}}" + (f" ({'; '.join(shown)})" if shown else "")
    goal = f"the goal {direction} {threshold:{fmt}}"
    if verdict == REACHED:
        return f"{verdict}: {numbers} meets {goal} " + ("with all of its range" if shown else
                                                        "(no interval given)")
    if verdict == NOT_REACHED:
        return f"{verdict}: {numbers} misses {goal} " + ("with all of its range" if shown else
                                                         "(no interval given)")
    holding = [name for name, pair in ranges.items() if pair and pair[0] <= threshold <= pair[1]]
    where = (f"the {' and the '.join(holding)} contain{'s' if len(holding) == 1 else ''} it"
             if holding else "its ranges fall on both sides of it")
    return f"{verdict}: {numbers}, {goal}: {where}, the data cannot decide"


def combine(parts: Sequence[dict | str], *, label: str = "the goal") -> dict[str, Any]:
    """The verdict of a goal whose parts must all be met (each a :func:`decide` result or a
    verdict word): ``not reached`` when one part is not reached, ``reached`` when all are,
    ``undecided`` otherwise. Returns ``{"verdict", "label", "parts", "reason"}``."""
    words = [verdict_of(part) for part in parts]
    if not words or None in words:
        raise ValueError(f"combine needs verdicts among {VERDICTS}, got {list(parts)!r}")
    names = [part.get("label", f"part {i + 1}") if isinstance(part, dict) else f"part {i + 1}"
             for i, part in enumerate(parts)]
    missed = [name for name, word in zip(names, words, strict=True) if word == NOT_REACHED]
    open_ = [name for name, word in zip(names, words, strict=True) if word == UNDECIDED]
    if missed:
        verdict, why = NOT_REACHED, f"not reached by {', '.join(missed)}"
    elif open_:
        verdict, why = UNDECIDED, f"{', '.join(open_)} undecided, no part missed"
    else:
        verdict, why = REACHED, f"all {len(words)} parts reached"
    return {"verdict": verdict, "label": label, "parts": list(parts),
            "reason": f"{verdict}: {label}: {why}"}


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _range(value: Sequence[float] | None, name: str) -> list[float] | None:
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [low, high], got {value!r}") from None
    if array.shape != (2,) or not np.all(np.isfinite(array)) or array[0] > array[1]:
        raise ValueError(f"{name} must be two finite numbers [low, high] with low <= high, "
                         f"got {value!r}")
    return [float(array[0]), float(array[1])]


# --------------------------------------------------------------------------- seed studies


def seed_values(record: dict) -> list[float]:
    """The finite test MAEs (EUR) of a model's seed study in ``metrics.json`` (``models.<name>``:
    ``{"seeds": [{"seed", "test_mae", "reported"?}, ...]}``); [] without one."""
    seeds = record.get("seeds") if isinstance(record, dict) else None
    return [float(s["test_mae"]) for s in (seeds if isinstance(seeds, list) else [])
            if isinstance(s, dict) and isinstance(s.get("test_mae"), (int, float))
            and np.isfinite(s["test_mae"])]


def seed_range(values: Iterable[float]) -> list[float]:
    """``[min, max]`` of a seed study's values (shape (n,), n >= 1, the goal's unit; non-finite
    values are left out). Raises ValueError when no finite value is left."""
    array = np.asarray(list(values), dtype=float).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError("seed_range needs at least one finite value")
    return [float(array.min()), float(array.max())]


def t_quantile(p: float, df: int, steps: int = 200_000) -> float:
    """The ``p``-quantile (0.5 <= p < 1) of Student's t with ``df`` >= 1 degrees of freedom.
    With ``x = sqrt(df) tan(a)`` the t density becomes ``cos(a) ** (df - 1)`` on ``[0, pi/2)``,
    a bounded integrand: its cumulative trapezoid sum is inverted (absolute error < 1e-6)."""
    if not (0.5 <= p < 1 and df >= 1):
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p!r}, df={df!r}")
    angle = np.linspace(0.0, np.pi / 2, steps + 1)
    density = np.cos(angle) ** (df - 1)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return float(np.sqrt(df) * np.tan(np.interp(2 * p - 1, cumulative / cumulative[-1], angle)))


def seed_band(values: Iterable[float], level: float = 0.95) -> dict[str, float] | None:
    """Where one more training run drawn like a seed study's would fall (values: shape (n,),
    the metric's unit, non-finite ones left out): the ``level`` prediction interval of a normal
    sample, ``mean +- t((1 + level) / 2, n - 1) * s * sqrt(1 + 1/n)`` (``s``: sample standard
    deviation), widened to the seeds' own ``[min, max]`` when narrower. Returns ``{"n", "mean",
    "sd", "t", "min", "max", "low", "high"}``, or None with fewer than two finite values."""
    x = np.asarray(list(values), dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None
    mean, sd, t = float(x.mean()), float(x.std(ddof=1)), t_quantile((1 + level) / 2, x.size - 1)
    half = t * sd * float(np.sqrt(1 + 1 / x.size))
    low, high = float(x.min()), float(x.max())
    return {"n": int(x.size), "mean": mean, "sd": sd, "t": t, "min": low, "max": high,
            "low": min(low, mean - half), "high": max(high, mean + half)}


def describe_seed_band(band: dict[str, float]) -> str:
    """One line for a :func:`seed_band` result: the seeds, their mean and spread, the band."""
    return (f"{band['n']} seeds {band['min']:.4f} to {band['max']:.4f}, mean {band['mean']:.4f}, "
            f"sd {band['sd']:.4f}, t {band['t']:.3f}: [{band['low']:.4f}, {band['high']:.4f}]")


# --------------------------------------------------------------------------- words


def verdict_of(record: Any) -> str | None:
    """The verdict word of a stored goal: a word of :data:`VERDICTS`, a dict with ``"verdict"``
    (one of them) or, in older files, with a boolean ``"reached"``; None when it records none."""
    if isinstance(record, str):
        return record if record in VERDICTS else None
    if not isinstance(record, dict):
        return None
    if record.get("verdict") in VERDICTS:
        return record["verdict"]
    reached = record.get("reached")
    return (REACHED if reached else NOT_REACHED) if isinstance(reached, bool) else None


def format_verdict(verdict: dict | str, *, markdown: bool = False) -> str:
    """A verdict for a report: ``reached``, ``not reached`` or ``undecided (the data cannot
    decide)``; with ``markdown`` the verdict word is bold (``**undecided** (...)``)."""
    word = verdict_of(verdict)
    if word is None:
        raise ValueError(f"not a verdict: {verdict!r}")
    text = _WORDS[word]
    return f"**{word}**{text[len(word):]}" if markdown else text


def contradicts(first: str | None, second: str | None) -> bool:
    """Whether two verdict words are reached and not reached (in either order)."""
    return {first, second} == {REACHED, NOT_REACHED}


# --------------------------------------------------------------------------- metrics.json


def read_verdicts(metrics: dict) -> dict[str, dict[str, Any]]:
    """The goal verdicts of a ``metrics.json`` content: ``{label: {"verdict": word or None,
    "legacy": bool}}``. ``run.goals`` items are labelled by their ``"id"``, else their ``"goal"``
    text, else ``run.goals[i]``; a dict ``run.<key>`` with a ``"verdict"`` or a boolean
    ``"reached"`` (``run.goal``, ``run.interval_goal``) by ``run.<key>``. ``legacy``: read from
    the older ``"reached"`` flag, which cannot say undecided."""
    run = metrics.get("run") if isinstance(metrics, dict) else None
    if not isinstance(run, dict):
        return {}
    found: dict[str, dict[str, Any]] = {}
    goals = run.get("goals")
    for index, goal in enumerate(goals if isinstance(goals, list) else []):
        if isinstance(goal, dict):
            label = str(goal.get("id") or goal.get("goal") or f"run.goals[{index}]")
            found[label] = _stored(goal)
    for key, value in run.items():
        if isinstance(value, dict) and ("verdict" in value or isinstance(value.get("reached"),
                                                                          bool)):
            found[f"run.{key}"] = _stored(value)
    return found


def _stored(goal: dict) -> dict[str, Any]:
    return {"verdict": verdict_of(goal), "legacy": goal.get("verdict") not in VERDICTS
            and isinstance(goal.get("reached"), bool)}


def compare_verdicts(published: dict, candidate: dict) -> list[dict[str, Any]]:
    """Each goal of two ``metrics.json`` contents: ``{"goal", "published", "candidate",
    "change", "failed", "published_legacy", "candidate_legacy"}`` (verdict words or None; a
    ``*_legacy`` flag says that side was read from the older ``"reached"`` flag). ``change``:
    ``same``, ``flipped`` (reached <-> not reached: ``failed``), ``changed`` (to or from
    undecided: reported, not failed), ``absent from this run``, ``only in this run`` or ``not
    recorded`` (a side has no verdict)."""
    mine, theirs = read_verdicts(candidate), read_verdicts(published)
    rows = []
    for label in [*theirs, *(name for name in mine if name not in theirs)]:
        old, new = theirs.get(label), mine.get(label)
        before, after = (old or {}).get("verdict"), (new or {}).get("verdict")
        if old is None:
            change = "only in this run"
        elif new is None:
            change = "absent from this run"
        elif before is None or after is None:
            change = "not recorded"
        elif before == after:
            change = "same"
        else:
            change = "flipped" if contradicts(before, after) else "changed"
        rows.append({"goal": label, "published": before, "candidate": after, "change": change,
                     "failed": change == "flipped",
                     "published_legacy": bool((old or {}).get("legacy")),
                     "candidate_legacy": bool((new or {}).get("legacy"))})
    return rows


def format_verdict_changes(rows: list[dict[str, Any]]) -> list[str]:
    """Text lines for a report or a terminal: the :func:`compare_verdicts` rows as a table
    (goal, published, this run, change; ``*`` marks a verdict read from a ``"reached"`` flag),
    then every changed verdict named with whether it fails."""
    if not rows:
        return ["goal verdicts: none recorded in either file"]
    table = [["goal", "published", "this run", "change"]] + [
        [row["goal"], (row["published"] or "-") + ("*" if row["published_legacy"] else ""),
         (row["candidate"] or "-") + ("*" if row["candidate_legacy"] else ""), row["change"]]
        for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(4)]
    lines = ["goal verdicts:"] + ["  " + "  ".join(cell.ljust(width) for cell, width in
                                                   zip(line, widths, strict=True)).rstrip()
                                  for line in table]
    if any(row["published_legacy"] or row["candidate_legacy"] for row in rows):
        lines.append('  * read from an older "reached" flag, which cannot say undecided')
    for row in (row for row in rows if row["change"] in ("flipped", "changed")):
        effect = ("FAIL: reached and not reached contradict each other" if row["failed"]
                  else "reported, not a failure: undecided is consistent with either verdict")
        lines.append(f"  verdict changed: {row['goal']}: published {row['published']}, this run "
                     f"{row['candidate']} ({effect})")
    return lines
