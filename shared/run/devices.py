"""Device and distribution setup: one call picks the strategy, memory growth and precision.

:func:`setup_devices` chooses: CPU only: the default strategy, float32; 1 GPU: memory growth,
the default strategy and ``mixed_float16`` (output layers stay float32); several GPUs:
``MirroredStrategy``; ``TF_CONFIG`` with several workers: ``MultiWorkerMirroredStrategy``;
``logical_cpus=N``: a ``MirroredStrategy`` over N logical CPUs (the tests' stand-in for GPUs).

It must run before TensorFlow initialises its runtime (before the first op or model), and is
idempotent: the same arguments return the same :class:`DeviceInfo` (and strategy object).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import tensorflow as tf

from shared import environment
from shared.models.fit import global_batch_size

__all__ = [
    "DeviceInfo",
    "MIXED_PRECISION_ENV",
    "configure_determinism",
    "parse_tf_config",
    "select_strategy_name",
    "setup_devices",
]

log = logging.getLogger(__name__)

MIXED_PRECISION_ENV = environment.MIXED_PRECISION_ENV

STRATEGY_DEFAULT = "default"
STRATEGY_MIRRORED = "MirroredStrategy"
STRATEGY_MULTI_WORKER = "MultiWorkerMirroredStrategy"


@dataclass(frozen=True)
class DeviceInfo:
    """What :func:`setup_devices` chose; ``describe()`` is the line that goes into reports."""

    strategy: tf.distribute.Strategy
    replicas: int  # strategy.num_replicas_in_sync
    device_kind: str  # "cpu" | "gpu"
    gpus: tuple[str, ...]  # physical GPU names ("/physical_device:GPU:0", ...)
    mixed_precision: bool
    strategy_name: str  # "default" | "MirroredStrategy" | "MultiWorkerMirroredStrategy"
    is_chief: bool = True  # False on the non-chief workers of a multi-worker run

    def describe(self) -> str:
        """One line for reports, e.g. ``"CPU, default strategy, 1 replica, float32"``."""
        if self.device_kind == "gpu":
            names = _gpu_model_names(self.gpus)
            kind = f"{len(self.gpus)} GPU" + ("s" if len(self.gpus) != 1 else "")
            if names:
                kind += f" ({names})"
        else:
            kind = "CPU"
        strategy = "default strategy" if self.strategy_name == STRATEGY_DEFAULT else self.strategy_name
        replicas = f"{self.replicas} replica" + ("s" if self.replicas != 1 else "")
        precision = "mixed_float16" if self.mixed_precision else "float32"
        return f"{kind}, {strategy}, {replicas}, {precision}"

    def global_batch(self, per_replica_batch: int) -> int:
        """The global batch size to give ``Dataset.batch`` / ``fit`` for a per-replica batch."""
        return global_batch_size(per_replica_batch, self.replicas)


# --------------------------------------------------------------------------- pure selection logic


def parse_tf_config(tf_config: str | Mapping | None) -> int:
    """The number of workers (chief included) a ``TF_CONFIG`` value describes (None or "": 1), e.g.::

        {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
         "task": {"type": "worker", "index": 0}}

    Raises :class:`ValueError` for malformed JSON or a task that is not in the cluster.
    """
    if tf_config is None or (isinstance(tf_config, str) and not tf_config.strip()):
        return 1
    if isinstance(tf_config, str):
        try:
            spec = json.loads(tf_config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from exc
    else:
        spec = dict(tf_config)
    if not isinstance(spec, dict):
        raise ValueError("TF_CONFIG must be a JSON object")
    cluster = spec.get("cluster") or {}
    if not isinstance(cluster, dict):
        raise ValueError("TF_CONFIG 'cluster' must be an object of job name -> address list")
    workers = 0
    for job in ("chief", "worker"):
        addresses = cluster.get(job) or []
        if not isinstance(addresses, list):
            raise ValueError(f"TF_CONFIG cluster.{job} must be a list of 'host:port' strings")
        workers += len(addresses)
    task = spec.get("task")
    if task:
        task_type, index = task.get("type"), task.get("index", 0)
        members = cluster.get(task_type) or []
        if task_type in ("chief", "worker") and not 0 <= int(index) < len(members):
            raise ValueError(
                f"TF_CONFIG task {task_type}:{index} is not in the cluster "
                f"({len(members)} {task_type} address(es))"
            )
    return max(workers, 1)


def select_strategy_name(num_gpus: int, num_workers: int = 1, logical_cpus: int | None = None) -> str:
    """The strategy :func:`setup_devices` uses for a device count and cluster size."""
    if num_workers > 1:
        return STRATEGY_MULTI_WORKER
    if logical_cpus is not None and logical_cpus > 1:
        return STRATEGY_MIRRORED
    if num_gpus > 1:
        return STRATEGY_MIRRORED
    return STRATEGY_DEFAULT


def resolve_mixed_precision(
    requested: bool | None, uses_gpu: bool, environ: Mapping[str, str] | None = None
) -> bool:
    """Explicit argument > ``AIRBNB_DL_MIXED_PRECISION`` > "on iff a GPU is used"."""
    if requested is not None:
        return bool(requested)
    value = (environment.mixed_precision_setting() if environ is None
             else environ.get(MIXED_PRECISION_ENV, "")).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise ValueError(f"{MIXED_PRECISION_ENV} must be 0 or 1, got {value!r}")
    return uses_gpu


# --------------------------------------------------------------------------- device setup

_CACHE: dict[tuple, DeviceInfo] = {}


def _gpu_model_names(gpus: tuple[str, ...]) -> str:
    names: list[str] = []
    for device in tf.config.list_physical_devices("GPU"):
        if device.name in gpus:
            try:
                name = tf.config.experimental.get_device_details(device).get("device_name")
            except Exception:  # noqa: BLE001 - details are cosmetic
                name = None
            if name:
                names.append(name)
    if names and len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def _split_cpu(logical_cpus: int) -> list[str]:
    """Split the first physical CPU into ``logical_cpus`` logical devices; return their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != logical_cpus:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical_cpus)]
            )
        except RuntimeError as exc:  # the runtime is already initialised
            raise RuntimeError(
                f"setup_devices(logical_cpus={logical_cpus}) must run before TensorFlow "
                "initialises (before any op, model or dataset is created)"
            ) from exc
    return [device.name for device in tf.config.list_logical_devices("CPU")][:logical_cpus]


def _enable_memory_growth(gpus: list) -> None:
    for gpu in gpus:
        try:
            if not tf.config.experimental.get_memory_growth(gpu):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # Already initialised (by an earlier call or the caller): say so rather than fail.
            log.warning("could not enable memory growth on %s: runtime already initialised", gpu.name)


def _let_keras_train_under_multi_worker() -> None:
    """Make ``Model.fit`` / ``evaluate`` run under ``MultiWorkerMirroredStrategy`` (Keras 3).

    Keras 3 (keras-team/keras#20585, tensorflow/tensorflow#72388) fails twice there: it builds the
    model by reducing a whole distributed ``(x, y)`` batch with one ``strategy.reduce`` (only a
    single value is accepted), so this worker's own share is used (only the shapes matter); and it
    averages scalar logs with ``axis=0``, which a scalar lacks, so scalars use ``axis=None``.
    Both replacements hand every other strategy to Keras's own code.
    """
    try:  # a private module of Keras: absent from another layout
        from keras import tree
        from keras.src.backend.tensorflow import trainer
    except ImportError:  # another Keras layout: nothing to adapt
        return
    if getattr(trainer, "_multi_worker_adapted", False):
        return
    build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica = trainer.reduce_per_replica

    def multi_worker(strategy) -> bool:
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def local(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build_from_local_batch(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not multi_worker(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(lambda v: local(v, strategy), next(it))
            break
        return build(self, data_batch=data_batch)

    def reduce_scalars_without_axis(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)

        def mean(value):  # a PerReplica value, or a tensor when a worker has one replica
            if getattr(local(value, strategy), "shape", None) is not None and \
                    local(value, strategy).shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return tree.map_structure(mean, values)

    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer.reduce_per_replica = reduce_scalars_without_axis
    trainer._multi_worker_adapted = True


def _set_precision_policy(mixed: bool) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")


def _make_strategy(name: str, logical_cpus: int | None) -> tf.distribute.Strategy:
    """The strategy ``name`` (:func:`select_strategy_name`) over the devices it needs."""
    if name == STRATEGY_MULTI_WORKER:
        # Reuse one already created in this process: TF allows only one collective setup.
        existing = next((info.strategy for info in _CACHE.values()
                         if info.strategy_name == STRATEGY_MULTI_WORKER), None)
        strategy = existing or tf.distribute.MultiWorkerMirroredStrategy()
        _let_keras_train_under_multi_worker()
        return strategy
    if name == STRATEGY_MIRRORED and logical_cpus:
        return tf.distribute.MirroredStrategy(devices=_split_cpu(logical_cpus),
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == STRATEGY_MIRRORED:
        return tf.distribute.MirroredStrategy()
    if logical_cpus == 1:
        _split_cpu(1)
    return tf.distribute.get_strategy()


def setup_devices(mixed_precision: bool | None = None, logical_cpus: int | None = None) -> DeviceInfo:
    """Choose and configure the devices, the distribution strategy and the precision policy.

    ``mixed_precision``: explicit argument > ``AIRBNB_DL_MIXED_PRECISION=0/1`` > on iff a GPU is
    used. ``logical_cpus=N``: ``MirroredStrategy`` over N logical CPUs. Idempotent.
    """
    if logical_cpus is not None and logical_cpus < 1:
        raise ValueError(f"logical_cpus must be >= 1, got {logical_cpus}")
    tf_config = environment.tf_config()
    num_workers = parse_tf_config(tf_config)

    physical_gpus = tf.config.list_physical_devices("GPU")
    uses_gpu = bool(physical_gpus) and logical_cpus is None
    mixed = resolve_mixed_precision(mixed_precision, uses_gpu)
    key = (mixed, logical_cpus, num_workers, tf_config if num_workers > 1 else None)
    if key in _CACHE:
        _set_precision_policy(mixed)  # another call may have changed the global policy
        return _CACHE[key]

    if uses_gpu:
        _enable_memory_growth(physical_gpus)
    name = select_strategy_name(len(physical_gpus) if uses_gpu else 0, num_workers, logical_cpus)

    strategy = _make_strategy(name, logical_cpus)
    if mixed and not uses_gpu:
        log.warning("mixed_float16 requested without a GPU: float16 maths on the CPU is slow")
    _set_precision_policy(mixed)

    info = DeviceInfo(
        strategy=strategy,
        replicas=int(strategy.num_replicas_in_sync),
        device_kind="gpu" if uses_gpu else "cpu",
        gpus=tuple(gpu.name for gpu in physical_gpus) if uses_gpu else (),
        mixed_precision=mixed,
        strategy_name=name,
        is_chief=environment.is_chief_task(tf_config) if num_workers > 1 else True,
    )
    _CACHE[key] = info
    log.info("devices: %s", info.describe())
    return info


def configure_determinism(seed: int, op_determinism: bool | None = None) -> None:
    """Seed Python, NumPy and TensorFlow (``keras.utils.set_random_seed``), and make TensorFlow ops
    deterministic when ``op_determinism`` (default: only without a visible GPU, whose
    deterministic kernels are slower or missing)."""
    keras.utils.set_random_seed(int(seed))
    if op_determinism is None:
        op_determinism = not tf.config.list_physical_devices("GPU")
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
