"""tf.distribute: a MirroredStrategy over two logical CPUs trains, resumes, and writes ordinary weight files."""
import json
import os
import subprocess
import sys
import textwrap

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
