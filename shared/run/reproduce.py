"""Check the published numbers: train a deliverable again in a scratch folder and compare every
model's test metrics with the committed ``docs/<deliverable>/metrics.json``.

    nox -s reproduce -- deliverable1            (or deliverable2)
    python -m shared.run.reproduce deliverable1|deliverable2 [--smoke] [--data-dir D]
        [--reference FILE] [--candidate FILE] [--scratch DIR] [--tolerance REL] [--exact]

The run is ``python -m <deliverable>.train --data-dir D --models-dir <scratch>/models --out
<scratch>/out`` (the training entry point the report calls too), so the project's ``models/`` and
``docs/`` are never written. ``D`` is the usual data directory (``--data-dir``, else
``$AIRBNB_DATA_DIR``, else ``data/airbnb-madrid-10k``, fetched first when it holds no dataset).
``--candidate FILE`` compares an existing ``metrics.json`` instead of training. Deliverable 2
trains its deliverable-1 references in the scratch folder too, unless ``--scratch`` names the
folder of an earlier ``reproduce deliverable1`` run (as the published report reused them).

:func:`compare_metrics` compares ``models.<name>.test`` of both files: every number (``mae``,
``rmse``, ``mape``, ``medape``, ``r2_log`` and their 95% intervals) of every published model.

**Exact, or within a stated tolerance.** Every ``metrics.json`` records the machine it was made on:
``run.device`` (device, strategy, precision) and ``run.cpu`` (:func:`shared.environment.cpu_kind`: CPU model, family,
architecture, usable cores, vector instruction sets). On the same kind of machine TensorFlow and
scikit-learn run the same kernels in the same order, with the pinned versions and the fixed
seeds, so each metric must be *equal*. Elsewhere float kernels differ (another vector width sums
in another order, and training amplifies the difference), so each metric must lie within
:data:`DEFAULT_TOLERANCE` of the published value: 3% of it, and at least 0.01 apart allowed (for
R² near 0). A reference that does not record its CPU gets the tolerance. The output says which
rule applies and why; ``--exact`` demands equality anyway.

Exit status: 0 when the metrics agree, 1 when one differs (each is named), 2 when no comparison
could be made (no reference file, the training run failed).
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

DELIVERABLES = ("deliverable1", "deliverable2")
EXIT_AGREE, EXIT_DIFFER, EXIT_ERROR = 0, 1, 2
#: The point metrics, in the order of the table; the ``*_ci95`` intervals share one column.
POINT_METRICS = ("mae", "rmse", "mape", "medape", "r2_log")
CI_COLUMN = "95% intervals"
MAX_FAILURES_LISTED = 20


# --------------------------------------------------------------------------- the machine


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


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Tolerance:
    """``|this run - published| <= max(relative * |published|, absolute)``."""

    relative: float = 0.03
    absolute: float = 0.01

    def allows(self, reference: float, candidate: float) -> bool:
        return abs(candidate - reference) <= max(self.relative * abs(reference), self.absolute)

    def describe(self) -> str:
        return (f"each test metric within {self.relative * 100:g}% of the published value "
                f"(at least {self.absolute:g} apart allowed)")


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Difference:
    """One published number and this run's: ``status`` is ``equal``, ``within`` (the
    tolerance), ``differs`` or ``missing`` (absent from this run)."""

    model: str
    metric: str
    reference: float | None
    candidate: float | None
    status: str

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "missing")

    @property
    def column(self) -> str:
        return CI_COLUMN if "_ci95" in self.metric else self.metric

    def delta(self) -> str:
        """``+0.0123 (+0.10%)``: this run minus the published value."""
        diff = self.candidate - self.reference
        relative = f" ({diff / abs(self.reference):+.2%})" if self.reference else ""
        return f"{diff:+.4g}{relative}"


@dataclass
class Comparison:
    """The outcome of :func:`compare_metrics`."""

    exact: bool
    why: str
    tolerance: Tolerance
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_models: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Difference]:
        return [item for item in self.differences if item.failed]

    @property
    def agrees(self) -> bool:
        return bool(self.differences) and not self.failures

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(item.model for item in self.differences))


def compare_metrics(reference: dict, candidate: dict, *, exact: bool | None = None,
                    tolerance: Tolerance = DEFAULT_TOLERANCE) -> Comparison:
    """Compare the test metrics of every published model (``reference["models"]``) with this
    run's (``candidate``), two ``metrics.json`` contents.

    ``exact``: None decides from the machines (:func:`same_machine_kind`), True demands
    equality, False allows ``tolerance``. Models only this run has are listed, not compared.
    """
    reference_run, candidate_run = reference.get("run") or {}, candidate.get("run") or {}
    same, why = same_machine_kind(reference_run, candidate_run)
    if exact is None:
        exact = same
    elif exact:
        why = f"--exact asked ({why})"
    else:
        why = f"a tolerance asked ({why})"
    comparison = Comparison(exact, why, tolerance, notes=_notes(reference, candidate))
    candidate_models = candidate.get("models") or {}
    for model, record in (reference.get("models") or {}).items():
        published = record.get("test") or {}
        mine = dict(_numbers((candidate_models.get(model) or {}).get("test")))
        for metric, value in _numbers(published):
            other = mine.get(metric)
            comparison.differences.append(
                Difference(model, metric, value, other, _status(value, other, exact, tolerance)))
    comparison.extra_models = [name for name in candidate_models
                               if name not in (reference.get("models") or {})]
    return comparison


def _numbers(metrics: dict | None) -> list[tuple[str, float]]:
    """``[(name, value)]`` of a test-metrics dict; interval bounds as ``mae_ci95[0]`` ..."""
    out = []
    for name, value in (metrics or {}).items():
        if isinstance(value, (list, tuple)):
            out += [(f"{name}[{index}]", float(item)) for index, item in enumerate(value)
                    if isinstance(item, (int, float))]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((name, float(value)))
    return out


def _status(reference: float, candidate: float | None, exact: bool,
            tolerance: Tolerance) -> str:
    if candidate is None:
        return "missing"
    if candidate == reference or (math.isnan(candidate) and math.isnan(reference)):
        return "equal"
    if not exact and tolerance.allows(reference, candidate):
        return "within"
    return "differs"


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
    for key in ("smoke", "budget"):  # a run records its budget once it has several
        if key in ref_run and key in cand_run and ref_run[key] != cand_run[key]:
            notes.append(f"the published run has {key}={ref_run[key]}, this run "
                         f"{key}={cand_run[key]}")
    return notes


# --------------------------------------------------------------------------- output


def format_comparison(comparison: Comparison, reference_label: str,
                      candidate_label: str) -> str:
    """The table (models x metrics: ``equal`` or by how much this run differs), the rule
    applied, every failing number and the verdict."""
    lines = [f"published: {reference_label}", f"this run:  {candidate_label}"]
    rule = ("exact: every test metric must be equal" if comparison.exact
            else f"within a tolerance: {comparison.tolerance.describe()}")
    lines += [f"comparison: {rule}", f"  because {comparison.why}"]
    lines += [f"note: {note}" for note in comparison.notes]
    lines += ["", *_table(comparison), ""]
    for item in comparison.failures[:MAX_FAILURES_LISTED]:
        if item.status == "missing":
            lines.append(f"  {item.model} test {item.metric}: published {item.reference!r}, "
                         "absent from this run")
        else:
            rule = "must be equal" if comparison.exact else "outside the tolerance"
            lines.append(f"  {item.model} test {item.metric}: published {item.reference!r}, "
                         f"this run {item.candidate!r} ({item.delta()}): {rule}")
    if len(comparison.failures) > MAX_FAILURES_LISTED:
        lines.append(f"  ... and {len(comparison.failures) - MAX_FAILURES_LISTED} more")
    if comparison.extra_models:
        lines.append(f"  not in the published metrics, not compared: "
                     f"{', '.join(comparison.extra_models)}")
    lines.append(_verdict(comparison))
    return "\n".join(lines)


def _table(comparison: Comparison) -> list[str]:
    columns = [name for name in (*POINT_METRICS, CI_COLUMN)
               if any(item.column == name for item in comparison.differences)]
    columns += list(dict.fromkeys(item.column for item in comparison.differences
                                  if item.column not in columns))
    rows = [["model", *columns]]
    for model in comparison.models:
        cells = [model]
        for column in columns:
            items = [item for item in comparison.differences
                     if item.model == model and item.column == column]
            cells.append(_cell(items))
        rows.append(cells)
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _cell(items: list[Difference]) -> str:
    if not items:
        return "-"
    if any(item.status == "missing" for item in items):
        return "MISSING"
    unequal = [item for item in items if item.status != "equal"]
    if not unequal:
        return "equal"
    worst = max(unequal, key=lambda item: abs(item.candidate - item.reference)
                / max(abs(item.reference), 1e-12))
    return worst.delta() + (" FAIL" if any(item.failed for item in unequal) else "")


def _verdict(comparison: Comparison) -> str:
    total, models = len(comparison.differences), len(comparison.models)
    if not total:
        return "NO COMPARISON: the published metrics hold no model test metrics"
    failures = comparison.failures
    if failures:
        named = list(dict.fromkeys(f"{item.model} {item.metric.split('[')[0]}"
                                   for item in failures))
        shown = ", ".join(named[:8]) + (f", ... ({len(named) - 8} more)" if len(named) > 8 else "")
        return (f"DIFFER: {len(failures)} of {total} test metrics of the {models} published "
                f"models ({shown})")
    equal = sum(item.status == "equal" for item in comparison.differences)
    if equal == total:
        return f"AGREE: all {total} test metrics of the {models} published models are equal"
    return (f"AGREE within the tolerance: {equal} of {total} test metrics of the {models} "
            f"published models equal, {total - equal} within it")


# --------------------------------------------------------------------------- command line


class ReproduceError(Exception):
    """No comparison could be made (exit 2)."""


def train_into_scratch(deliverable: str, data_dir: Path, scratch: Path, smoke: bool) -> Path:
    """Run ``python -m <deliverable>.train`` with models and metrics in ``scratch``; return the
    new ``metrics.json``."""
    scratch = scratch.resolve()
    models, out = scratch / "models", scratch / "out"
    protected = (environment.PROJECT_ROOT.resolve(), environment.DOCS_DIR.resolve(),
                 environment.DEFAULT_MODELS_DIR.resolve())
    if scratch in protected or any(top in scratch.parents for top in protected[1:]):
        raise ReproduceError(f"--scratch {scratch} would write into the project's models/ or "
                             "docs/: choose a folder outside them")
    metrics = out / "metrics.json"
    metrics.unlink(missing_ok=True)  # never compare a stale file
    command = [sys.executable, "-m", f"{deliverable}.train", "--data-dir", str(data_dir),
               "--models-dir", str(models), "--out", str(out), *(["--smoke"] if smoke else [])]
    print("training: " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=environment.PROJECT_ROOT)
    if done.returncode != 0 or not metrics.is_file():
        raise ReproduceError(f"{deliverable}.train failed (exit {done.returncode}); nothing to "
                             "compare")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.run.reproduce", description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 the metrics agree, 1 a metric differs, 2 no comparison possible")
    parser.add_argument("deliverable", choices=DELIVERABLES)
    parser.add_argument("--smoke", action="store_true",
                        help="train with the smoke budget (needs --reference: nothing smoke-sized "
                             "is published)")
    parser.add_argument("--data-dir", help="dataset directory (default: $AIRBNB_DATA_DIR, else "
                                           "data/airbnb-madrid-10k, fetched when absent)")
    parser.add_argument("--reference", type=Path,
                        help="the published metrics.json (default: docs/<deliverable>/)")
    parser.add_argument("--candidate", type=Path,
                        help="compare this metrics.json instead of training")
    parser.add_argument("--scratch", type=Path,
                        help="folder for the run's models/ and out/ (kept; default: a new "
                             "temporary folder, its models removed at the end)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE.relative,
                        help="relative tolerance off the published machine kind (default 0.03)")
    parser.add_argument("--exact", action="store_true",
                        help="demand equal metrics whatever the machine")
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
    if not reference_path.is_file():
        raise ReproduceError(f"no published metrics at {reference_path}")
    reference = json.loads(reference_path.read_text(encoding="utf-8"))
    temporary = None
    if args.candidate is not None:
        candidate_path = args.candidate
    else:
        data_dir = ensure_data(args.data_dir)
        scratch = args.scratch
        if scratch is None:
            scratch = temporary = Path(tempfile.mkdtemp(prefix=f"airbnb-dl-reproduce-"
                                                               f"{args.deliverable}-"))
        candidate_path = train_into_scratch(args.deliverable, data_dir, scratch, args.smoke)
    candidate = json.loads(Path(candidate_path).read_text(encoding="utf-8"))
    comparison = compare_metrics(reference, candidate, exact=True if args.exact else None,
                                 tolerance=Tolerance(relative=args.tolerance))
    print(format_comparison(comparison, str(reference_path), str(candidate_path)))
    if temporary is not None:
        shutil.rmtree(temporary / "models", ignore_errors=True)
        print(f"(this run's metrics.json is kept in {candidate_path}; its models were removed)")
    return EXIT_AGREE if comparison.agrees else EXIT_DIFFER


if __name__ == "__main__":
    sys.exit(main())
