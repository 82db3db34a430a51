"""Figure ``decode``: the tf.data photo pipeline vs a single-threaded Pillow loop, images/s.

:func:`shared.data.images.make_image_dataset` (parallel decode, area resize, float32 batches) against
the reference decoder :func:`pillow_photo` doing the same work on the same files, plus the CPU
cost per photo of each stage on one thread (the diagnosis behind the CPU-bound ceiling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from collections.abc import Callable

import numpy as np

from benchmarks.harness import (figure, fmt, interleaved_runs, machine_cores, median_of,
                                rate_summary, ratio_of)

if TYPE_CHECKING:
    from benchmarks.harness import Settings

FULL_STAGE = "tf: decode_photo (decode + area resize + round/cast)"
DECODE_STAGE = "tf: read + decode_image"


def pillow_photo(path, image_size: int) -> np.ndarray:
    """Reference decoder: Pillow, RGB, antialiased bilinear resize -> (s, s, 3) float32 [0, 255].

    Pillow's bilinear filter widens its support when downscaling, i.e. it is antialiased like
    ``tf.image.resize(..., antialias=True)`` in :func:`shared.data.images.decode_photo`.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32)


def run(paths: list[str], settings: Settings) -> dict:
    """tf.data pipeline vs single-threaded Pillow on the same files, images per second."""
    from shared.data.images import make_image_dataset

    size, batch = settings.image_size, settings.batch_size

    def pipeline() -> int:
        n = 0
        for images in make_image_dataset(paths, image_size=size, batch_size=batch):
            n += int(images.shape[0])
        return n

    def pillow() -> int:
        n, pending = 0, []
        for path in paths:
            pending.append(pillow_photo(path, size))
            if len(pending) == batch:
                n += len(np.stack(pending))
                pending = []
        return n + (len(np.stack(pending)) if pending else 0)

    runs = interleaved_runs({"pipeline": pipeline, "pillow": pillow}, settings.repeats)
    measured = rate_summary(runs["pipeline"], "images/s", "tf.data pipeline (make_image_dataset)")
    reference = rate_summary(runs["pillow"], "images/s", "single-threaded Pillow loop")
    cores = machine_cores()
    ceiling = None
    if measured["cpu_ms_per_item"] and reference["cpu_ms_per_item"]:
        ceiling = cores * reference["cpu_ms_per_item"] / measured["cpu_ms_per_item"]
    return figure(
        "decode", "Photo decoding and resizing", measured, reference,
        ratio_of(measured["value"], reference["value"]), "pipeline images/s / Pillow images/s",
        details={"photos": len(paths), "image_size": size, "batch_size": batch,
                 "cpu_ms_per_photo_single_thread": stage_costs(paths, settings),
                 "cpu_bound_ceiling": ceiling,
                 "usable_cores": cores,
                 "ratio_of_best_runs": ratio_of(measured["best"], reference["best"])},
        notes=[f"{len(paths)} photos at {size} px, float32 batches of {batch} from both. The "
               "CPU-bound ceiling of the ratio is cores x (Pillow CPU ms/photo) / (pipeline CPU "
               "ms/photo): a parallel pipeline cannot beat it however well it overlaps."],
        data=(f"every usable photo ({len(paths):,})" if settings.photos is None
              else f"the first {len(paths):,} usable photos"))


def stage_costs(paths: list[str], settings: Settings) -> dict[str, float | None]:
    """Diagnosis: CPU milliseconds per photo of each decoding stage, one thread (not a throughput)."""
    import tensorflow as tf

    from shared.data.images import decode_photo

    size = settings.image_size

    def tf_stage(fn) -> Callable[[], int]:
        data = tf.data.Dataset.from_tensor_slices(np.asarray(paths)).map(fn).prefetch(8)
        return lambda: sum(1 for _ in data)  # built (and traced) once, iterated per run

    def decode_only(path):
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    def bilinear_resize(path):  # the decoder before DECODE_VERSION 2, for comparison only
        image = tf.image.resize(decode_only(path), (size, size), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)

    def pillow_decode_only() -> int:
        from PIL import Image

        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB").load()
        return len(paths)

    stages = interleaved_runs({
        DECODE_STAGE: tf_stage(decode_only),
        FULL_STAGE: tf_stage(lambda p: decode_photo(p, size)),
        "tf: decode + antialiased bilinear resize (previous decoder)": tf_stage(bilinear_resize),
        "pillow: decode": pillow_decode_only,
        "pillow: decode + bilinear resize + float32": lambda: sum(
            1 for p in paths if pillow_photo(p, size) is not None),
    }, repeats=max(1, min(settings.repeats, 2)), warmup=1)
    return {name: median_of([1000 * c / run["items"] for c in run["cpu_s"]])
            for name, run in stages.items()}


def section(fig: dict) -> list[str]:
    """Markdown details: the stage costs and the CPU-bound ceiling."""
    details = fig["details"]
    lines = ["CPU time per photo of each stage, one thread (diagnosis):", "",
             "| stage | CPU ms / photo |", "|---|---|"]
    lines += [f"| {k} | {fmt(v, '', 2)} |"
              for k, v in details["cpu_ms_per_photo_single_thread"].items()]
    return lines + ["", f"CPU-bound ceiling of the ratio on {details['usable_cores']} cores: "
                        f"**{fmt(details['cpu_bound_ceiling'], 'x', 2)}**.", ""]


def finding(fig: dict) -> str:
    """Why the goal is missed, from the figure's own stage costs and ceiling."""
    d = fig["details"]
    stages = d["cpu_ms_per_photo_single_thread"]
    full, decode = stages.get(FULL_STAGE), stages.get(DECODE_STAGE)
    return (
        f"decode (parallel capacity of the machine during this figure: "
        f"{fig.get('parallel_capacity_before', 'n/a')}x): the pipeline costs "
        f"{fmt(fig['measured']['cpu_ms_per_item'], 'ms')} CPU per photo vs Pillow's "
        f"{fmt(fig['reference']['cpu_ms_per_item'], 'ms')}, so with {d['usable_cores']} cores "
        f"fully used the ratio cannot exceed {fmt(d['cpu_bound_ceiling'], 'x', 2)}. Of "
        f"decode_photo's {fmt(full, 'ms')}, {fmt(decode, 'ms')} is the JPEG decode itself "
        f"and {fmt((full or 0) - (decode or 0), 'ms')} the area resize and cast. If the "
        "ceiling is above the goal, the shortfall is other load on the machine (see its "
        "parallel capacity).")
