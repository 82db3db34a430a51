"""Distributed training for real: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1; mixed precision on the CPU.

Devices must be configured before TensorFlow initialises, and a process holds at most one
multi-worker cluster, so the training runs in child processes (``tests/distributed_worker.py``),
each bounded by a timeout. The strategy comes from ``shared.run.devices.setup_devices`` and the
models from the project's builders, compiled and fitted by ``shared.models.fit``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared.models.saved import load_bundle, save_bundle

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
TIMEOUT = 240  # seconds per child process (hard limit; a healthy run takes well under a minute)

#: A distributed run and a one-device run with the same global batch and learning rate end
#: this close, as a share of how far one epoch moved the weights: float rounding, amplified by
#: Adam's normalisation of near-zero gradients (measured: 7e-8 for the linear head, 9e-5 for
#: the CNN, 4e-3 for the mlp). Plain one-device training (the per-replica batch, unscaled rate)
#: ends 0.25 to 0.42 away, so the tolerance tells the two apart.
SAME_RUN_TOLERANCE = 0.02
DIFFERENT_RUN_MINIMUM = 0.1


def _child_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CONFIG", "AIRBNB_DL_MIXED_PRECISION")}
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": ""})  # CPU behaviour, even on a GPU machine
    env.update(extra)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mirrored")
    proc = subprocess.run([sys.executable, str(WORKER), "mirrored", "--workdir", str(workdir)],
                          cwd=ROOT, env=_child_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return _last_json(proc.stdout), workdir


@pytest.mark.parametrize("model", ["linear", "mlp", "cnn"])
def test_mirrored_two_replicas_train_like_one_device(mirrored_run, model):
    result, _ = mirrored_run
    assert result["describe"] == "CPU, MirroredStrategy, 2 replicas, float32"
    assert result["global_batch"] == 32  # 16 rows per replica
    run = result[model]
    assert run["model_replicas"] == 2
    assert run["variable_types"] == ["MirroredVariable"] and run["variable_copies"] == [2]
    assert run["loss_after"] < 0.8 * run["loss_before"], run
    assert run["distance_same_global_batch"] < SAME_RUN_TOLERANCE, run
    assert run["distance_plain_one_device"] > DIFFERENT_RUN_MINIMUM, run


def test_model_trained_on_two_replicas_reloads_on_one_device(mirrored_run):
    """Saved from a MirroredStrategy run, loaded in this process (no strategy), it predicts
    what it predicted when it was trained."""

    result, workdir = mirrored_run
    bundle = load_bundle(workdir / "mirrored_mlp")
    assert bundle.estimator.distribute_strategy.num_replicas_in_sync == 1
    x_val = np.asarray(result["reload"]["x"], dtype=np.float32)
    pred = bundle.estimator.predict(x_val, verbose=0).reshape(-1)
    np.testing.assert_allclose(pred, result["reload"]["predictions"], rtol=1e-5, atol=1e-5)


def test_multi_worker_two_processes_train_one_model(small_dir, tmp_path):
    """Two workers on 127.0.0.1 run the project's mlp step together under
    MultiWorkerMirroredStrategy; they end with identical weights; only the chief writes (split,
    model, metrics); its saved model reloads here (no cluster, one device) and predicts what the
    chief predicted."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        workdir = tmp_path / f"worker{index}"
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), "multi_worker", "--data-dir", str(small_dir),
             "--models-dir", str(workdir / "models")],
            cwd=ROOT, env=_child_env(TF_CONFIG=tf_config, AIRBNB_DL_CACHE=str(workdir / "cache")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.communicate()
        pytest.fail(f"the two workers did not finish within {TIMEOUT} s")
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"worker failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    chief, other = (_last_json(stdout) for stdout, _ in outputs)

    for worker in (chief, other):
        assert worker["device"] == "CPU, MultiWorkerMirroredStrategy, 2 replicas, float32"
        assert worker["multi_worker"] is True and worker["replicas"] == 2
        assert worker["model_replicas"] == 2
        assert worker["variable_types"] == ["MirroredVariable"]
    assert (chief["task_index"], other["task_index"]) == (0, 1)
    # only the chief writes: its split, model and metrics; the other worker nothing at all
    assert chief["is_chief"] is True and other["is_chief"] is False
    assert "metrics.json" in chief["written"] and "models/split.json" in chief["written"]
    assert any(p.startswith("models/mlp/") for p in chief["written"])
    assert other["written"] == [] and other["metrics"] is None
    assert len(chief["weights"]) == len(other["weights"]) > 0
    for a, b in zip(chief["weights"], other["weights"], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(chief["val_predictions"], other["val_predictions"])

    from shared.data.dataset import load_dataset
    from shared.data.split import load_or_make_split

    models_dir = Path(chief["saved"]).parent
    bundle = load_bundle(chief["saved"])
    dataset = load_dataset(small_dir, converted_dir=tmp_path / "converted")
    val = dataset.subset(load_or_make_split(dataset, models_dir, chief["seed"]).parts()["val"])
    np.testing.assert_allclose(bundle.predict_eur(val), chief["val_predictions"], rtol=1e-5)


def test_mixed_float16_on_cpu_keeps_outputs_float32(tmp_path):
    """Every model builder under the ``mixed_float16`` policy: float16 maths inside, a float32
    output layer; one small model trains (finite loss), saves, reloads and predicts alike."""
    import keras

    from sklearn.preprocessing import StandardScaler

    from shared.models.families.cnn_scratch import build_cnn
    from shared.models.families.transfer import assemble_end_to_end
    from shared.models.families.from_branches import build_from_branches
    from shared.models.families.late_fusion import build_two_branch
    from shared.models.bundle import ModelBundle
    from shared.models.layers import build_mlp, linear_head
    from shared.models.fit import compile_regressor, fit_regressor

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5)).astype(np.float32)
        y = (4.0 + x[:, 0] * 0.3).astype(np.float32)
        mlp = build_mlp(5, (8,), 0.0, 0.0, 4.0)
        image_head = build_mlp(7, (4,), 0.0, 0.0, 4.0, name="image_head")
        config = {"tab_hidden": (8,), "dropout": 0.0, "l2": 0.0, "img_hidden": (4,),
                  "head_hidden": (4,)}
        frozen = ModelBundle("transfer_frozen", ("image_features",),
                             linear_head(np.zeros(1280), 4.0),
                             image_reducer=StandardScaler().fit(rng.normal(size=(4, 1280))),
                             backbone="efficientnet_lite0", image_size=32)
        models = {
            "mlp": mlp,
            "linear_head": frozen.estimator,
            "transfer_end_to_end": assemble_end_to_end(frozen, weights=None),
            "cnn_scratch": build_cnn(32, 4.0, channels=(4,)),
            "late_fusion": build_two_branch(5, 7, np.zeros(7), np.ones(7), config, 4.0),
            "from_branches": build_from_branches(mlp, image_head, np.zeros(7), np.ones(7)),
        }
        for name, model in models.items():
            output = model.layers[-1]  # a Dense(1), or the nested head ending with one
            while isinstance(output, keras.Model):
                output = output.layers[-1]
            assert output.dtype_policy.compute_dtype == "float32", name
            assert all(str(t.dtype).endswith("float32") for t in model.outputs), name
            inner = [layer for layer in model.layers[:-1]
                     if not isinstance(layer, keras.layers.InputLayer)]
            assert not inner or any(layer.dtype_policy.compute_dtype == "float16"
                                    for layer in inner), name

        compile_regressor(mlp, 1e-2)
        history = fit_regressor(mlp, (x, y), (x, y), epochs=2, batch_size=16)
        assert np.all(np.isfinite(history["loss"])), history
        pred = mlp.predict(x, verbose=0)
        assert pred.dtype == np.float32 and np.all(np.isfinite(pred))
        save_bundle(ModelBundle("mixed_mlp", ("tabular",), mlp), tmp_path / "mixed_mlp")
        reloaded = load_bundle(tmp_path / "mixed_mlp").estimator
        np.testing.assert_allclose(reloaded.predict(x, verbose=0), pred, rtol=1e-6)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name


def test_replica_rule():
    """Batch sizes in the code are per replica; Adam rates scale by sqrt(replicas); one replica
    changes nothing (same int, the very same float)."""
    from shared.models.fit import global_batch_size, scaled_learning_rate

    assert global_batch_size(32, 1) == 32 and global_batch_size(32, 4) == 128
    assert scaled_learning_rate(3e-5, 1) == 3e-5
    assert scaled_learning_rate(1e-3, 4) == pytest.approx(2e-3)
    assert scaled_learning_rate(1e-3, 2) == pytest.approx(1e-3 * 2 ** 0.5)
    for bad in ((0, 1), (32, 0)):
        with pytest.raises(ValueError):
            global_batch_size(*bad)
    with pytest.raises(ValueError):
        scaled_learning_rate(1e-3, 0)


def test_one_device_builds_exactly_as_without_strategy():
    """Under the default strategy (CPU, one device) a training step's scope changes nothing:
    no strategy captured by the model, the learning rate as given, plain batch norm."""
    import types

    import keras

    from shared.models.layers import build_mlp
    from shared.models.fit import compile_regressor, replicas_of, strategy_of, under_strategy

    @under_strategy
    def step(data, cfg):
        model = compile_regressor(build_mlp(3, (4,), 0.0, 0.0, 1.0), 1e-3)
        return model, strategy_of(cfg)

    model, strategy = step(None, types.SimpleNamespace(strategy=None))
    assert strategy.num_replicas_in_sync == 1 and replicas_of(model) == 1
    assert model._distribute_strategy is None  # what Keras keeps outside any scope
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert rate == pytest.approx(1e-3, rel=1e-7)  # stored as float32
    assert model.get_layer("hidden1_bn").synchronized is False
