"""``airbnb-dl``: the project's command line.

    airbnb-dl data check   [--data-dir D]                  summary of the usable listings
    airbnb-dl data fetch   [--source github|drive|opendatasoft] [--dest D] ...
    airbnb-dl report       deliverable1|deliverable2 [--smoke] [--data-dir D] [--out DIR]
    airbnb-dl predict      --model models/<name> --data-dir D --out predictions.csv
                           [--coverage 0.8]
    airbnb-dl reproduce    deliverable1|deliverable2 [--candidate FILE] ...
    airbnb-dl serve        [--models-dir models/] [--data-dir D] [--host H] [--port P]

Input errors (:data:`INPUT_ERRORS`) are reported in one line with exit status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from shared import environment
from shared.cli import serve
from shared.cli.predict import predict_command
from shared.data import schema
from shared.data.acquisition import cli as acquisition_cli
from shared.data.acquisition.fetch import ensure_data
from shared.data.dataset import DatasetError, load_dataset
from shared.evaluation.intervals import IntervalError
from shared.models.files import ModelLoadError
from shared.reporting.notebook import ReportError, display_path, render_report
from shared.run import reproduce

EXIT_OK, EXIT_PARTIAL, EXIT_INPUT_ERROR = 0, 1, 2


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------- data check

def cmd_data_check(args) -> int:
    dataset = load_dataset(args.data_dir)
    summary = dataset.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"dataset directory : {summary['data_dir']}")
    print(f"listings.csv      : sha256 {summary['listings_sha256']}")
    print(f"rows read         : {summary['rows_read']}")
    print(f"rows usable       : {summary['rows_usable']}")
    if summary["drops"]:
        print("rows dropped      :")
        for reason, ids in sorted(dataset.drops.items()):
            shown = ", ".join(map(str, ids[:8])) + (" ..." if len(ids) > 8 else "")
            print(f"  {len(ids):5d}  {reason}  (IDs: {shown})")
    else:
        print("rows dropped      : none")
    if "price_eur" in summary:
        p = summary["price_eur"]
        print(f"price (EUR/night) : min {p['min']:.2f}, median {p['median']:.2f}, max {p['max']:.2f}")
    if "image_size_px" in summary:
        w, h = summary["image_size_px"]["width"], summary["image_size_px"]["height"]
        print(f"photo width (px)  : min {w['min']}, median {w['median']:.0f}, max {w['max']}")
        print(f"photo height (px) : min {h['min']}, median {h['median']:.0f}, max {h['max']}")
    if "absent_columns" in summary:
        absent = summary["absent_columns"]
        print(f"absent columns    : {len(absent)} of the {len(schema.OPENDATASOFT_COLUMNS)} "
              f"OpenDataSoft columns: {', '.join(absent)}")
        if summary["features_not_built"]:
            print("features not built: " + ", ".join(summary["features_not_built"]))
    if "room_types" in summary:
        print("room types        : " + ", ".join(f"{k} {v}" for k, v in summary["room_types"].items()))
    return EXIT_OK


# --------------------------------------------------------------------------- report

REPORTS = ("deliverable1", "deliverable2")


def cmd_report(args) -> int:
    data_dir = ensure_data(args.data_dir)
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix=f"airbnb-dl-smoke-{args.deliverable}-"))
        out_dir = Path(args.out) if args.out else scratch / "docs"
        models_dir = Path(args.models_dir) if args.models_dir else scratch / "models"
    else:
        out_dir = Path(args.out) if args.out else environment.DOCS_DIR / args.deliverable
        models_dir = environment.resolve_models_dir(args.models_dir)
    if not environment.is_chief_task(environment.tf_config()):  # a non-chief worker: its report is a scratch copy
        out_dir = Path(tempfile.mkdtemp(prefix=f"airbnb-dl-worker-{args.deliverable}-"))
    script = environment.PROJECT_ROOT / args.deliverable / "report.py"
    parameters = {"data_dir": display_path(data_dir), "models_dir": display_path(models_dir),
                  "smoke": args.smoke}
    print(f"rendering {script.relative_to(environment.PROJECT_ROOT)} -> {out_dir} "
          f"(models in {models_dir}, data {data_dir}, smoke={args.smoke})", flush=True)
    result = render_report(script, out_dir, parameters)
    print(f"done in {result['seconds']:.0f} s:")
    for path in result["written"]:
        print(f"  {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- predict

def cmd_predict(args) -> int:
    return predict_command(Path(args.model), args.data_dir, Path(args.out), args.coverage)


def cmd_reproduce(args) -> int:
    return reproduce.main(args.args)


# --------------------------------------------------------------------------- wiring

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airbnb-dl", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="check or fetch the dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser("check", help="validate a dataset directory and summarise it")
    check.add_argument("--data-dir", help="dataset directory (default: $AIRBNB_DATA_DIR or data/airbnb-madrid-10k)")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(func=cmd_data_check)
    acquisition_cli.register(data_commands)

    report = commands.add_parser("report", help="train a deliverable's models and render its report")
    report.add_argument("deliverable", choices=REPORTS)
    report.add_argument("--smoke", action="store_true",
                        help="tiny settings, output to a temporary folder (never over docs/)")
    report.add_argument("--data-dir")
    report.add_argument("--models-dir", help="where models are saved (default: models/)")
    report.add_argument("--out", help="output folder (default: docs/<deliverable>/)")
    report.set_defaults(func=cmd_report)

    predict = commands.add_parser("predict", help="score a dataset directory with a saved model")
    predict.add_argument("--model", required=True, help="a saved model directory, models/<name>")
    predict.add_argument("--data-dir", help="dataset directory to score (never written to)")
    predict.add_argument("--out", required=True,
                         help="CSV to write: ID,predicted_price,price_low,price_high (EUR)")
    predict.add_argument("--coverage", metavar="C",
                         help="coverage of the price range, a number in (0, 1) (default 0.8)")
    predict.set_defaults(func=cmd_predict)

    check_again = commands.add_parser(
        "reproduce", add_help=False, help="train a deliverable again and compare with its "
        "published metrics (python -m shared.run.reproduce --help)")
    check_again.add_argument("args", nargs=argparse.REMAINDER)
    check_again.set_defaults(func=cmd_reproduce)
    serve.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except INPUT_ERRORS as exc:
        print(f"airbnb-dl: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


#: The errors reported as one line (exit 2).
INPUT_ERRORS = (environment.DataDirError, DatasetError, IntervalError, ModelLoadError, ReportError)
