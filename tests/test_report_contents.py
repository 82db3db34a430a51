"""What the rendered reports show (issues: reports a grader reads in 15 minutes; the verdict on
the first screen).

Static checks of ``deliverable*/report.py`` (fast): its Markdown cells type no measured number
and stay within the prose budget; the figures module gives a model one colour in every figure.
Then both reports rendered on the smoke budget (deliverable 2 reusing deliverable 1's smoke
models, as the published reports do), and their sections checked: the first screen (title,
question, answer; no code, no output before the answer), the requirement map's links, the
architecture tables, the importance and the maps, the local-only photo grid, no stderr, no
machine path, the prose budget on what a reader sees.
"""

from __future__ import annotations

import json
import re
import sys
import subprocess
from pathlib import Path

import pytest

from shared import environment

REPORTS = ("deliverable1", "deliverable2")
MAX_PROSE_WORDS = 1500
#: A typed measurement: a decimal number (12.57), a percentage (3.1%), or a number followed by
#: EUR. Section numbers, years, model names (Lite0, 2 x 64) and counts in prose are not matched.
MEASUREMENT = re.compile(r"\b\d+\.\d+\b|\b\d+(\.\d+)?\s?%|\b\d+(\.\d+)?\s?EUR\b")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
#: Markup a reader does not read as words: HTML tags (section anchors) and link targets.
MARKUP = re.compile(r"<[^>]+>|\]\([^)]*\)")
#: Levels the reports are designed around (the nominal range coverage, the bootstrap interval):
#: settings, not measurements.
NOMINAL = {"80%", "95%"}
CODE_SPAN = re.compile(r"`[^`]*`")


def typed_measurements(text: str) -> list[str]:
    """The measured-looking numbers of a Markdown text, code spans and nominal levels aside."""
    return [m.group(0) for m in MEASUREMENT.finditer(CODE_SPAN.sub("", text))
            if m.group(0).replace(" ", "") not in NOMINAL]


def markdown_cells(script: Path) -> list[str]:
    """The Markdown cells of a jupytext percent script, comment markers removed."""
    cells = re.split(r"^# %%", script.read_text(encoding="utf-8"), flags=re.M)
    return ["\n".join(line[2:] for line in cell.splitlines()[1:])
            for cell in cells if cell.startswith(" [markdown]")]


@pytest.mark.parametrize("name", REPORTS)
def test_report_markdown_types_no_measurement(name):
    typed = [t for cell in markdown_cells(environment.PROJECT_ROOT / name / "report.py")
             for t in typed_measurements(cell)]
    assert typed == [], f"{name}/report.py Markdown types measured numbers: {typed}"


def test_the_measurement_pattern_catches_typed_numbers():
    for text in ("MAE 12.57 on test", "a 3.1% gain", "misses by 13 EUR", "covers 77% of them"):
        assert typed_measurements(text), text
    for text in ("EfficientNet-Lite0", "section 7", "Gorishniy et al. 2022", "top 15 columns",
                 "an 80% range", "`--coverage 0.8`", "95% bootstrap intervals"):
        assert not typed_measurements(text), text


def prose_words(text: str) -> int:
    """Words a reader reads in a Markdown text (tags and link targets aside)."""
    return len(WORD.findall(MARKUP.sub(" ", text)))


@pytest.mark.parametrize("name", REPORTS)
def test_report_script_prose_within_budget(name):
    words = sum(prose_words(c) for c in markdown_cells(environment.PROJECT_ROOT / name / "report.py"))
    assert words <= MAX_PROSE_WORDS


def test_prose_words_skip_anchors_and_link_targets():
    assert prose_words('<a id="data"></a>\n\n## 1. Data, see [the split](../methodology.html#data)') == 4


# --------------------------------------------------------------------------- one colour per model

def test_a_model_has_one_colour_from_the_registry_order():
    from shared.models import registry
    from shared.reporting import figures

    names = registry.names()
    colours = [figures.model_colour(n) for n in names]
    assert colours == list(figures.PALETTE[:len(names)])
    assert len(set(colours)) == len(colours)                      # every model its own colour
    assert figures.REVERTED not in colours                         # grey is for reverted phases
    extra = figures.model_colour("a_test_model")
    assert extra in figures.EXTRA and extra == figures.model_colour("a_test_model")


def test_a_model_has_the_same_colour_in_two_figures():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from shared.reporting import figures

    def record(mae):
        return {"test": {"mae": mae, "mae_ci95": [mae - 1, mae + 1]}}

    paired = {"mae_diff": -0.5, "mae_diff_ci95": [-1.0, 0.1], "p_a_better": 0.9}
    bars = figures.plot_mae_with_intervals({"hgb": record(12.0), "blend": record(11.0)})
    forest = figures.plot_paired_differences({"blend": paired, "hgb": paired}, "mlp")
    for fig in (bars, forest):
        drawn = {to_hex(line.get_color()) for line in fig.axes[0].lines}
        assert {figures.model_colour("hgb"), figures.model_colour("blend")} <= drawn
        matplotlib.pyplot.close(fig)


# --------------------------------------------------------------------------- rendered

@pytest.fixture(scope="module")
def rendered(tmp_path_factory, real_data_dir) -> dict:
    """Both reports rendered on the smoke budget with one models folder: {name: (notebook, out)}."""
    root = tmp_path_factory.mktemp("reports")
    models = root / "models"
    out = {}
    for name in REPORTS:
        target = root / name
        subprocess.run([sys.executable, "-m", "shared.cli", "report", name, "--smoke",
                        "--data-dir", str(real_data_dir), "--models-dir", str(models),
                        "--out", str(target)], check=True, cwd=environment.PROJECT_ROOT,
                       capture_output=True)
        out[name] = (json.loads((target / "report.ipynb").read_text()), target)
    out["models"] = models
    return out


def _outputs(notebook):
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            yield cell, output


def _figures_after(notebook, code: str) -> int:
    """Figures output by the code cells whose source contains ``code``."""
    return sum("image/png" in o.get("data", {}) for c, o in _outputs(notebook)
               if code in "".join(c["source"]))


def _reader_words(notebook) -> int:
    words = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            words += prose_words("".join(cell["source"]))
    for _, output in _outputs(notebook):
        words += prose_words("".join(output.get("data", {}).get("text/markdown", "")))
    return words


def _html(rendered, name) -> str:
    return (rendered[name][1] / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_rendered_report_sections(rendered, name):
    notebook, out = rendered[name]
    text = json.dumps(notebook)
    assert "## The answer" in text
    # the answer's computed lines come first, before any section of detail
    first_markdown_output = next(o for _, o in _outputs(notebook) if "text/markdown" in o.get("data", {}))
    assert "**" in "".join(first_markdown_output["data"]["text/markdown"])
    assert "output_shape" in text and "weights" in text          # architecture tables
    assert _figures_after(notebook, "price_and_residual_maps") >= 1   # the map
    assert _figures_after(notebook, "plot_group_differences") >= 1    # errors by neighbourhood
    assert _figures_after(notebook, "plot_learning_curves") >= 1
    assert "photo grid (local, not published)" in text
    assert _reader_words(notebook) <= MAX_PROSE_WORDS
    assert not [o for _, o in _outputs(notebook) if o.get("name") == "stderr"]
    assert not [o for _, o in _outputs(notebook) if o.get("output_type") == "error"]
    shown = json.dumps([o for _, o in _outputs(notebook)])  # what a reader sees (not the
    assert str(rendered["models"].parent) not in shown   # injected parameters cell)
    assert str(Path.home()) not in shown
    figures = sum("image/png" in o.get("data", {}) for _, o in _outputs(notebook))
    assert figures >= {"deliverable1": 10, "deliverable2": 8}[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_the_first_screen_is_the_question_and_the_answer(rendered, name):
    """Title, question, the answer: nothing is output before the answer, no code is on the page,
    and the page title names the deliverable."""
    notebook, _ = rendered[name]
    cells = notebook["cells"]
    answer = next(i for i, c in enumerate(cells) if "## The answer" in "".join(c["source"]))
    assert "**Question.**" in "".join(cells[0]["source"])
    assert not [o for c in cells[:answer] for o in c.get("outputs", [])]
    first = "".join(cells[answer + 1]["outputs"][0]["data"]["text/markdown"])
    assert first.startswith("- **" if name == "deliverable1" else "**Does the photo help?")
    html = _html(rendered, name)
    number = name[-1]
    assert re.search(r"<title>Deliverable " + number + r": [^<]+</title>", html)
    assert not re.search(r'class="[^"]*(jp-CodeMirrorEditor|hl-ipython3)', html)
    assert "result = train.run" not in html and "run = d2.run" not in html
    assert "import matplotlib" not in html
    assert html.index("Question.") < html.index("The answer") < html.index('class="jp-OutputArea')
    assert 'href="report.ipynb"' in html                          # the code, one click away


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_the_requirement_map_links_resolve(rendered, name):
    html = _html(rendered, name)
    targets = re.findall(r'href="#([^"]+)"', html)
    anchors = set(re.findall(r'id="([^"]+)"', html))
    assert len([t for t in targets if not t.startswith(("1.", "2.", "3.", "4.", "5.", "6.", "7.",
                                                        "8.", "9."))]) >= 5
    assert [t for t in targets if t not in anchors] == []


@pytest.mark.slow
def test_deliverable2_shows_the_controls_and_the_ties_beside_the_answer(rendered):
    notebook, _ = rendered["deliverable2"]
    cells = notebook["cells"]
    answer = next(i for i, c in enumerate(cells) if "## The answer" in "".join(c["source"]))
    beside = json.dumps(cells[answer:answer + 6])
    assert "blend vs tabular_blend" in beside and "early_fusion vs mlp" in beside
    assert "runner-up" in beside
    assert "adopted after" in beside                               # the selection-rule note


@pytest.mark.slow
def test_deliverable1_shows_importance_and_what_the_photo_model_looks_at(rendered):
    notebook, _ = rendered["deliverable1"]
    assert _figures_after(notebook, "permutation_importance") >= 1
    assert _figures_after(notebook, "photo_sensitivity") >= 1
    assert "features.input_table" in json.dumps(notebook)


@pytest.mark.slow
def test_listing_photos_stay_local(rendered):
    """The photo grids are written under the models folder, never beside the published report."""
    grids = sorted((rendered["models"] / "figures").rglob("*.png"))
    assert {g.parent.name for g in grids} == set(REPORTS)
    for name in REPORTS:
        _, out = rendered[name]
        assert not list(out.rglob("*.png"))


@pytest.mark.slow
def test_metrics_record_params_and_stopped_by_for_every_network(rendered):
    for name in REPORTS:
        _, out = rendered[name]
        metrics = json.loads((out / "metrics.json").read_text())
        for model, record in metrics["models"].items():
            if record.get("architecture"):
                assert record["n_params"] > 0, model
                if "closed form" in str(record["params"].get("head", "")):
                    continue  # solved, not trained: no epochs to stop (transfer_frozen's probe)
                assert record["params"].get("stopped_by") in ("early_stopping", "epoch_limit"), model
