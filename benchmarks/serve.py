"""Figures ``serve`` and ``serve_startup``: the price-estimate page (``airbnb-dl serve``).

``serve``: the latency of one estimate as a person's browser sees it (an HTTP POST of the form
and a synthetic 640 x 427 JPEG to ``/api/estimate`` on 127.0.0.1: upload, photo decode and
check, features, both models, the answer), sequential requests after start-up; median and 95th
percentile. The goal is the issue's: every estimate within a second, so the ratio is the 95th
percentile over the 1 s budget.

``serve_startup``: from starting the ``airbnb-dl serve`` process to its first answer on
``/healthz`` (imports, both models and the backbone loaded, the training listings read, one
warm-up estimate), beside one ``airbnb-dl predict`` of the same listing with the fusion model,
which pays most of that start-up for every listing it is asked about. No goal (reported).

The models are the trained models folder (``models/``, with ``picks.json``) in a full run when it
exists; otherwise (and in a quick run) stand-ins trained with the smoke budget on the run's rows
in the work folder: hgb (tabular) and transfer_frozen (backbone features of the photo) at the
smoke input size, which the figure says.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.harness import bounded_dataset, figure, fmt, median_of, ratio_of, run_child
from shared import environment

if TYPE_CHECKING:
    from benchmarks.harness import Settings

BUDGET_MS = 1000.0
STAND_IN_PICKS = {"fusion": "transfer_frozen", "tabular": "hgb"}
PHOTO_SIZE = (640, 427)  # a typical listing photo's size, pixels


def requests_for(settings: Settings) -> int:
    """Timed estimates: 50 (the issue's count), 10 in a quick run."""
    return 10 if settings.quick else 50


def models_for(data_dir: Path, settings: Settings, workdir: Path) -> tuple[Path, str]:
    """(models folder, how it was obtained): ``models/`` with picks.json in a full run, else
    smoke-trained stand-ins on the first ``settings.max_rows`` rows of ``data_dir``."""
    real = environment.resolve_models_dir()
    if not settings.quick and (real / "picks.json").is_file():
        return real, f"the trained models folder ({real.name}/, picks.json)"
    from shared.run.start import prepare

    rows = bounded_dataset(data_dir, workdir, settings.max_rows)
    models = workdir / "serve-models"
    prepare(rows["data_dir"], models, smoke=True).train(list(STAND_IN_PICKS.values()))
    (models / "picks.json").write_text(json.dumps(STAND_IN_PICKS))
    return models, (f"smoke-trained stand-ins ({' + '.join(STAND_IN_PICKS.values())}, "
                    f"{rows['rows']} rows): `nox -s deliverable2` first for the real picks")


def synthetic_photo() -> bytes:
    """A gradient JPEG of :data:`PHOTO_SIZE` (no listing photo)."""
    from PIL import Image

    w, h = PHOTO_SIZE
    x, y = np.linspace(0, 255, w)[None, :], np.linspace(0, 255, h)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, 255 - (x + y) / 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(models: Path, data_dir: Path, log: Path, timeout: float = 900.0):
    """(process, base URL, start-up seconds): ``airbnb-dl serve`` started and answering."""
    import httpx2 as httpx

    port = free_port()
    handle = open(log, "w")  # noqa: SIM115 - kept open for the server's life, closed by stop()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "serve", "--models-dir",
                             str(models), "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=handle, stderr=subprocess.STDOUT, cwd=environment.PROJECT_ROOT)
    proc.log_handle = handle
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            handle.close()
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-10:])
            raise RuntimeError(f"airbnb-dl serve exited ({proc.returncode}):\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"airbnb-dl serve did not answer within {timeout:.0f} s")


def stop(proc) -> None:
    """End the server this module started (its own process only)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_handle.close()


def defaults(url: str) -> dict[str, str]:
    """The form at its defaults, as the page first shows it (from ``/api/form``)."""
    import httpx2 as httpx

    answers = {}
    for f in httpx.get(f"{url}/api/form", timeout=30, trust_env=False).json()["fields"]:
        if f["kind"] == "flag":
            if f.get("default"):
                answers[f["key"]] = "on"
        else:
            answers[f["key"]] = "" if f.get("default") is None else str(f["default"])
    return answers


def timed_estimates(url: str, n: int, photo: bytes) -> tuple[list[float], dict]:
    """Wall milliseconds of ``n`` sequential estimates (the server's own seconds in the answer
    are not used), and the last answer."""
    import httpx2 as httpx

    answers, times, answer = defaults(url), [], {}
    with httpx.Client(timeout=120, trust_env=False) as client:
        for _ in range(n):
            start = time.perf_counter()
            response = client.post(f"{url}/api/estimate", data=answers,
                                   files={"photo": ("room.jpg", photo, "image/jpeg")})
            times.append(1000 * (time.perf_counter() - start))
            response.raise_for_status()
            answer = response.json()
    return times, answer


def predict_seconds(models: Path, fusion: str, answer: dict, photo: bytes, workdir: Path) -> float:
    """Wall seconds of ``airbnb-dl predict`` with the fusion model on the page's listing."""
    data = workdir / "serve-listing"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "listings.csv").write_text(answer["csv"], encoding="utf-8")
    (data / "images" / "1.jpg").write_bytes(photo)
    args = ["-m", "shared.cli", "predict", "--model", str(models / fusion), "--data-dir",
            str(data), "--out", str(workdir / "serve-predictions.csv")]
    return run_child(args, workdir / "serve-predict.log")["wall_s"]


def run(data_dir: Path, settings: Settings, workdir: Path) -> list[dict]:
    """Both figures: start the server, time the estimates, stop it, time one predict."""
    models, origin = models_for(data_dir, settings, workdir)
    picks = json.loads((models / "picks.json").read_text())
    photo = synthetic_photo()
    proc, url, startup = start_server(models, data_dir, workdir / "serve.log")
    try:
        times, answer = timed_estimates(url, requests_for(settings), photo)
    finally:
        stop(proc)
    predict = predict_seconds(models, picks["fusion"], answer, photo, workdir)
    p95 = float(np.percentile(times, 95))
    details = {"picks": picks, "models": origin, "requests": len(times), "p95_ms": p95,
               "max_ms": max(times), "startup_s": startup, "predict_s": predict,
               "photo_px": list(PHOTO_SIZE), "photo_bytes": len(photo),
               "server_seconds_last": answer.get("seconds")}
    data = (f"the form's choices, map and similar listings from the models' training rows of "
            f"`{Path(data_dir).name}`; models: {origin}")
    latency = figure(
        "serve", "Price-estimate page: latency of one estimate (airbnb-dl serve)",
        {"label": f"median of {len(times)} estimates", "value": median_of(times), "unit": "ms",
         "runs": [round(t, 1) for t in times]},
        {"label": "budget per estimate", "value": BUDGET_MS, "unit": "ms", "runs": [BUDGET_MS]},
        ratio_of(p95, BUDGET_MS), "95th percentile / 1 s budget", details=details, data=data,
        notes=[f"Fusion model {picks['fusion']}, tabular model {picks['tabular']}; each estimate "
               f"is an HTTP POST of the form at its defaults and a {PHOTO_SIZE[0]} x "
               f"{PHOTO_SIZE[1]} synthetic JPEG, timed by the client on the same machine."])
    startup_fig = figure(
        "serve_startup", "Price-estimate page: start-up (airbnb-dl serve)",
        {"label": "start to first answer", "value": startup, "unit": "s", "runs": [round(startup, 1)]},
        {"label": f"one airbnb-dl predict ({picks['fusion']}, same listing)", "value": predict,
         "unit": "s", "runs": [round(predict, 1)]},
        ratio_of(startup, predict), "start-up / one predict run", details=details, data=data,
        notes=["Start-up loads both models, the backbone and the training listings once and runs "
               "one warm-up estimate; `airbnb-dl predict` pays its imports and loading for every "
               "call. One run each."])
    return [latency, startup_fig]


def section(fig: dict) -> list[str]:
    """Markdown details: the latency distribution."""
    d = fig["details"]
    if fig["id"] != "serve":
        return []
    return [f"95th percentile {fmt(d['p95_ms'], 'ms')}, slowest {fmt(d['max_ms'], 'ms')} over "
            f"{d['requests']} estimates; start-up {fmt(d['startup_s'], 's', 1)}.", ""]


def finding(fig: dict) -> str | None:
    """Why the latency goal was missed, from the run's own numbers."""
    if fig["id"] != "serve":
        return None
    d = fig["details"]
    return (f"The price-estimate page's 95th percentile was {fmt(d['p95_ms'], 'ms')} (median "
            f"{fmt(fig['measured']['value'], 'ms')}, the server's own last estimate "
            f"{fmt(1000 * (d.get('server_seconds_last') or 0), 'ms')}): the load average before "
            f"the figure was {fig.get('load_average', {}).get('before')} on "
            f"{os.cpu_count()} cores, and estimates run one at a time.")
