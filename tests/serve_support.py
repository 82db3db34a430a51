"""What the tests of ``airbnb-dl serve`` share: a smoke-trained models folder (made once per test
session), synthetic photos (never a listing photo), an estimator per pair of models, and a live
server on 127.0.0.1.

The models are trained with the smoke budget on the first :data:`ROWS` listings of the real
dataset (``$AIRBNB_DATA_DIR``; photos linked, nothing copied into the repository): ``hgb``
(tabular), ``transfer_frozen`` (backbone features of the photo) and ``cnn_scratch`` (the photo
end to end), with ``picks.json`` naming transfer_frozen and hgb.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

ROWS = 200
MODELS = ("hgb", "transfer_frozen", "cnn_scratch")
PICKS = {"fusion": "transfer_frozen", "tabular": "hgb"}


@functools.cache
def smoke_models(real_data_dir: str) -> tuple[Path, Path]:
    """(models folder, data folder): :data:`MODELS` trained once per session, picks.json written."""
    from benchmarks.harness import replicate_dataset
    from shared.run.devices import configure_determinism
    from shared.run.start import prepare

    root = Path(tempfile.mkdtemp(prefix="airbnb-dl-serve-test-"))
    atexit.register(shutil.rmtree, root, True)
    data = Path(replicate_dataset(real_data_dir, root / "data", 1, rows=ROWS)["data_dir"])
    configure_determinism(42)
    exp = prepare(data, root / "models", smoke=True)
    exp.train(list(MODELS))
    (root / "models" / "picks.json").write_text(json.dumps(PICKS))
    return root / "models", data


@functools.cache
def estimator_for(real_data_dir: str, fusion: str = PICKS["fusion"]):
    """A loaded :class:`~shared.cli.serve.estimate.Estimator` (fusion model ``fusion``, tabular
    hgb), one per session and pair."""
    from shared.cli.serve.estimate import build_estimator

    models, data = smoke_models(real_data_dir)
    estimator, _ = build_estimator(models, data, {"fusion": fusion})
    return estimator


def photo_bytes(fmt: str = "JPEG", size: tuple[int, int] = (320, 240)) -> bytes:
    """A synthetic gradient with a little noise (a new one each call: its own sha256)."""
    rng = np.random.default_rng(uuid.uuid4().int % 2**32)
    w, h = size
    x, y = np.linspace(0, 1, w)[None, :], np.linspace(0, 1, h)[:, None]
    pixels = np.stack([60 + 160 * x + 0 * y, 40 + 170 * y + 0 * x, 200 - 120 * x * y], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def default_answers(estimator) -> dict[str, str]:
    """The form as the page first shows it: every field at its default."""
    answers = {}
    for f in estimator.form.fields:
        if f.kind == "flag":
            if f.default:
                answers[f.key] = "on"
        else:
            answers[f.key] = "" if f.default is None else str(f.default)
    return answers


@contextmanager
def live_server(app):
    """``app`` served by uvicorn on 127.0.0.1 (an ephemeral port) in a thread; yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
