"""MkDocs hook: a results page per deliverable, generated at build time from its metrics.json.

Nothing is written into ``docs/``: the pages exist only inside the build (``File.generated``).
For each deliverable the page links the rendered report (``docs/<name>/report.html``, copied
into the site as a static file), shows the test and validation metrics of every model as tables
and embeds the report below them.

A missing report fails the build with an explicit message (render it with
``nox -s <deliverable>``); a missing or unreadable metrics.json only shows a notice, because the
report itself is the primary artefact.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

DELIVERABLES = {
    "deliverable1": "Deliverable 1: tabular MLP and image CNNs",
    "deliverable2": "Deliverable 2: fusion models",
}
REPORT = "report.html"
METRICS = "metrics.json"
RESULTS_DIR = "results"

METRIC_COLUMNS = [  # key in metrics.json, column header, decimals
    ("mae", "MAE (EUR)", 2),
    ("rmse", "RMSE (EUR)", 2),
    ("mape", "MAPE (%)", 1),
    ("medape", "MedAPE (%)", 1),
    ("r2_log", "R² (log price)", 3),
]


def on_config(config):
    docs_dir = Path(config["docs_dir"])
    missing = [f"docs/{name}/{REPORT}" for name in DELIVERABLES if not (docs_dir / name / REPORT).is_file()]
    if missing:
        commands = " and ".join(f"`nox -s {path.split('/')[1]}`" for path in missing)
        raise PluginError(
            f"missing rendered report(s): {', '.join(missing)}. Render them first with {commands} "
            "(add `-- --smoke` for a quick, non-final run), then build the docs again."
        )
    # Pages written by other parts of the project appear in the navigation when present.
    if (docs_dir / "benchmarks.md").is_file() and config["nav"] is not None:
        if not any("benchmarks.md" in json.dumps(item) for item in config["nav"]):
            config["nav"].append({"Benchmarks": "benchmarks.md"})
    return config


def on_files(files, config):
    docs_dir = Path(config["docs_dir"])
    for name, title in DELIVERABLES.items():
        content = render_results_page(name, title, docs_dir)
        files.append(File.generated(config, f"{RESULTS_DIR}/{name}.md", content=content))
    return files


# ---------------------------------------------------------------------------------------------


def _fmt(value, decimals: int) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "n/a"
        return f"{value:.{decimals}f}"
    return html.escape(str(value))


def _cell(metrics: dict, key: str, decimals: int) -> str:
    if key not in metrics:
        return ""
    text = _fmt(metrics[key], decimals)
    ci = metrics.get(f"{key}_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        text += f'<br><span class="ci">[{_fmt(ci[0], decimals)}, {_fmt(ci[1], decimals)}]</span>'
    return text


def _table(header: list[str], rows: list[list[str]], numeric: bool = True) -> str:
    escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    align = " ---: " if numeric else " --- "
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join([" --- "] + [align] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_tables(models: dict, split: str) -> str | None:
    """A markdown table: one row per model, the metrics of ``split`` with their 95% intervals."""
    rows = []
    extra_keys: list[str] = []
    for record in models.values():
        for key, value in (record.get(split) or {}).items():
            known = {k for k, _, _ in METRIC_COLUMNS}
            if key not in known and not key.endswith("_ci95") and isinstance(value, (int, float)) \
                    and key not in extra_keys:
                extra_keys.append(key)
    columns = [c for c in METRIC_COLUMNS if any(c[0] in (r.get(split) or {}) for r in models.values())]
    columns += [(key, key, 3) for key in extra_keys]
    if not columns:
        return None
    with_time = any("train_seconds" in r for r in models.values())
    for name, record in models.items():
        metrics = record.get(split) or {}
        row = [f"**{html.escape(name)}**"] + [_cell(metrics, key, dec) for key, _, dec in columns]
        if with_time:
            row.append(_fmt(record.get("train_seconds"), 1))
        rows.append(row)
    header = ["model"] + [label for _, label, _ in columns] + (["train (s)"] if with_time else [])
    return _table(header, rows)


def _key_values(data: dict, skip: tuple[str, ...] = ()) -> str:
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) if len(value) <= 10 else f"{len(value)} items"
        rows.append([key, _fmt(value, 3) if isinstance(value, float) else html.escape(str(value))])
    return _table(["", "value"], rows, numeric=False) if rows else ""


def render_results_page(name: str, title: str, docs_dir: Path) -> str:
    report_rel = f"../{name}/{REPORT}"  # markdown link, relative to results/<name>.md
    lines = [
        f"# {title}",
        "",
        f"[Open the full report]({report_rel}){{ .md-button .md-button--primary }}",
    ]
    metrics_path = docs_dir / name / METRICS
    if metrics_path.is_file():
        lines[-1] += f" [metrics.json](../{name}/{METRICS}){{ .md-button }}"
    lines.append("")
    lines.append(
        "Prices in this sample are truncated at 200 EUR a night (see the "
        "[data card](../data_card.md)); every metric below is in euros on the held-out rows, "
        "with 95% bootstrap intervals in brackets."
    )
    lines.append("")

    metrics = None
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            lines += [f'!!! failure "metrics.json unreadable"', f"    {html.escape(str(exc))}", ""]
    else:
        lines += ['!!! note "No metrics.json"',
                  f"    `docs/{name}/{METRICS}` is absent: the report below is all there is.", ""]

    if isinstance(metrics, dict):
        run = metrics.get("run") or {}
        if run.get("smoke"):
            lines += ['!!! warning "Smoke run"',
                      "    These numbers come from a quick smoke run (few epochs, small searches): "
                      "they check that the pipeline works and are not the project's results.", ""]
        models = metrics.get("models")
        if isinstance(models, dict) and models:
            for split, heading in (("test", "Test set"), ("val", "Validation set")):
                table = metrics_tables(models, split)
                if table:
                    lines += [f"## {heading}", "", table, ""]
        if run:
            lines += ["## Run", "", _key_values(run), ""]
        dataset = metrics.get("dataset")
        if isinstance(dataset, dict) and dataset:
            lines += ["## Data", "", _key_values(dataset), ""]
        others = {k: v for k, v in metrics.items() if k not in ("run", "models", "dataset")}
        for key, value in others.items():
            lines += [f"## {key}", "", "```json", json.dumps(value, indent=2, default=str)[:20000], "```", ""]

    lines += [
        "## Report",
        "",
        f'<iframe class="airbnb-dl-report" src="../{name}/{REPORT}" title="{html.escape(title)} report" '
        'loading="lazy" style="width:100%;height:80vh;border:1px solid #ddd"></iframe>',
        "",
    ]
    return "\n".join(lines)
