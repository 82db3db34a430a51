"""Render a report: jupytext percent-format ``.py`` -> executed ``.ipynb`` + ``.html`` + ``metrics.json``.

The ``.py`` script is the source of truth (readable, diffable). :func:`render_report` reads it with
jupytext and executes it with papermill, which injects the parameters in a cell after the one
tagged ``parameters``, shows a progress bar over the cells and streams each cell's output (the
training progress lines) to the console as it runs. Only when every cell succeeded are
the results moved into the output folder. The HTML page shows the Markdown and the outputs only,
titled by the report's first heading; the ``.ipynb`` keeps the code. A failing cell raises :class:`ReportError` and leaves
the previously rendered report untouched (the failed notebook is kept for inspection).

Paths handed to a report are written project-relative when they lie inside the project (or
relative to it, such as ``../shared/data/...``), so a committed notebook never shows the
absolute paths of the machine that rendered it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from shared import environment


def quiet_notebook() -> None:
    """Keep a rendered report free of library noise; call it first in a report's setup cell.

    TensorFlow's C++ logs are limited to fatal errors, and TensorFlow is imported with the
    process's stderr (file descriptor 2) sent to /dev/null: the lines it writes *before* its log
    settings apply (oneDNN notes, "failed call to cuInit" on a machine without a GPU) bypass
    ``TF_CPP_MIN_LOG_LEVEL``. TensorFlow's Python logger is set to errors only (its retracing
    notes are about speed, not results). An import failure still raises its Python exception.
    Deprecation and user warnings, and tqdm's note that notebook widgets are missing, are ignored.
    """
    import importlib
    import warnings

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message="IProgress not found")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            for module in ("tensorflow", "tqdm.auto"):
                importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


class ReportError(RuntimeError):
    """A report cell failed; the message names the cell and the error."""


def display_path(path) -> str:
    """``path`` as a report shows it: relative to the project root when it lies inside the
    project or beside it (``../shared/data/...``), otherwise absolute (e.g. the scratch folder of
    a smoke run, which is never committed)."""
    path = Path(path).resolve()
    relative = os.path.relpath(path, environment.PROJECT_ROOT)
    return relative if relative.split(os.sep).count("..") <= 1 else str(path)


def build_notebook(script: Path, parameters: dict):
    """Read the jupytext script and inject ``parameters`` after its ``parameters`` cell
    (papermill's own injection: a cell tagged ``injected-parameters``)."""
    import tempfile

    import jupytext
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    notebook = jupytext.read(script, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    with tempfile.TemporaryDirectory() as scratch:  # papermill loads notebooks from files
        path = Path(scratch) / f"{Path(script).stem}.ipynb"
        jupytext.write(notebook, path, fmt="ipynb")
        notebook = load_notebook_node(str(path))
    return parameterize_notebook(notebook, parameters, kernel_name="python3", language="python")


def _staging_dir(out_dir: Path) -> Path:
    """A fresh folder beside ``out_dir`` (same file system, so results move into place)."""
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _show_cell_output() -> None:
    """Print what papermill logs of each running cell (``log_output``) on the console."""
    log = logging.getLogger("papermill")
    if not any(getattr(h, "_airbnb_dl", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._airbnb_dl = True
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def move_stderr_to_log(notebook) -> str:
    """Remove every stderr stream (progress bars, library warnings) from the executed
    ``notebook`` in place and return it as text for a log file beside the report: a reader sees
    results, not training logs. Carriage-return progress lines keep their last state only."""
    lines = []
    for index, cell in enumerate(notebook.cells):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output.get("text", ""))
                for line in text.split("\n"):
                    last = line.split("\r")[-1].rstrip()
                    if last:
                        lines.append(f"[cell {index}] {last}")
            else:
                kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return "\n".join(lines) + ("\n" if lines else "")


def report_title(notebook) -> str:
    """The text of the notebook's first level-1 Markdown heading ("Report" without one): the
    HTML page's title, so a browser tab names the deliverable."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "Report"


def notebook_html(notebook) -> str:
    """The report's HTML page, as nbconvert's lab template renders ``notebook``, showing what a
    reader needs: Markdown and cell outputs, no code and no prompts (the code stays in the
    ``.ipynb`` beside it and in the ``.py`` script). Titled by :func:`report_title`."""
    from nbconvert import HTMLExporter

    notebook.metadata["title"] = report_title(notebook)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(notebook)
    return html


def render_report(script: Path, out_dir: Path, parameters: dict, timeout: int = 3600) -> dict:
    """Execute ``script`` and write ``<stem>.ipynb``, ``<stem>.html`` (+ whatever the report wrote
    into its ``output_dir`` parameter, e.g. ``metrics.json``) into ``out_dir``.

    The report receives ``output_dir`` (a staging folder beside ``out_dir``, shown
    project-relative) in its parameters and runs with the project root as working directory.
    Returns a summary dict with the written paths and the seconds taken.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    script, out_dir = Path(script), Path(out_dir).resolve()
    start = time.perf_counter()
    staging = _staging_dir(out_dir)
    notebook = build_notebook(script, {**parameters, "output_dir": display_path(staging)})
    env_python = os.path.dirname(sys.executable)
    if env_python not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = env_python + os.pathsep + os.environ.get("PATH", "")
    running = staging / f"{script.stem}.running.ipynb"  # papermill saves progress here
    _show_cell_output()
    try:
        notebook = papermill.execute_notebook(
            notebook, str(running), kernel_name="python3", language="python",
            progress_bar=True, log_output=True, cwd=str(environment.PROJECT_ROOT),
            execution_timeout=timeout)
    except PapermillExecutionError as exc:
        import tempfile

        keep = Path(tempfile.mkdtemp(prefix=f"report-{script.parent.name}-")) / f"{script.stem}.failed.ipynb"
        shutil.copyfile(running, keep)
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportError(f"{script}: a cell failed; the previous report in {out_dir} is kept. "
                          f"Executed notebook: {keep}\n{exc}") from None
    running.unlink()
    stem = script.stem
    # papermill records where it read and wrote: the script and the published notebook, shown
    # as the report shows paths (it would otherwise embed the whole input notebook and the
    # staging folder's absolute path)
    notebook.metadata.papermill.update(input_path=display_path(script),
                                       output_path=display_path(out_dir / f"{stem}.ipynb"))
    notebook.metadata["title"] = report_title(notebook)
    log_text = move_stderr_to_log(notebook)
    if log_text:
        (staging / f"{stem}.log").write_text(log_text, encoding="utf-8")
    nbformat.write(notebook, staging / f"{stem}.ipynb")
    (staging / f"{stem}.html").write_text(notebook_html(notebook), encoding="utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item in sorted(staging.iterdir()):
        target = out_dir / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target)
        else:
            os.replace(item, target)
        written.append(str(target))
    shutil.rmtree(staging, ignore_errors=True)
    return {"written": written, "seconds": time.perf_counter() - start}
