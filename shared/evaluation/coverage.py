"""Do a model's calibrated ranges hold per group? The coverage goal, checked on a test report.

A range is read as "8 times in 10 the price is in here" for a listing *like this one*, so the
goal asks it of every group known when the price is predicted (room type, predicted-price band)
with enough test listings to tell, not only on average. Coverage per TRUE-price band is not part
of it: no calibration can promise it (the listings that turn out dear are largely those a model
under-predicts); the reports show it as a diagnostic.
"""

from __future__ import annotations

#: {nominal coverage: ((overall low, high), (each group low, high))}, shares in [0, 1].
COVERAGE_GOAL = {0.8: ((0.78, 0.82), (0.75, 0.88)), 0.9: ((0.88, 0.92), (0.85, 1.0))}
#: A group is judged when it holds at least this many test listings.
MIN_GROUP_N = 100
#: The breakdowns known at prediction time (``interval_report``'s group names).
BREAKDOWNS = ("room_type", "predicted_band")


def coverage_check(report: dict, goal: dict = COVERAGE_GOAL, min_n: int = MIN_GROUP_N) -> dict:
    """``report``: one model's test interval report (``record["intervals"]["test"]``:
    ``{"0.8": interval metrics, ...}``). Returns ``{"0.8": {"nominal", "overall": {"coverage",
    "coverage_ci95", "median_width_eur", "range", "met"}, "groups": [{"breakdown", "group", "n",
    "coverage", "coverage_ci95", "median_width_eur", "judged", "met"}], "off": [the judged
    groups outside their range], "small": [groups under ``min_n``], "met": bool}}`` for each
    coverage of ``goal`` the report holds."""
    out = {}
    for nominal, (overall_range, group_range) in goal.items():
        metrics = report.get(f"{nominal:g}")
        if metrics is None:
            continue
        overall = {key: metrics[key] for key in ("coverage", "coverage_ci95", "median_width_eur")}
        overall.update(range=list(overall_range),
                       met=bool(overall_range[0] <= metrics["coverage"] <= overall_range[1]))
        groups = []
        for breakdown in BREAKDOWNS:
            for group, g in metrics.get("groups", {}).get(breakdown, {}).items():
                judged = g["n"] >= min_n
                groups.append({"breakdown": breakdown, "group": group, "n": g["n"],
                               "coverage": g["coverage"], "coverage_ci95": g["coverage_ci95"],
                               "median_width_eur": g["median_width_eur"], "judged": judged,
                               "met": bool(group_range[0] <= g["coverage"] <= group_range[1])})
        off = [g for g in groups if g["judged"] and not g["met"]]
        out[f"{nominal:g}"] = {"nominal": nominal, "overall": overall, "group_range": list(group_range),
                               "groups": groups, "off": off,
                               "small": [g for g in groups if not g["judged"] and g["n"] > 0],
                               "met": bool(overall["met"] and not off)}
    return out


def coverage_goal(results: dict, names) -> dict:
    """The coverage goal for ``names`` (``Experiment.results`` records with test interval
    reports): ``{"models": {name: coverage_check}, "verdict": "reached" | "not reached",
    "reached": bool, "reason"}``; reached when every model meets it at every coverage."""
    checks = {n: coverage_check(results[n]["intervals"]["test"]) for n in names}
    missed = [f"{n} at {c['nominal']:.0%}" for n, check in checks.items() for c in check.values()
              if not c["met"]]
    reached = not missed
    return {"models": checks, "verdict": "reached" if reached else "not reached",
            "reached": reached,
            "reason": "met by every model at every coverage" if reached
            else "missed by " + ", ".join(missed)}
