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


def cmd_serve(args) -> int:
    """Run ``airbnb-dl serve`` until interrupted; 2 with one line when it cannot start."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # the CPU, before TensorFlow loads
    # TensorFlow: the page's modules load it, so they are imported only now, on the CPU
    import uvicorn

    from shared.cli.serve.app import create_app
    from shared.cli.serve.estimate import build_estimator
    from shared.cli.serve.models import ServeSetupError

    models_dir = environment.resolve_models_dir(args.models_dir)
    try:
        with environment.showing_progress("stdout"):
            estimator, seconds = build_estimator(models_dir, args.data_dir,
                                                 {"fusion": args.fusion, "tabular": args.tabular})
    except ServeSetupError as exc:
        print(f"airbnb-dl: error: {exc}", file=sys.stderr)
        return 2
    picks = estimator.models.picks
    print(f"fusion {picks['fusion']}, tabular {picks['tabular']}, "
          f"{len(estimator.listings.frame)} training listings ({estimator.listings.source}); "
          f"ready in {seconds:.1f} s", flush=True)
    print(f"open http://{args.host}:{args.port}/  (Ctrl+C stops it)", flush=True)
    uvicorn.run(create_app(estimator), host=args.host, port=args.port, log_level="warning")
    return 0
