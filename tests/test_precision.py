"""Training speed switches: fused batch norm (same numbers as Keras' layer) and mixed precision (runs, float32 I/O,
quality of a tiny training)."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from n2v_tf import N2V, N2VConfig
from n2v_tf.nets import build_unet, float32_copy, use_fused_batch_norm


@pytest.mark.parametrize("n_dim", (2, 3))
def test_fused_batch_norm_trains_like_keras_batch_norm(n_dim):
    rng = np.random.default_rng(0)
    plain = build_unet(n_dim, 1, 1, 3, 4, batch_norm=True, batch_norm_momentum=0.9)
    fused = build_unet(n_dim, 1, 1, 3, 4, batch_norm=True, batch_norm_momentum=0.9)
    fused.set_weights(plain.get_weights())
    assert use_fused_batch_norm(fused) == sum(isinstance(la, keras.layers.BatchNormalization) for la in fused.layers)
    x = rng.normal(size=(3,) + (16,) * n_dim + (1,)).astype(np.float32) * 3 + 1
    a, b = plain(x, training=True).numpy(), fused(x, training=True).numpy()
    np.testing.assert_allclose(b, a, atol=1e-4 * np.ptp(a))
    for wa, wb in zip(plain.weights, fused.weights):  # moving mean and variance updated the same way
        np.testing.assert_allclose(wb.numpy(), wa.numpy(), rtol=1e-4, atol=1e-5, err_msg=wa.path)
    assert any(not np.allclose(w.numpy(), 0) and "moving_mean" in w.path for w in fused.weights)
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)


def test_fused_batch_norm_gradients_match():
    import tensorflow as tf
    rng = np.random.default_rng(1)
    plain = build_unet(2, 1, 1, 3, 4, batch_norm=True)
    fused = build_unet(2, 1, 1, 3, 4, batch_norm=True)
    fused.set_weights(plain.get_weights())
    use_fused_batch_norm(fused)
    x = tf.constant(rng.normal(size=(2, 16, 16, 1)).astype(np.float32))
    grads = []
    for net in (plain, fused):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(net(x, training=True) ** 2)
        grads.append(tape.gradient(loss, net.trainable_weights))
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in grads[0])
    for ga, gb in zip(*grads):  # (the biases before batch norm have zero gradient up to rounding)
        np.testing.assert_allclose(gb.numpy(), ga.numpy(), rtol=1e-3, atol=1e-5 * scale)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    clean = [(100 + 40 * np.sin(yy / (6 + k)) * np.cos(xx / (8 + k))).astype(np.float32) for k in range(3)]
    noisy = [(c + rng.normal(scale=12, size=c.shape)).astype(np.float32) for c in clean]
    return clean, noisy


def _psnr(clean, pred):
    return 10 * np.log10(np.ptp(clean) ** 2 / np.mean((clean - pred) ** 2))


@pytest.mark.slow
def test_mixed_precision_trains_keeps_float32_io_and_quality(tmp_path):
    clean, noisy = _data()
    X = [n[..., None] for n in noisy[:2]]
    psnr, init = {}, None
    for policy in (None, "mixed_bfloat16"):
        config = N2VConfig(X, unet_n_depth=2, unet_n_first=8, unet_kern_size=3, train_batch_size=8,
                           n2v_patch_shape=(32, 32), n2v_perc_pix=1.5, train_epochs=4, train_steps_per_epoch=25,
                           train_learning_rate=2e-3, train_tensorboard=False, train_mixed_precision=policy)
        model = N2V(config, f"m_{policy}", basedir=str(tmp_path))
        if init is None:
            init = model.keras_model.get_weights()
        model.keras_model.set_weights(init)  # same start and same batches: only the precision differs
        history = model.train(X, [noisy[2][..., None]], verbose=0, seed=0)
        assert np.isfinite(history.history["loss"]).all()
        assert model.keras_model.input.dtype == "float32" and model.keras_model.output.dtype == "float32"
        pred = model.predict(noisy[2], "YX")
        assert pred.dtype == np.float32
        psnr[policy] = _psnr(clean[2], pred)
        if policy is not None:
            assert model.keras_model.get_layer("channel_0down_level_0_no_0").dtype_policy.name == policy
            assert all(la.dtype_policy.name == "float32" for la in float32_copy(model.keras_model).layers)
            reloaded = N2V(None, f"m_{policy}", basedir=str(tmp_path))
            assert reloaded.config.train_mixed_precision == policy
            np.testing.assert_allclose(reloaded.predict(noisy[2], "YX"), pred, atol=1e-4 * np.ptp(pred))
    noisy_psnr = _psnr(clean[2], noisy[2])  # 16.5 dB; both policies reach 26-27 dB in 100 steps
    assert psnr[None] > noisy_psnr + 6 and psnr["mixed_bfloat16"] > noisy_psnr + 6, psnr
    # bfloat16 keeps 8 bits of mantissa: on this tiny, short training runs differ by up to about 1 dB either way
    # (benchmarks/bench_precision.py measures the difference on the quality protocol)
    assert abs(psnr["mixed_bfloat16"] - psnr[None]) < 2, psnr


def test_mixed_float16_uses_loss_scaling_and_saved_model_loads_without_n2v_tf(tmp_path):
    X = np.random.default_rng(2).normal(size=(4, 32, 32, 1)).astype(np.float32)
    config = N2VConfig(X, unet_n_depth=1, unet_n_first=4, n2v_patch_shape=(32, 32), train_batch_size=2,
                       train_mixed_precision="mixed_float16", train_tensorboard=False)
    model = N2V(config, "m", basedir=str(tmp_path))
    model.prepare_for_training()
    assert isinstance(model.keras_model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.keras_model.save(tmp_path / "m.keras")
    code = ("import sys, json, numpy as np, keras; m = keras.models.load_model(sys.argv[1], compile=False); "
            "y = m(np.zeros((1, 32, 32, 1), 'float32')); "
            "print(json.dumps([str(m.input.dtype), keras.backend.standardize_dtype(y.dtype), 'n2v_tf' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert json.loads(out) == ["float32", "float32", False]


def test_fused_batch_norm_is_the_default_of_new_configs_only():
    X = np.random.default_rng(3).normal(size=(2, 16, 16, 1)).astype(np.float32)
    for fused in (False, True):
        config = N2VConfig(X, unet_n_depth=1, unet_n_first=4, n2v_patch_shape=(16, 16), train_fused_batch_norm=fused)
        layers = [la for la in N2V(config, "m", basedir=None).keras_model.layers
                  if isinstance(la, keras.layers.BatchNormalization)]
        assert layers and all(("call" in la.__dict__) is fused for la in layers)
    assert N2VConfig(X).train_fused_batch_norm is True
    assert N2VConfig.preset("n2v-0.3", X).train_fused_batch_norm is False
    assert N2VConfig.update_loaded_config({"n_dim": 2})["train_fused_batch_norm"] is False
    with pytest.raises(ValueError, match="train_fused_batch_norm"):
        N2VConfig(X, train_fused_batch_norm="yes").validate()


@pytest.mark.parametrize("n_dim", (2, 3))
def test_convolutions_before_batch_norm_need_no_bias(n_dim):
    """Without the bias the same functions are computed: batch norm cancels it (in inference via its moving mean)."""
    rng = np.random.default_rng(5)
    biased = build_unet(n_dim, 1, 2, 3, 4, batch_norm=True, conv_bias=True)
    plain = build_unet(n_dim, 1, 2, 3, 4, batch_norm=True, conv_bias=False)
    bn_after = {la.name[:-3] for la in biased.layers if isinstance(la, keras.layers.BatchNormalization)}
    convs = [la for la in biased.layers if isinstance(la, (keras.layers.Conv2D, keras.layers.Conv3D))]
    assert bn_after and all(plain.get_layer(n).use_bias is False for n in bn_after)
    assert all(plain.get_layer(la.name).use_bias for la in convs if la.name not in bn_after)  # the output layer
    assert biased.count_params() - plain.count_params() == sum(biased.get_layer(n).filters for n in bn_after)
    for la in biased.layers:
        w = [rng.normal(size=v.shape).astype(np.float32) for v in la.get_weights()]
        if isinstance(la, keras.layers.BatchNormalization):
            w[1] = np.abs(w[1]) + 0.5  # gamma; beta, moving mean ...
            w[3] = np.abs(w[3]) + 0.5  # ... and a positive moving variance
        la.set_weights(w)
    for la in plain.layers:
        src = biased.get_layer(la.name).get_weights()
        if la.name in bn_after:
            la.set_weights(src[:1])   # the kernel only
        elif la.name.endswith("_bn") and la.name[:-3] in bn_after:
            gamma, beta, mean, var = src
            la.set_weights([gamma, beta, mean - biased.get_layer(la.name[:-3]).get_weights()[1], var])
        else:
            la.set_weights(src)
    x = rng.normal(size=(3,) + (16,) * n_dim + (1,)).astype(np.float32)
    for training in (False, True):
        a, b = biased(x, training=training).numpy(), plain(x, training=training).numpy()
        np.testing.assert_allclose(b, a, atol=1e-4 * np.ptp(a), err_msg=f"training={training}")
    without_bn = build_unet(n_dim, 1, 1, 3, 4, batch_norm=False, conv_bias=False)
    assert all(la.use_bias for la in without_bn.layers if isinstance(la, (keras.layers.Conv2D, keras.layers.Conv3D)))
    assert N2VConfig(x).unet_conv_bias is False
    assert N2VConfig.preset("n2v-0.3", x).unet_conv_bias is True
    assert N2VConfig.update_loaded_config({"n_dim": n_dim})["unet_conv_bias"] is True
    with pytest.raises(ValueError, match="unet_conv_bias"):
        N2VConfig(x, unet_conv_bias=1).validate()


def test_mixed_precision_config_is_checked_and_old_configs_get_float32():
    X = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="train_mixed_precision"):
        N2VConfig(X, train_mixed_precision="bfloat16").validate()
    assert N2VConfig.update_loaded_config({"n_dim": 2})["train_mixed_precision"] is None


@pytest.mark.parametrize("flags, expected", (("fpu avx2 avx512f amx_bf16 amx_tile", "mixed_bfloat16"),
                                             ("fpu avx2 avx512f avx512_bf16", "mixed_bfloat16"),
                                             ("fpu avx2 avx512f avx512_vnni", None), ("fpu avx2 fma", None)))
def test_auto_precision_follows_the_cpus_bfloat16_instructions(flags, expected, tmp_path, monkeypatch):
    import tensorflow as tf

    from n2v_tf.nets import resolve_mixed_precision
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # CPU only, as in CI
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert resolve_mixed_precision("auto", str(cpuinfo)) == expected
    assert resolve_mixed_precision("auto", str(tmp_path / "missing")) is None  # no flags to read: float32
    for policy in (None, "float32", "mixed_float16", "mixed_bfloat16"):  # explicit choices are kept
        assert resolve_mixed_precision(policy, str(cpuinfo)) == policy


@pytest.mark.parametrize("capability, expected", (((9, 0), "mixed_bfloat16"), ((8, 0), "mixed_bfloat16"),
                                                  ((7, 5), "mixed_float16"), ((6, 1), None)))
def test_auto_precision_on_gpus_follows_the_compute_capability(capability, expected, monkeypatch):
    import tensorflow as tf

    from n2v_tf.nets import resolve_mixed_precision
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"compute_capability": capability})
    assert resolve_mixed_precision("auto") == expected


def test_auto_precision_builds_the_resolved_policy_and_predicts_float32(tmp_path, monkeypatch):
    import n2v_tf.nets as nets
    X = np.random.default_rng(4).normal(size=(4, 32, 32, 1)).astype(np.float32)
    config = N2VConfig(X, unet_n_depth=1, unet_n_first=4, n2v_patch_shape=(32, 32), train_batch_size=2,
                       train_mixed_precision="auto", train_tensorboard=False)
    assert config.is_valid()
    for has_bf16, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(nets, "_cpu_has_bfloat16", lambda cpuinfo="": has_bf16)
        model = N2V(config, f"m{has_bf16}", basedir=str(tmp_path))
        assert model.keras_model.get_layer("channel_0down_level_0_no_0").dtype_policy.name == policy
        first = model.predict(X[0, ..., 0], "YX")  # a small first call: eager, on the float32 folded copy
        assert first.dtype == np.float32
        again = model.predict(X[0, ..., 0], "YX")  # traced
        np.testing.assert_allclose(again, first, atol=1e-5 * max(np.ptp(first), 1e-6))
        saved = json.loads((tmp_path / f"m{has_bf16}" / "config.json").read_text())
        assert saved["train_mixed_precision"] == "auto"  # resolved again where the folder is trained next


def test_auto_precision_keeps_pn2v_in_float32(monkeypatch):
    import n2v_tf.nets as nets
    from n2v_tf import GaussianMixtureNoiseModel
    monkeypatch.setattr(nets, "_cpu_has_bfloat16", lambda cpuinfo="": True)
    X = np.random.default_rng(5).normal(size=(2, 32, 32, 1)).astype(np.float32)
    nm = GaussianMixtureNoiseModel(np.array([[0.7], [0.0], [0.0]]), min_signal=-3.0, max_signal=3.0)
    for probabilistic, policy in ((False, "mixed_bfloat16"), (True, "float32")):
        config = N2VConfig(X, unet_n_depth=1, unet_n_first=4, probabilistic=probabilistic, pn2v_samples=4,
                           train_tensorboard=False)
        assert config.train_mixed_precision == "auto"  # the default of new configs
        model = N2V(config, None, basedir=None, noise_model=nm if probabilistic else None)
        assert model.keras_model.get_layer("channel_0down_level_0_no_0").dtype_policy.name == policy
