"""shared.reporting.notebook.render_report: jupytext script -> executed ipynb + html + report outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from fixtures import tree_state
from shared.reporting.notebook import ReportError, build_notebook, render_report

GOOD_SCRIPT = '''\
# %% [markdown]
# # Tiny report

# %% tags=["parameters"]
greeting = "default"
repeat = 1
output_dir = "."

# %%
import json
import pathlib

message = " ".join([greeting] * repeat)
pathlib.Path(output_dir, "metrics.json").write_text(json.dumps({"message": message}))
print("MESSAGE:", message)
'''

FAILING_SCRIPT = '''\
# %% tags=["parameters"]
output_dir = "."

# %%
import pathlib
pathlib.Path(output_dir, "metrics.json").write_text("{}")

# %%
raise RuntimeError("boom from the report")
'''


@pytest.fixture
def keep_path(monkeypatch):
    """render_report prepends the interpreter's folder to PATH; restore PATH afterwards."""
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))


def write_script(folder, text, name="report.py"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_parameters_are_injected_after_the_parameters_cell(tmp_path):
    notebook = build_notebook(write_script(tmp_path / "src", GOOD_SCRIPT), {"greeting": "hi"})
    sources = [cell.source for cell in notebook.cells]
    index = next(i for i, s in enumerate(sources) if s.startswith('greeting = "default"'))
    assert sources[index + 1].splitlines()[1:] == ['greeting = "hi"']  # papermill's format
    assert "injected-parameters" in notebook.cells[index + 1].metadata["tags"]


def test_render_report_writes_notebook_html_and_the_report_outputs(tmp_path, keep_path):
    script = write_script(tmp_path / "src", GOOD_SCRIPT)
    out = tmp_path / "docs"

    result = render_report(script, out, {"greeting": "hello", "repeat": 2}, timeout=120)

    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "report.ipynb"]
    assert sorted(result["written"]) == sorted(str(p) for p in out.iterdir())
    assert json.loads((out / "metrics.json").read_text()) == {"message": "hello hello"}
    notebook = nbformat.read(out / "report.ipynb", as_version=4)
    outputs = [o.get("text", "") for c in notebook.cells if c.cell_type == "code"
               for o in c.get("outputs", [])]
    assert any("MESSAGE: hello hello" in text for text in outputs)  # executed, with parameters
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Tiny report" in html and "MESSAGE: hello hello" in html
    assert result["seconds"] > 0


def test_the_html_page_shows_outputs_not_code_and_is_titled_by_the_first_heading(tmp_path, keep_path):
    out = tmp_path / "docs"
    render_report(write_script(tmp_path / "src", GOOD_SCRIPT), out, {"greeting": "hi"}, timeout=120)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>Tiny report</title>" in html
    assert "MESSAGE: hi" in html                                   # the output
    assert "write_text(json.dumps" not in html                     # not the code
    assert not re.search(r'class="[^"]*(jp-CodeMirrorEditor|hl-ipython3)', html)
    assert not re.search(r">(In&nbsp;|Out)\[[ 0-9]*\]:<", html)   # nor the prompts
    notebook = nbformat.read(out / "report.ipynb", as_version=4)
    assert any("write_text(json.dumps" in c.source for c in notebook.cells)  # the notebook keeps it
    assert notebook.metadata["title"] == "Tiny report"


def test_a_failing_cell_raises_and_leaves_the_previous_report_untouched(tmp_path, keep_path):
    out = tmp_path / "docs"
    out.mkdir()
    for name, text in {"report.ipynb": "old nb", "report.html": "old html",
                       "metrics.json": '{"old": true}'}.items():
        (out / name).write_text(text)
    before = tree_state(out)
    script = write_script(tmp_path / "src", FAILING_SCRIPT)

    with pytest.raises(ReportError) as info:
        render_report(script, out, {}, timeout=120)

    message = str(info.value)
    assert str(script) in message and "boom from the report" in message
    failed = Path(re.search(r"Executed notebook: (\S+)", message).group(1))
    assert failed.is_file() and failed.name == "report.failed.ipynb"  # kept for inspection
    shutil.rmtree(failed.parent)
    assert tree_state(out) == before
    assert (out / "metrics.json").read_text() == '{"old": true}'


def test_quiet_notebook_hides_tensorflow_start_up_lines_and_restores_stderr():
    import subprocess
    import sys

    code = ("import os, sys\n"
            "from shared.reporting.notebook import quiet_notebook\n"
            "quiet_notebook()\n"
            "import tensorflow as tf\n"
            "tf.constant(1.0) + 1.0\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
            "os.write(2, b'stderr still works\\n')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items()
                               if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert proc.stderr.strip() == "stderr still works"


def test_report_paths_are_project_relative_inside_or_beside_the_project(tmp_path):
    from shared import environment
    from shared.reporting.notebook import display_path

    root = environment.PROJECT_ROOT
    assert display_path(root / "models") == "models"
    # a folder beside the project (as ../shared/data is; a name that exists nowhere, so no
    # symlink on the test machine can move it)
    beside = root.parent / "airbnb-dl-sibling-for-test" / "data"
    assert display_path(beside) == os.path.join("..", "airbnb-dl-sibling-for-test", "data")
    far = Path("/") / "opt" / "elsewhere" / "run"
    assert display_path(far) == str(far)  # not a path relative to the project: shown as it is


def test_rendered_notebook_records_no_absolute_path_of_its_staging(tmp_path, keep_path):
    script = write_script(tmp_path / "src", GOOD_SCRIPT)
    out = tmp_path / "docs"
    render_report(script, out, {"greeting": "x"}, timeout=120)
    meta = nbformat.read(out / "report.ipynb", as_version=4).metadata.papermill
    assert isinstance(meta["input_path"], str) and meta["input_path"].endswith("report.py")
    assert meta["output_path"].endswith("report.ipynb") and "staging" not in meta["output_path"]


def test_stderr_moves_from_the_notebook_to_the_log():
    import nbformat

    from shared.reporting.notebook import move_stderr_to_log

    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                           text="features:  50%|#  \rfeatures: 100%|##\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="MAE 12.3\n")]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    log = move_stderr_to_log(notebook)
    assert log == "[cell 0] features: 100%|##\n"
    assert [o["name"] for o in notebook.cells[0].outputs] == ["stdout"]
