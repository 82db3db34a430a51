"""Render a report: jupytext percent-format ``.py`` -> executed ``.ipynb`` + ``.html`` + ``metrics.json``.

The ``.py`` script is the source of truth (readable, diffable). :func:`render_report` turns it into
a notebook, injects parameters after the cell tagged ``parameters`` (papermill convention),
executes it with nbclient in the project's Python, and only when every cell succeeded moves the
results into the output folder. A failing cell raises :class:`ReportError` and leaves the
previously rendered report untouched (the failed notebook is kept in a temporary folder for
inspection).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from shared import config


def quiet_notebook() -> None:
    """Keep a rendered report free of library noise; call it first in a report's setup cell.

    TensorFlow's C++ logs are limited to fatal errors, and TensorFlow is imported with the
    process's stderr (file descriptor 2) sent to /dev/null: the lines it writes *before* its log
    settings apply (oneDNN notes, "failed call to cuInit" on a machine without a GPU) bypass
    ``TF_CPP_MIN_LOG_LEVEL``. An import failure still raises its Python exception. Deprecation
    and user warnings, tqdm's note that notebook widgets are missing, and TensorFlow's Python
    warnings (retracing notes) are ignored.
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
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing notes


class ReportError(RuntimeError):
    """A report cell failed; the message names the cell and the error."""


def _parameter_cell(parameters: dict):
    import nbformat

    lines = ["# Parameters injected by shared.reporting.render_report"]
    lines += [f"{key} = {value!r}" for key, value in parameters.items()]
    return nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})


def build_notebook(script: Path, parameters: dict):
    """Read the jupytext script and insert the parameter cell after the ``parameters`` cell."""
    import jupytext

    notebook = jupytext.read(script, fmt="py:percent")
    index = next((i for i, cell in enumerate(notebook.cells)
                  if "parameters" in cell.get("metadata", {}).get("tags", [])), None)
    position = 0 if index is None else index + 1
    notebook.cells.insert(position, _parameter_cell(parameters))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def _progress_hook(notebook, start: float):
    """Print one line per code cell as it starts: long reports show where they are."""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]

    def hook(cell, cell_index):
        if cell.cell_type != "code":
            return
        number = next((i for i, c in enumerate(code_cells, 1) if c is cell), 0)
        first = next((line for line in cell.source.splitlines()
                      if line.strip() and not line.startswith("#")), "")
        print(f"[{time.perf_counter() - start:6.0f} s] cell {number}/{len(code_cells)}: {first[:70]}",
              flush=True)

    return hook


def render_report(script: Path, out_dir: Path, parameters: dict, timeout: int = 3600) -> dict:
    """Execute ``script`` and write ``<stem>.ipynb``, ``<stem>.html`` (+ whatever the report wrote
    into its ``output_dir`` parameter, e.g. ``metrics.json``) into ``out_dir``.

    The report receives ``output_dir`` (a staging folder) in its parameters. Returns a summary
    dict with the written paths and the seconds taken.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    script, out_dir = Path(script), Path(out_dir)
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f"report-{script.parent.name}-"))
    notebook = build_notebook(script, {**parameters, "output_dir": str(staging)})
    env_python = os.path.dirname(sys.executable)
    if env_python not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = env_python + os.pathsep + os.environ.get("PATH", "")
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(config.PROJECT_ROOT)}},
                            on_cell_start=_progress_hook(notebook, start))
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = staging / f"{script.stem}.failed.ipynb"
        nbformat.write(notebook, failed)
        raise ReportError(f"{script}: a cell failed; the previous report in {out_dir} is kept. "
                          f"Executed notebook: {failed}\n{exc}") from None
    stem = script.stem
    nbformat.write(notebook, staging / f"{stem}.ipynb")
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    (staging / f"{stem}.html").write_text(html, encoding="utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item in sorted(staging.iterdir()):
        target = out_dir / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target)
        else:
            tmp = out_dir / f".{item.name}.tmp"
            shutil.copyfile(item, tmp)
            os.replace(tmp, target)
        written.append(str(target))
    shutil.rmtree(staging, ignore_errors=True)
    return {"written": written, "seconds": time.perf_counter() - start}
