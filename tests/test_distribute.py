"""tf.distribute: a MirroredStrategy over two logical CPUs trains, resumes, and writes ordinary weight files;
a MultiWorkerMirroredStrategy of two local worker processes trains in sync, and only the chief writes the folder."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from pathlib import Path

import numpy as np
import pytest

# Logical devices must be configured before TensorFlow initialises: the distributed run is a fresh process.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from n2v_tf import N2V, N2VConfig
    basedir = sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(100, 30, (4, 64, 64, 1)).astype("float32")
    X_val = rng.normal(100, 30, (5, 32, 32, 1)).astype("float32")  # 5: the last batch of 1 cannot be split
    kw = dict(unet_kern_size=3, unet_n_first=8, unet_n_depth=1, train_epochs=2, train_steps_per_epoch=2,
              train_batch_size=4, n2v_patch_shape=(32, 32), n2v_perc_pix=3.0, train_tensorboard=False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync, "errors": []}
    with strategy.scope():
        model = N2V(N2VConfig(X, **kw), "m", basedir)
        odd = N2V(N2VConfig(X, **{**kw, "train_batch_size": 3}), None, None)
    try:
        odd.train(X, X_val, verbose=0)
    except ValueError as e:
        out["errors"].append(str(e))
    try:
        model.prepare_for_training(optimizer=keras.optimizers.Adam())  # created outside the scope
    except ValueError as e:
        out["errors"].append(str(e))
    h1 = model.train(X, X_val, epochs=1, seed=1, verbose=0)                 # outside the scope
    with strategy.scope():
        h2 = model.train(X, X_val, epochs=2, resume=True, verbose=0)        # inside, continuing
    out["loss"] = h1.history["loss"] + h2.history["loss"]
    out["val_loss"] = h1.history["val_loss"] + h2.history["val_loss"]
    model.load_weights("weights_last.h5")
    np.save(os.path.join(basedir, "pred.npy"), model.predict(X[0, ..., 0], axes="YX"))
    np.save(os.path.join(basedir, "x.npy"), X[0, ..., 0])
    with open(os.path.join(basedir, "result.json"), "w") as f:
        json.dump(out, f)
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_and_saves_single_device_weights(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads((tmp_path / "result.json").read_text())
    assert out["replicas"] == 2
    assert len(out["loss"]) == 2 and np.all(np.isfinite(out["loss"] + out["val_loss"]))
    batch_error, optimizer_error = out["errors"]
    assert "train_batch_size=3" in batch_error and "2 replicas" in batch_error and "multiple of 2" in batch_error
    assert "optimizer" in optimizer_error and "strategy.scope()" in optimizer_error

    from n2v_tf import N2V
    model = N2V(None, "m", str(tmp_path))  # this process: one device, no strategy
    model.load_weights("weights_last.h5")
    expected = np.load(tmp_path / "pred.npy")
    np.testing.assert_allclose(model.predict(np.load(tmp_path / "x.npy"), axes="YX"), expected, atol=1e-5, rtol=0)


# One worker of a MultiWorkerMirroredStrategy (TF_CONFIG in the environment); both run it with the same basedir.
WORKER = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    replaced = []                    # every file renamed into place, i.e. every (atomic) write of n2v_tf
    _replace = os.replace
    def replace(src, dst, *args, **kwargs):
        replaced.append(os.path.abspath(dst))
        return _replace(src, dst, *args, **kwargs)
    os.replace = replace
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()   # before any other TensorFlow call
    import keras
    from n2v_tf import N2V, N2VConfig
    basedir, out = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(100, 30, (4, 64, 64, 1)).astype("float32")
    X_val = rng.normal(100, 30, (4, 32, 32, 1)).astype("float32")
    config = N2VConfig(X, unet_kern_size=3, unet_n_first=8, unet_n_depth=1, train_epochs=2, train_steps_per_epoch=2,
                       train_batch_size=4, n2v_patch_shape=(32, 32), n2v_perc_pix=3.0, train_tensorboard=False)
    with strategy.scope():
        model = N2V(config, "m", basedir)
    history = model.train(X, X_val, seed=1, verbose=0)
    np.save(out + "_x.npy", X[0, ..., 0])
    np.save(out + "_pred.npy", model.predict(X[0, ..., 0], axes="YX"))
    np.savez(out + "_weights.npz", *model.keras_model.get_weights())
    resolver = strategy.cluster_resolver
    with open(out + ".json", "w") as f:
        json.dump({"task": [resolver.task_type, resolver.task_id], "replicas": strategy.num_replicas_in_sync,
                   "loss": history.history["loss"], "val_loss": history.history["val_loss"],
                   "replaced": replaced, "logdir": str(model.logdir)}, f)
""")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_workers(tmp_path, basedir, n, timeout):
    """Start ``n`` local workers of one cluster; wait for all (killing the others as soon as one fails)."""
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(n)]}
    procs, logs = [], []
    for i in range(n):
        (tmp_path / f"tmp{i}").mkdir()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "",
               "TMPDIR": str(tmp_path / f"tmp{i}"),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        logs.append(open(tmp_path / f"worker{i}.log", "w"))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(basedir), str(tmp_path / f"worker{i}")],
                                      stdout=logs[-1], stderr=subprocess.STDOUT, env=env))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and any(p.poll() is None for p in procs) \
                and not any(p.poll() for p in procs):
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for f in logs:
            f.close()
    for i, p in enumerate(procs):
        log = (tmp_path / f"worker{i}.log").read_text()[-4000:]
        assert p.returncode == 0, f"worker {i} exited with {p.returncode} (killed: timeout or another worker failed)" \
                                  f":\n{log}"


@pytest.mark.slow
def test_multi_worker_strategy_trains_in_sync_and_only_the_chief_writes(tmp_path):
    basedir = tmp_path / "models"
    _run_workers(tmp_path, basedir, 2, timeout=300)
    out = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [o["task"] for o in out] == [["worker", 0], ["worker", 1]]
    assert all(o["replicas"] == 2 for o in out)
    for o in out:
        assert len(o["loss"]) == 2 and np.all(np.isfinite(o["loss"] + o["val_loss"]))
    assert out[0]["loss"] == out[1]["loss"] and out[0]["val_loss"] == out[1]["val_loss"]  # all-reduced

    weights = [np.load(tmp_path / f"worker{i}_weights.npz") for i in range(2)]
    assert len(weights[0].files) > 0 and weights[0].files == weights[1].files
    for k in weights[0].files:   # in sync: the all-reduced gradients, and the averaged batch-norm statistics
        np.testing.assert_array_equal(weights[0][k], weights[1][k])
    pred = [np.load(tmp_path / f"worker{i}_pred.npy") for i in range(2)]
    np.testing.assert_array_equal(pred[0], pred[1])

    # only the chief wrote the model folder; the other worker's temporary folder is gone
    folder = (basedir / "m").resolve()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "training_state.npz", "weights_best.h5",
                                                        "weights_last.h5"]
    chief, other = ({Path(p).parent for p in o["replaced"]} for o in out)
    assert chief == {folder}
    assert folder not in other and other, "the non-chief worker wrote nothing (or into the model folder)"
    assert all(Path(o["logdir"]).resolve() == folder for o in out)
    assert not any((tmp_path / "tmp1").iterdir()), "the non-chief worker left its temporary folder behind"

    from n2v_tf import N2V
    model = N2V(None, "m", str(basedir))  # this process: one device, no strategy; loads weights_best.h5
    np.testing.assert_allclose(model.predict(np.load(tmp_path / "worker0_x.npy"), axes="YX"), pred[0], atol=1e-5,
                               rtol=0)
