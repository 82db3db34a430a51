"""Tests of shared.run.devices: strategy selection, mixed precision, multi-replica training.

Logical-device configuration must happen before TensorFlow initialises its runtime, and the
pytest process may already have initialised it (other tests build models), so every test that
configures devices runs its code in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON object on its last line."""
    environ = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "AIRBNB_DL_MIXED_PRECISION")}
    environ.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")])),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",  # these tests are about CPU behaviour, even on a GPU box
        }
    )
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"subprocess failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_logical_cpus_mirrored_strategy_trains():
    result = _run_python(
        """
        import json
        import numpy as np
        from shared.run.devices import configure_determinism, setup_devices

        info = setup_devices(logical_cpus=2)
        again = setup_devices(logical_cpus=2)
        configure_determinism(0)
        import keras, tensorflow as tf

        with info.strategy.scope():
            model = keras.Sequential([
                keras.Input(shape=(4,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(1, dtype="float32"),
            ])
            model.compile(optimizer="adam", loss="mse")
            x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
            y = x.sum(axis=1, keepdims=True)
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(info.global_batch(8))
            history = model.fit(ds, epochs=1, verbose=0)
        print(json.dumps({
            "strategy": type(info.strategy).__name__,
            "strategy_name": info.strategy_name,
            "replicas": info.replicas,
            "global_batch": info.global_batch(8),
            "device_kind": info.device_kind,
            "mixed": info.mixed_precision,
            "same": again is info,
            "loss": float(history.history["loss"][-1]),
            "describe": info.describe(),
        }))
        """
    )
    assert result["strategy"] == "MirroredStrategy"
    assert result["strategy_name"] == "MirroredStrategy"
    assert result["replicas"] == 2
    assert result["global_batch"] == 16
    assert result["device_kind"] == "cpu"
    assert result["mixed"] is False
    assert result["same"] is True
    assert result["loss"] == result["loss"] and result["loss"] >= 0  # finite, not NaN
    assert result["describe"] == "CPU, MirroredStrategy, 2 replicas, float32"


def test_default_setup_on_cpu():
    result = _run_python(
        """
        import json
        import keras
        from shared.run.devices import setup_devices

        info = setup_devices()
        print(json.dumps({
            "strategy_name": info.strategy_name,
            "replicas": info.replicas,
            "device_kind": info.device_kind,
            "gpus": list(info.gpus),
            "mixed": info.mixed_precision,
            "policy": keras.mixed_precision.global_policy().name,
            "describe": info.describe(),
            "global_batch": info.global_batch(32),
            "idempotent": setup_devices() is info,
        }))
        """
    )
    assert result == {
        "strategy_name": "default",
        "replicas": 1,
        "device_kind": "cpu",
        "gpus": [],
        "mixed": False,
        "policy": "float32",
        "describe": "CPU, default strategy, 1 replica, float32",
        "global_batch": 32,
        "idempotent": True,
    }


def test_mixed_precision_env_override():
    result = _run_python(
        """
        import json
        import keras
        from shared.run.devices import setup_devices

        info = setup_devices()
        print(json.dumps({"mixed": info.mixed_precision,
                          "policy": keras.mixed_precision.global_policy().name,
                          "describe": info.describe()}))
        """,
        AIRBNB_DL_MIXED_PRECISION="1",
    )
    assert result == {
        "mixed": True,
        "policy": "mixed_float16",
        "describe": "CPU, default strategy, 1 replica, mixed_float16",
    }


# ------------------------------------------------------------------------------------------
# Pure logic: TF_CONFIG parsing and strategy/precision selection (no device configuration)
# ------------------------------------------------------------------------------------------

TWO_WORKERS = {
    "cluster": {"worker": ["worker0.example:12345", "worker1.example:12345"]},
    "task": {"type": "worker", "index": 1},
}


def test_parse_tf_config_two_workers():
    from shared.run.devices import parse_tf_config, select_strategy_name

    assert parse_tf_config(json.dumps(TWO_WORKERS)) == 2
    assert parse_tf_config(TWO_WORKERS) == 2
    assert select_strategy_name(num_gpus=0, num_workers=2) == "MultiWorkerMirroredStrategy"
    assert select_strategy_name(num_gpus=4, num_workers=2) == "MultiWorkerMirroredStrategy"


def test_parse_tf_config_chief_counts_as_worker():
    from shared.run.devices import parse_tf_config

    config = {
        "cluster": {"chief": ["c:1"], "worker": ["w0:1", "w1:1"], "ps": ["p:1"]},
        "task": {"type": "chief", "index": 0},
    }
    assert parse_tf_config(config) == 3


@pytest.mark.parametrize("value", [None, "", "  ", json.dumps({"cluster": {"worker": ["w:1"]}, "task": {"type": "worker", "index": 0}})])
def test_parse_tf_config_single_worker(value):
    from shared.run.devices import parse_tf_config, select_strategy_name

    assert parse_tf_config(value) == 1
    assert select_strategy_name(num_gpus=0, num_workers=1) == "default"


@pytest.mark.parametrize(
    "value",
    ["{not json", json.dumps([1, 2]), json.dumps({"cluster": {"worker": "w:1"}}),
     json.dumps({"cluster": {"worker": ["w:1"]}, "task": {"type": "worker", "index": 3}})],
)
def test_parse_tf_config_rejects_malformed(value):
    from shared.run.devices import parse_tf_config

    with pytest.raises(ValueError):
        parse_tf_config(value)


def test_select_strategy_name():
    from shared.run.devices import select_strategy_name

    assert select_strategy_name(0) == "default"
    assert select_strategy_name(1) == "default"
    assert select_strategy_name(2) == "MirroredStrategy"
    assert select_strategy_name(0, logical_cpus=2) == "MirroredStrategy"
    assert select_strategy_name(0, logical_cpus=1) == "default"


def test_resolve_mixed_precision():
    from shared.run.devices import resolve_mixed_precision

    assert resolve_mixed_precision(None, uses_gpu=True, environ={}) is True
    assert resolve_mixed_precision(None, uses_gpu=False, environ={}) is False
    assert resolve_mixed_precision(None, uses_gpu=True, environ={"AIRBNB_DL_MIXED_PRECISION": "0"}) is False
    assert resolve_mixed_precision(None, uses_gpu=False, environ={"AIRBNB_DL_MIXED_PRECISION": "1"}) is True
    assert resolve_mixed_precision(False, uses_gpu=True, environ={"AIRBNB_DL_MIXED_PRECISION": "1"}) is False
    with pytest.raises(ValueError):
        resolve_mixed_precision(None, uses_gpu=True, environ={"AIRBNB_DL_MIXED_PRECISION": "maybe"})


def test_global_batch_and_describe_without_devices():
    import tensorflow as tf

    from shared.run.devices import DeviceInfo

    info = DeviceInfo(
        strategy=tf.distribute.get_strategy(), replicas=4, device_kind="cpu", gpus=(),
        mixed_precision=False, strategy_name="MultiWorkerMirroredStrategy",
    )
    assert info.global_batch(8) == 32
    assert info.describe() == "CPU, MultiWorkerMirroredStrategy, 4 replicas, float32"
    with pytest.raises(ValueError):
        info.global_batch(0)
