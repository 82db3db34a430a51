"""Figure ``backbone``: feature extraction end to end vs the backbone alone, photos/s.

:func:`shared.features.cache.extract_features` on an empty cache (files on disk -> features) against
the same backbone object on a batch of real photos already decoded in memory (compute only).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import figure, fmt, interleaved_runs, rate_summary, ratio_of

if TYPE_CHECKING:
    from benchmarks.harness import Settings


def run(paths: list[str], settings: Settings, workdir: Path) -> dict:
    """extract_features on an empty cache (disk -> features) vs the model on in-memory batches."""
    import tensorflow as tf

    from shared.features.backbones import DEFAULT_BACKBONE, build_backbone
    from shared.features.cache import extract_features
    from shared.data.images import make_image_dataset

    size, batch = settings.image_size, settings.batch_size
    model = build_backbone(DEFAULT_BACKBONE, image_size=size)
    first = next(iter(make_image_dataset(paths[:batch], image_size=size, batch_size=batch)))
    in_memory = tf.constant(first)  # real photos, already decoded: (batch, size, size, 3) float32
    n = len(paths)
    counter = iter(range(10**9))

    def end_to_end() -> int:
        root = workdir / f"backbone-cache-{next(counter)}"  # empty: every photo is computed
        features, stats = extract_features(paths, DEFAULT_BACKBONE, size, batch_size=batch,
                                           cache_root=root, progress=False, model=model)
        shutil.rmtree(root, ignore_errors=True)
        if stats["computed"] != len(paths):
            raise RuntimeError(f"expected {len(paths)} computed features, got {stats}")
        return len(features)

    def compute_only() -> int:
        done = 0
        while done < n:
            take = min(batch, n - done)
            x = in_memory if take == len(in_memory) else in_memory[:take]
            model(x, training=False).numpy()
            done += take
        return done

    runs = interleaved_runs({"e2e": end_to_end, "compute": compute_only}, settings.repeats)
    measured = rate_summary(runs["e2e"], "photos/s", "extract_features, empty cache (disk -> features)")
    reference = rate_summary(runs["compute"], "photos/s", "same model on in-memory batches (compute only)")
    return figure(
        "backbone", f"Backbone feature extraction ({DEFAULT_BACKBONE}, {size} px)", measured,
        reference, ratio_of(measured["value"], reference["value"]),
        "end-to-end photos/s / compute-only photos/s",
        details={"photos": n, "backbone": DEFAULT_BACKBONE, "image_size": size, "batch_size": batch,
                 "cpu_bound_ceiling": ratio_of(reference["cpu_ms_per_item"],
                                               measured["cpu_ms_per_item"]),
                 "ratio_of_best_runs": ratio_of(measured["best"], reference["best"])},
        notes=["End to end is the real path: sha256 of every file, tf.data decode + resize, the "
               "model, one .npy per photo written atomically. The CPU-bound ceiling is (compute "
               "CPU ms/photo) / (end-to-end CPU ms/photo): on a saturated CPU, decoding and "
               "writing compete with the model for the same cores, so overlap cannot hide them."],
        data=f"the first {n:,} usable photos (a sample: both sides run on the same files)")


def section(fig: dict) -> list[str]:
    return [f"CPU-bound ceiling (compute CPU / end-to-end CPU per photo): "
            f"**{fmt(fig['details']['cpu_bound_ceiling'], 'x', 2)}**.", ""]


def finding(fig: dict) -> str:
    return (
        f"backbone: end to end costs {fmt(fig['measured']['cpu_ms_per_item'], 'ms')} CPU per "
        f"photo vs {fmt(fig['reference']['cpu_ms_per_item'], 'ms')} for the model alone; on a "
        f"saturated 2-core CPU input work cannot hide behind compute (ceiling "
        f"{fmt(fig['details']['cpu_bound_ceiling'], 'x', 2)}): the input cost per photo is "
        "the limit (decode + resize, see the decode figure).")
