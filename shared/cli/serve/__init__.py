"""``airbnb-dl serve``: a local price-estimate page over a trained models folder.

    airbnb-dl serve [--models-dir models/] [--data-dir D] [--host 127.0.0.1] [--port 8000]
                    [--fusion NAME] [--tabular NAME]
    nox -s app [-- --port 8000 ...]

A person describes one listing (room type, property type, neighbourhood, size, the host-side
fields the models read with stated defaults, the location clicked on a map of the training
listings) and uploads a photo; the page answers with the nightly price of deliverable 2's fusion
validation pick and its 80% range, the tabular-only pick's price and range beside it (what the
photo changed, in EUR), and the five most similar training listings (ID, price, distance).

The models (``<models>/picks.json``, :mod:`shared.cli.serve.models`) and a backbone for their
photo features are loaded once, on the CPU, and one warm-up estimate runs before the page opens,
so that each estimate then takes well under a second. Every estimate is what
``airbnb-dl predict`` gives for the same listing written as a CSV row
(:mod:`shared.cli.serve.estimate`). The page is plain HTML, CSS and JavaScript shipped in the
package (``static/``): nothing is fetched from the internet, the map needs no tile server.

Modules: :mod:`~shared.cli.serve.form` (fields, defaults, parsing), :mod:`~shared.cli.serve.
listings` (training listings: map, similar listings), :mod:`~shared.cli.serve.photo` (upload
checks), :mod:`~shared.cli.serve.models` (the picks), :mod:`~shared.cli.serve.estimate` (one
estimate), :mod:`~shared.cli.serve.app` (the Starlette application).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from shared import environment

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(commands) -> None:
    """Add the ``serve`` sub-command to ``airbnb-dl``'s sub-parsers."""
    serve = commands.add_parser("serve", help="start the local price-estimate page")
    serve.add_argument("--models-dir", help="trained models folder with picks.json "
                                            "(default: $AIRBNB_MODELS_DIR or models/)")
    serve.add_argument("--data-dir", help="the dataset the models were trained on, for the "
                                          "form's choices, the map and similar listings "
                                          "(default: $AIRBNB_DATA_DIR or data/airbnb-madrid-10k)")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument("--fusion", help="model folder to use instead of picks.json's fusion pick")
    serve.add_argument("--tabular", help="model folder to use instead of picks.json's tabular pick")
    serve.set_defaults(func=cmd_serve)


def build_estimator(models_dir, data_dir=None, overrides: dict | None = None, log=None):
    """Load everything once and run one warm-up estimate; returns (estimator, start-up seconds).
    ``log``: called with a progress line once the picks and the data directory are found.

    Raises :class:`~shared.cli.serve.models.ServeSetupError` (no models folder or picks),
    :class:`shared.environment.DataDirError` and the model-loading errors, each one line."""
    start = time.perf_counter()
    from shared.cli.serve.models import read_picks

    picks = read_picks(Path(models_dir), overrides)  # before any slow import
    data_dir = environment.resolve_data_dir(data_dir)
    if log is not None:
        log(f"loading {picks['fusion']} and {picks['tabular']} from {models_dir}, training "
            f"listings from {data_dir} ...")
    from shared.cli.serve.estimate import Estimator
    from shared.cli.serve.form import build_form
    from shared.cli.serve.listings import load_training_listings
    from shared.cli.serve.models import load_models
    from shared.features.tabular import input_columns

    models = load_models(Path(models_dir), picks)
    listings = load_training_listings(data_dir, models_dir)
    columns = [c for b in models.by_slot().values() if b.preprocessor is not None
               for c in input_columns(b.preprocessor)]
    estimator = Estimator(models, build_form(columns, listings.frame), listings)
    defaults = {f.key: ("on" if f.default is True else "" if f.default is False
                        else str(f.default if f.default is not None else ""))
                for f in estimator.form.fields}
    estimator.estimate(defaults, warmup_photo())  # compiles the models' graphs before the page opens
    return estimator, time.perf_counter() - start


def warmup_photo() -> bytes:
    """A 320 x 240 synthetic gradient JPEG (no listing photo), for the warm-up estimate."""
    import io

    import numpy as np
    from PIL import Image

    x = np.linspace(0, 255, 320, dtype=np.float32)
    y = np.linspace(0, 255, 240, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(x, (240, 320)), np.broadcast_to(y, (240, 320)),
                       np.full((240, 320), 128.0)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def cmd_serve(args) -> int:
    """Run ``airbnb-dl serve`` until interrupted; 2 with one line when it cannot start."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # the CPU, before TensorFlow loads
    from shared.cli.serve.models import ServeSetupError

    models_dir = environment.resolve_models_dir(args.models_dir)
    try:
        estimator, seconds = build_estimator(models_dir, args.data_dir,
                                             {"fusion": args.fusion, "tabular": args.tabular},
                                             log=lambda line: print(line, flush=True))
    except ServeSetupError as exc:
        print(f"airbnb-dl: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from shared.cli.serve.app import create_app

    picks = estimator.models.picks
    print(f"fusion {picks['fusion']}, tabular {picks['tabular']}, "
          f"{len(estimator.listings.frame)} training listings ({estimator.listings.source}); "
          f"ready in {seconds:.1f} s", flush=True)
    print(f"open http://{args.host}:{args.port}/  (Ctrl+C stops it)", flush=True)
    uvicorn.run(create_app(estimator), host=args.host, port=args.port, log_level="warning")
    return 0
