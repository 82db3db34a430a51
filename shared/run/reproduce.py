"""Check the published numbers: train a deliverable again in a scratch folder and compare every
model's test metrics, and the goal verdicts, with the committed ``docs/<deliverable>/metrics.json``.

    nox -s reproduce -- deliverable1            (or deliverable2)
    python -m shared.run.reproduce deliverable1|deliverable2 [--smoke] [--data-dir D]
        [--reference FILE] [--candidate FILE] [--scratch DIR] [--exact]

**The rule** (docs/reproduce.md). On the same kind of CPU (``run.cpu``) the pinned versions and
fixed seeds give *equal* numbers. On another kind float sums run in another order, so each point
metric must lie inside its published 95% bootstrap interval (none: equal), and the test MAE of
a model with a seed study (n >= 2 seeds ``x_i``) inside its *seed band* ``[min(min x, mean - h),
max(max x, mean + h)]``, ``h = t(0.975, n - 1) * s * sqrt(1 + 1/n)`` (the 95% prediction
interval of one more seed). A goal verdict flipping between ``reached`` and ``not reached``
fails; a change to or from ``undecided`` (the goal inside the run's uncertainty) does not.

Exit status: 0 everything agrees, 1 a metric outside the rule or a flipped verdict (each named),
2 no comparison possible (a missing or unreadable file, no published test metrics, training failed).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import environment
from shared.data.acquisition.fetch import ensure_data
from shared.evaluation.verdicts import (compare_verdicts, describe_seed_band,
                                        format_verdict_changes, seed_band, seed_range, seed_values)

DELIVERABLES = ("deliverable1", "deliverable2")
EXIT_AGREE, EXIT_DIFFER, EXIT_ERROR = 0, 1, 2
#: The point metrics, in the order of the table; the ``*_ci95`` intervals share one column.
POINT_METRICS = ("mae", "rmse", "mape", "medape", "r2_log")
CI_COLUMN, SEED = "95% intervals", "seed band"
LEVEL = 0.95  # of the published bootstrap intervals and of the seed band
EXACT_RULE = "exact: every test metric and interval bound must be equal"
UNCERTAINTY_RULE = (
    f"inside the published uncertainty: each test metric ({', '.join(POINT_METRICS)}) inside its "
    "published 95% bootstrap interval, and the test MAE of a model with a seed study inside its "
    "seed band (95% prediction interval of one more seed: mean +- t(0.975, n-1) * sd * "
    "sqrt(1 + 1/n), at least the seeds' range); interval bounds not compared")


def describe_cpu(cpu: dict[str, Any]) -> str:
    family = f" ({cpu['family_model']})" if cpu.get("family_model") else ""
    isa = " ".join(cpu.get("isa") or []) or "no vector extensions recorded"
    return (f"{cpu.get('model')}{family}, {cpu.get('arch')}, {cpu.get('usable_cores')} usable "
            f"cores, {isa}")


def same_machine_kind(reference_run: dict, candidate_run: dict) -> tuple[bool, str]:
    """Whether two runs were made on the same kind of machine, and why (one phrase)."""
    ref_cpu, cand_cpu = reference_run.get("cpu"), candidate_run.get("cpu")
    if not ref_cpu:
        return False, "the published run does not record its CPU (run.cpu)"
    if not cand_cpu:
        return False, "this run does not record its CPU (run.cpu)"
    if reference_run.get("device") != candidate_run.get("device"):
        return False, (f"another device: published {reference_run.get('device')!r}, this run "
                       f"{candidate_run.get('device')!r}")
    if ref_cpu != cand_cpu:
        fields = [name for name in sorted({*ref_cpu, *cand_cpu})
                  if ref_cpu.get(name) != cand_cpu.get(name)]
        return False, (f"another CPU ({', '.join(fields)} differ): published "
                       f"{describe_cpu(ref_cpu)}; this run {describe_cpu(cand_cpu)}")
    return True, (f"same machine kind as the published run: {describe_cpu(ref_cpu)}; "
                  f"{reference_run.get('device')}")


@dataclass(frozen=True)
class Check:
    """One published number and this run's. ``rule``: ``equal``, ``no interval`` (a point
    metric published without one: equal), ``interval`` or ``seed band`` (inside ``allowed``).
    ``status``: ``equal``, ``inside``, ``differs`` or ``missing`` (absent from this run)."""

    model: str
    metric: str
    reference: float
    candidate: float | None
    rule: str
    status: str
    allowed: tuple[float, float] | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "missing")

    @property
    def column(self) -> str:
        return SEED if self.rule == SEED else CI_COLUMN if "_ci95" in self.metric else self.metric

    def delta(self) -> str:
        """``+0.0123 (+0.10%)``: this run minus the published value."""
        diff = self.candidate - self.reference
        return f"{diff:+.4g}" + (f" ({diff / abs(self.reference):+.2%})" if self.reference else "")


@dataclass
class Comparison:
    """The outcome of :func:`compare_metrics` (``verdicts``: :func:`compare_verdicts` rows)."""

    exact: bool
    why: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_models: list[str] = field(default_factory=list)
    bands: dict[str, dict] = field(default_factory=dict)
    verdicts: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [item for item in self.checks if item.failed]

    @property
    def agrees(self) -> bool:
        return bool(self.checks) and not self.failures and not any(
            row["failed"] for row in self.verdicts)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(item.model for item in self.checks))


def compare_metrics(reference: dict, candidate: dict, *, exact: bool | None = None) -> Comparison:
    """Compare the test metrics of every published model and the goal verdicts of two
    ``metrics.json`` contents. ``exact``: None decides from the machines (:func:`same_machine_kind`),
    True demands equality, False applies the uncertainty rule. Models only this run has are listed."""
    same, why = same_machine_kind(reference.get("run") or {}, candidate.get("run") or {})
    if exact is not None:
        why = f"{'--exact' if exact else 'the uncertainty rule'} asked ({why})"
    exact = same if exact is None else exact
    comparison = Comparison(exact, why, notes=_notes(reference, candidate),
                            verdicts=compare_verdicts(reference, candidate))
    published, mine = reference.get("models") or {}, candidate.get("models") or {}
    for model, record in published.items():
        band = None if exact else seed_band(seed_values(record), LEVEL)
        if band:
            own = seed_values(mine.get(model) or {})
            comparison.bands[model] = {**band, "this_run": seed_range(own) if own else None}
        comparison.checks += _check_model(model, record.get("test") or {},
                                          (mine.get(model) or {}).get("test") or {}, exact, band)
    comparison.extra_models = [name for name in mine if name not in published]
    return comparison


def _check_model(model: str, published: dict, mine: dict, exact: bool,
                 band: dict | None) -> list[Check]:
    """The checks of one model's test metrics (the rule of the module docstring)."""
    others, checks = dict(_numbers(mine)), []
    for metric, value in _numbers(published):
        if not exact and metric not in POINT_METRICS:
            continue  # an interval bound: not compared on another machine
        ci = published.get(f"{metric}_ci95")
        rule, allowed = "equal" if exact else "no interval", None
        if not exact and isinstance(ci, list) and len(ci) == 2 and all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in ci):
            rule, allowed = "interval", (float(ci[0]), float(ci[1]))
        other = others.get(metric)
        checks.append(Check(model, metric, value, other, rule, _status(value, other, allowed),
                            allowed))
        if metric == "mae" and band:
            allowed = (band["low"], band["high"])
            checks.append(Check(model, metric, value, other, SEED,
                                _status(value, other, allowed), allowed))
    return checks


def _numbers(metrics: dict) -> list[tuple[str, float]]:
    """``[(name, value)]`` of a test-metrics dict; interval bounds as ``mae_ci95[0]`` ..."""
    out = []
    for name, value in metrics.items():
        if isinstance(value, (list, tuple)):
            out += [(f"{name}[{i}]", float(x)) for i, x in enumerate(value)
                    if isinstance(x, (int, float))]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((name, float(value)))
    return out


def _status(reference: float, candidate: float | None, allowed: tuple | None) -> str:
    if candidate is None:
        return "missing"
    if candidate == reference or (math.isnan(candidate) and math.isnan(reference)):
        return "equal"
    return "inside" if allowed and allowed[0] <= candidate <= allowed[1] else "differs"


def _notes(reference: dict, candidate: dict) -> list[str]:
    """What makes the two runs incomparable before any metric is read."""
    notes = []
    ref_data, cand_data = reference.get("dataset") or {}, candidate.get("dataset") or {}
    if ref_data.get("listings_sha256") != cand_data.get("listings_sha256"):
        notes.append(f"this run used another dataset: listings.csv sha256 "
                     f"{cand_data.get('listings_sha256')} ({cand_data.get('source')}), the "
                     f"published run {ref_data.get('listings_sha256')} ({ref_data.get('source')})")
    elif ref_data.get("split_fingerprint") != cand_data.get("split_fingerprint"):
        notes.append("this run used another split of the same dataset")
    ref_run, cand_run = reference.get("run") or {}, candidate.get("run") or {}
    return notes + [f"the published run has {key}={ref_run[key]}, this run {key}={cand_run[key]}"
                    for key in ("smoke", "budget")  # a run records its budget once it has several
                    if key in ref_run and key in cand_run and ref_run[key] != cand_run[key]]


def format_comparison(comparison: Comparison, reference_label: str,
                      candidate_label: str) -> str:
    """The rule applied and why, the seed bands, the table (models x metrics: ``equal``, or by
    how much this run differs), every failing number, the goal verdicts and the verdict."""
    lines = [f"published: {reference_label}", f"this run:  {candidate_label}",
             f"comparison: {EXACT_RULE if comparison.exact else UNCERTAINTY_RULE}",
             f"  because {comparison.why}", *(f"note: {note}" for note in comparison.notes)]
    lines += [f"seed band {model}: {describe_seed_band(band)}" + (
        f"; this run's own seeds {own[0]:.4f} to {own[1]:.4f}" if (own := band["this_run"]) else "")
        for model, band in comparison.bands.items()]
    lines += ["", *_table(comparison), *[""] * bool(comparison.failures)]
    lines += [_failure(item) for item in comparison.failures]
    lines += [f"  not in the published metrics, not compared: {', '.join(comparison.extra_models)}"
              ] * bool(comparison.extra_models)
    return "\n".join([*lines, "", *format_verdict_changes(comparison.verdicts), _summary(comparison)])


def _failure(item: Check) -> str:
    head = f"  {item.model} test {item.metric}: published {item.reference!r}"
    if item.status == "missing":
        return f"{head}, absent from this run"
    why = {"equal": "must be equal", "no interval": "published without an interval: must be equal",
           "interval": "outside the published 95% interval [{:.6g}, {:.6g}]",
           SEED: "outside the seed band [{:.6g}, {:.6g}]"}[item.rule]
    return f"{head}, this run {item.candidate!r} ({item.delta()}): " + why.format(
        *(item.allowed or ()))


def _table(comparison: Comparison) -> list[str]:
    present = list(dict.fromkeys(item.column for item in comparison.checks))
    columns = [name for name in (*POINT_METRICS, SEED, CI_COLUMN) if name in present]
    columns += [name for name in present if name not in columns]
    rows = [["model", *columns]] + [
        [model, *(_cell([item for item in comparison.checks if item.model == model
                         and item.column == column]) for column in columns)]
        for model in comparison.models]
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _cell(items: list[Check]) -> str:
    if not items:
        return "-"
    if any(item.status == "missing" for item in items):
        return "MISSING"
    unequal = [item for item in items if item.status != "equal"]
    if not unequal:
        return "equal"
    if items[0].rule == SEED:
        return "OUTSIDE FAIL" if items[0].failed else "inside"
    worst = max(unequal, key=lambda item: abs(item.candidate - item.reference)
                / max(abs(item.reference), 1e-12))
    return worst.delta() + (" FAIL" if any(item.failed for item in unequal) else "")


def _summary(comparison: Comparison) -> str:
    counted, models = comparison.checks, len(comparison.models)
    if not counted:
        return "NO COMPARISON: the published metrics hold no model test metrics"
    flipped = [row["goal"] for row in comparison.verdicts if row["failed"]]
    changed = sum(row["change"] == "changed" for row in comparison.verdicts)
    tail = f"; {changed} goal verdict(s) changed to or from undecided (not a failure)" * bool(changed)
    of = f"of {len(counted)} checks of the {models} published models"
    if comparison.failures or flipped:
        named = list(dict.fromkeys(f"{item.model} {item.metric.split('[')[0]}"
                                   + " (seed band)" * (item.rule == SEED)
                                   for item in comparison.failures))
        parts = [f"{len(comparison.failures)} {of} ({', '.join(named)})"] * bool(named)
        parts += [f"goal verdict flipped: {'; '.join(flipped)}"] * bool(flipped)
        return "DIFFER: " + "; ".join(parts) + tail
    if comparison.exact:
        return f"AGREE: all {len(counted)} test metrics of the {models} published models are equal{tail}"
    equal = sum(item.status == "equal" for item in counted)
    return f"AGREE inside the published uncertainty: {equal} {of} equal, {len(counted) - equal} inside{tail}"


class ReproduceError(Exception):
    """No comparison could be made (exit 2)."""


def train_into_scratch(deliverable: str, data_dir: Path, scratch: Path, smoke: bool) -> Path:
    """Run ``python -m <deliverable>.train`` with models and metrics in ``scratch``; return the
    new ``metrics.json``."""
    scratch = scratch.resolve()
    models, out, metrics = scratch / "models", scratch / "out", scratch / "out" / "metrics.json"
    protected = [path.resolve() for path in (environment.PROJECT_ROOT, environment.DOCS_DIR,
                                             environment.DEFAULT_MODELS_DIR)]
    if scratch in protected or any(top in scratch.parents for top in protected[1:]):
        raise ReproduceError(f"--scratch {scratch} would write into the project's models/ or "
                             "docs/: choose a folder outside them")
    metrics.unlink(missing_ok=True)  # never compare a stale file
    command = [sys.executable, "-m", f"{deliverable}.train", "--data-dir", str(data_dir),
               "--models-dir", str(models), "--out", str(out), *(["--smoke"] if smoke else [])]
    print("training: " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=environment.PROJECT_ROOT)
    if done.returncode != 0 or not metrics.is_file():
        raise ReproduceError(f"{deliverable}.train failed (exit {done.returncode}): nothing to compare")
    return metrics


def load_metrics(path: Path, what: str) -> dict:
    """A ``metrics.json`` content; :class:`ReproduceError` (one line) when it cannot be read."""
    if not Path(path).is_file():
        raise ReproduceError(f"no {what} metrics at {path}")
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ReproduceError(f"cannot read the {what} metrics {path}: {error}") from None
    if not isinstance(content, dict) or not isinstance(content.get("models", {}), dict):
        raise ReproduceError(f"the {what} metrics {path} are not a JSON object with a models object")
    return content


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.run.reproduce", description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 everything agrees, 1 a metric is outside the rule or a goal "
               "verdict flips, 2 no comparison possible")
    parser.add_argument("deliverable", choices=DELIVERABLES)
    add = parser.add_argument
    add("--smoke", action="store_true", help="train with the smoke budget (needs --reference)")
    add("--data-dir", help="dataset directory (default: $AIRBNB_DATA_DIR, else "
                           "data/airbnb-madrid-10k, fetched when absent)")
    add("--reference", type=Path, help="the published metrics.json (default: docs/<deliverable>/)")
    add("--candidate", type=Path, help="compare this metrics.json instead of training")
    add("--scratch", type=Path, help="folder for the run's models/ and out/ (kept; default: a "
                                     "temporary folder, its models removed at the end)")
    add("--exact", action="store_true", help="demand equal metrics whatever the machine")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ReproduceError, environment.DataDirError, ValueError, OSError) as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.smoke and args.reference is None:
        raise ReproduceError("a smoke run has no published reference: give --reference "
                             "(the metrics.json of an earlier smoke run)")
    reference_path = args.reference or environment.DOCS_DIR / args.deliverable / "metrics.json"
    reference = load_metrics(reference_path, "published")
    candidate_path, temporary = args.candidate, None
    if candidate_path is None:
        data_dir = ensure_data(args.data_dir)
        temporary = None if args.scratch else Path(tempfile.mkdtemp(
            prefix=f"airbnb-dl-reproduce-{args.deliverable}-"))
        candidate_path = train_into_scratch(args.deliverable, data_dir, args.scratch or temporary,
                                            args.smoke)
    comparison = compare_metrics(reference, load_metrics(candidate_path, "candidate"),
                                 exact=True if args.exact else None)
    print(format_comparison(comparison, str(reference_path), str(candidate_path)))
    if temporary is not None:
        shutil.rmtree(temporary / "models", ignore_errors=True)
        print(f"(this run's metrics.json is kept in {candidate_path}; its models were removed)")
    return EXIT_ERROR if not comparison.checks else EXIT_AGREE if comparison.agrees else EXIT_DIFFER


if __name__ == "__main__":
    sys.exit(main())
