"""Benchmarks: speed and memory of the project's real code paths, each beside its reference.

    python -m benchmarks                 # full run -> docs/benchmarks.md + .json
    python -m benchmarks --quick         # tiny sizes, 1 repetition, to a temporary folder
    python -m benchmarks --skip-e2e      # everything but the deliverable runs (temp folder)
    python -m benchmarks --from-json F   # re-render the Markdown of a saved run
    nox -s bench [-- --quick]

Every figure is measured in one run, next to its reference, and reported as a ratio. Speed
figures are the median of ``--repeats`` repetitions after one warm-up; the measured code and its
reference alternate (A B B A ...) so that load from other processes hits both alike. Nothing
fails on a time: the goals are reported as reached or not, never asserted. Each figure also
records the load average and the machine's *parallel capacity* (speed-up of one thread per core
over one thread on a GIL-free task) just before it, plus CPU time per item, from which the
CPU-bound ceiling of a ratio follows independently of other users' load. When a goal is missed,
the diagnosis measured in the same run is turned into a finding (``findings``).

One module per figure, each with ``run`` (the measurement), ``section`` (its details in the
Markdown page) and ``finding`` (the sentence written when its goal is missed):

1. :mod:`benchmarks.decode`: :func:`shared.data.images.make_image_dataset` (tf.data, parallel) vs a
   single-threaded Pillow loop doing the same work (decode, RGB, antialiased bilinear resize,
   float32 batches).
2. :mod:`benchmarks.backbone`: :func:`shared.features.cache.extract_features` on an empty cache
   (files on disk -> features) vs the same backbone object on a batch already in memory.
3. :mod:`benchmarks.feature_cache`: :func:`shared.models.families.transfer.train_transfer_frozen`, first run
   (empty feature cache) vs second run (all features cached).
4. :mod:`benchmarks.memory`: peak RSS of training a model (each in a fresh process, its own
   peak measured by :mod:`benchmarks.launcher`) on the first ``--max-rows`` rows of the dataset
   vs on a ``--replication``-times larger copy of them (rows replicated under new IDs, photos
   hard-linked or symlinked in a temporary folder); plus the original's approach (every photo in
   one float64 array) at both sizes.
5. :mod:`benchmarks.serve`: the price-estimate page (``airbnb-dl serve``): latency of one
   estimate over HTTP (median and 95th percentile of 50 sequential requests, 10 with ``--quick``)
   against the 1 s budget, and the server's start-up beside one ``airbnb-dl predict`` of the same
   listing; on ``models/`` (with ``picks.json``) in a full run, smoke-trained stand-ins otherwise.
6. :mod:`benchmarks.e2e`: wall time of ``airbnb-dl report <deliverable>`` (the command behind
   ``nox -s <deliverable>``) on the first ``--max-rows`` rows of the dataset, into temporary
   folders, and training throughput per model.

Figures 1-3 are about throughput and read the whole dataset; 4 and 6 train, so they use a bounded
number of rows (``--max-rows``, default :data:`benchmarks.harness.DEFAULT_MAX_ROWS`) whatever the
dataset's size, which keeps a full run on the 10,351-listing set within an hour on 2 cores:

    AIRBNB_DATA_DIR=/path/to/airbnb-madrid-10k python -m benchmarks

The rest: :mod:`benchmarks.harness` (settings, timing, machine description, the child-process
runner, datasets, figure records), :mod:`benchmarks.launcher` (runs a child so that its peak RSS
is its own), :mod:`benchmarks.report` (benchmarks.json + benchmarks.md) and
:mod:`benchmarks.cli` (the command line and the run). The benchmark uses its own feature cache
(``AIRBNB_DL_CACHE`` pointed at a temporary folder; only the converted backbone weights are
copied in), so "first run" really computes.
"""
