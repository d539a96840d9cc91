"""The recommended network and training of new configs (issue 15): linear upsampling from built-in layers, PyTorch's
initialisation, the cosine learning-rate schedule, ``N2VConfig.preset``, and old configs keeping n2v 0.3.3's
network."""
import json

import keras
import numpy as np
import pytest

from n2v_tf import N2V, N2VConfig
from n2v_tf.config import N2V_033, PRESETS
from n2v_tf import nets
from n2v_tf.nets import _upsample, build_unet, receptive_field_radius

from conftest import random_batch_norm, smooth_image, tiny_config


def _linear_upsample_reference(x: np.ndarray, axes) -> np.ndarray:
    """Half-pixel linear 2x upsampling along ``axes`` (edge values repeated), separably, in NumPy."""
    for ax in axes:
        n = x.shape[ax]
        prev = np.take(x, np.clip(np.arange(n) - 1, 0, n - 1), axis=ax)
        nxt = np.take(x, np.clip(np.arange(n) + 1, 0, n - 1), axis=ax)
        even, odd = 0.25 * prev + 0.75 * x, 0.75 * x + 0.25 * nxt
        x = np.stack([even, odd], axis=ax + 1).reshape(x.shape[:ax] + (2 * n,) + x.shape[ax + 1:])
    return x


@pytest.mark.parametrize("n_dim", (2, 3))
def test_linear_upsampling_is_linear_interpolation_inside_the_image(n_dim):
    inp = keras.Input((None,) * n_dim + (3,))
    model = keras.Model(inp, _upsample(inp, n_dim, "linear", "up"))
    x = np.random.default_rng(n_dim).normal(size=(2,) + (5, 6, 7)[-n_dim:] + (3,)).astype(np.float32)
    y = np.asarray(model(x))
    ref = _linear_upsample_reference(x.astype(np.float64), range(1, n_dim + 1))
    assert y.shape == ref.shape
    inner = (slice(None),) + (slice(1, -1),) * n_dim
    np.testing.assert_allclose(y[inner], ref[inner], atol=1e-5)
    # the outermost pixels see the zero padding: 3/4 of the edge value instead of all of it
    rest = (slice(None), 0) + (slice(1, -1),) * (n_dim - 1)
    np.testing.assert_allclose(y[rest], 0.75 * ref[rest], atol=1e-5)
    # fixed weights: nothing to train, and the layers are Keras built-ins
    assert not model.trainable_weights
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}


@pytest.mark.parametrize("n_dim", (2, 3))
def test_receptive_field_bound_holds_with_linear_upsampling(n_dim):
    depth, k = 2, 3
    r = receptive_field_radius(depth, k, upsampling="linear")
    assert r > receptive_field_radius(depth, k)
    model = build_unet(n_dim, 1, n_depth=depth, kern_size=k, n_first=4, batch_norm=False, upsampling="linear",
                       init="fan_in_uniform")
    size = 2 * r + 8 - (2 * r + 8) % 4
    x = np.random.default_rng(1).normal(size=(1,) + (size,) * n_dim + (1,)).astype(np.float32)
    c = size // 2
    x2 = x.copy()
    x2[(0,) + (c,) * n_dim + (0,)] += 100.0
    changed = np.argwhere(np.abs(np.asarray(model(x2)) - np.asarray(model(x)))[0, ..., 0] > 1e-6)
    assert len(changed) > 0
    assert np.abs(changed - c).max() <= r


@pytest.mark.parametrize("n_dim", (2, 3))
def test_fan_in_uniform_initialisation_is_pytorchs(n_dim):
    model = build_unet(n_dim, 1, n_depth=1, n_first=8, init="fan_in_uniform")
    conv_class = keras.layers.Conv2D if n_dim == 2 else keras.layers.Conv3D
    convs = [layer for layer in model.layers if isinstance(layer, conv_class) and layer.trainable]
    assert convs
    for layer in convs:
        kernel, bias = layer.get_weights()
        bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))  # fan_in = kernel volume x input channels
        assert np.abs(kernel).max() <= bound * 1.0001
        assert np.abs(bias).max() <= bound * 1.0001
        assert np.any(bias != 0)  # PyTorch initialises biases too; glorot_uniform leaves them 0
        if kernel.size > 500:
            assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.15)
    glorot = build_unet(n_dim, 1, n_depth=1, n_first=8)
    assert all(not np.any(layer.get_weights()[1]) for layer in glorot.layers
               if isinstance(layer, conv_class) and layer.trainable)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_linear_upsampling_model_tiles_exactly(n_dim, tmp_path):
    shape = (24, 40, 44)[-n_dim:] if n_dim == 3 else (72, 88)
    _, noisy = smooth_image(shape, seed=3)
    X = noisy[np.newaxis, ..., np.newaxis]
    config = tiny_config(X, unet_upsampling="linear", unet_init="fan_in_uniform", unet_wide_decoder=True)
    model = N2V(config, "lin", basedir=str(tmp_path))
    random_batch_norm(model.keras_model, np.random.default_rng(0))
    axes = "ZYX" if n_dim == 3 else "YX"
    whole = model.predict(noisy, axes)
    tiled = model.predict(noisy, axes, n_tiles=(2,) * n_dim)
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * float(np.ptp(whole)))


def test_presets_give_the_documented_configs():
    X = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    recommended = dict(batch_norm_momentum=0.9, unet_wide_decoder=True, unet_upsampling="linear",
                       unet_init="fan_in_uniform", train_lr_schedule="cosine", unet_kern_size=3, n2v_perc_pix=1.5,
                       train_loss="mse", train_fused_batch_norm=True, unet_conv_bias=False, train_restore_best=False,
                       train_mixed_precision="auto", train_recalibrate_bn=True, n2v_struct_replacement="local",
                       train_calibrate_output=True)
    expected = {
        "n2v": dict(recommended, n2v_manipulator="uniform_withCP", blurpool=False, skip_skipone=False,
                    unet_residual=False, probabilistic=False),
        "n2v2": dict(recommended, n2v_manipulator="median", blurpool=True, skip_skipone=True, unet_residual=False),
        "pn2v": dict(recommended, probabilistic=True, blurpool=False, train_mixed_precision=None),
        "n2v-0.3": dict(batch_norm_momentum=0.99, unet_wide_decoder=False, unet_upsampling="nearest",
                        unet_init="glorot_uniform", train_lr_schedule=None, unet_kern_size=5, n2v_perc_pix=1.5,
                        train_loss="mae", n2v_manipulator="uniform_withCP", train_fused_batch_norm=False,
                        unet_conv_bias=True, train_restore_best=True, train_mixed_precision=None,
                        train_recalibrate_bn=False, n2v_struct_replacement="patch", train_calibrate_output=False),
    }
    for name, fields in expected.items():
        config = N2VConfig.preset(name, X)
        assert {k: getattr(config, k) for k in fields} == fields, name
        assert config.is_valid(), name
    mask = [[0, 1, 1, 1, 0]]
    s = N2VConfig.preset("structn2v", X, structN2Vmask=mask)
    assert s.structN2Vmask == mask and s.unet_upsampling == "linear" and s.n2v_perc_pix == 0.198 and s.is_valid()
    # keyword arguments win over the preset
    assert N2VConfig.preset("n2v2", X, unet_upsampling="nearest", train_epochs=7).unet_upsampling == "nearest"
    assert set(PRESETS) == {"n2v", "n2v2", "structn2v", "pn2v", "n2v-0.3"}


def test_preset_errors_name_the_choices():
    X = np.zeros((2, 16, 16, 1), np.float32) + np.arange(16, dtype=np.float32)[:, None, None]
    with pytest.raises(ValueError, match="unknown preset 'n2v3'.*n2v2.*did you mean"):
        N2VConfig.preset("n2v3", X)
    with pytest.raises(ValueError, match="structN2Vmask"):
        N2VConfig.preset("structn2v", X)


def test_new_configs_get_the_recommended_network_and_old_ones_keep_n2vs(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    new = N2VConfig(X)
    assert (new.unet_upsampling, new.unet_init, new.batch_norm_momentum, new.unet_wide_decoder,
            new.train_lr_schedule, new.train_restore_best) == ("linear", "fan_in_uniform", 0.9, True, "cosine", False)
    # a config.json written before these fields existed (n2v 0.3.x, older n2v_tf) keeps n2v 0.3.3's values
    old = {k: v for k, v in vars(new).items() if k not in N2V_033}
    loaded = N2VConfig(**N2VConfig.update_loaded_config(json.loads(json.dumps(old))))
    assert {k: getattr(loaded, k) for k in N2V_033} == N2V_033
    legacy = N2VConfig.preset("n2v-0.3", X)
    assert {k: getattr(legacy, k) for k in N2V_033} == N2V_033


def _learning_rates(config, tmp_path, name):
    X = np.random.default_rng(0).normal(size=(8, 32, 32, 1)).astype(np.float32)
    model = N2V(config, name, basedir=str(tmp_path))
    history = model.train(X[:6], X[6:], verbose=0, seed=0)
    return np.array(history.history["lr"])


@pytest.mark.slow
def test_cosine_schedule_decays_the_learning_rate_to_zero(tmp_path):
    X = np.zeros((1, 32, 32, 1), np.float32) + np.arange(32, dtype=np.float32)[:, None]
    epochs, steps, lr = 3, 4, 1e-3
    config = tiny_config(X, train_epochs=epochs, train_steps_per_epoch=steps, train_learning_rate=lr)
    assert config.train_lr_schedule == "cosine"
    logged = _learning_rates(config, tmp_path, "cos")
    # the logger reads the rate after the epoch's last step, which ran with t = (epoch + 1) * steps - 1
    t = np.arange(1, epochs + 1) * steps - 1
    np.testing.assert_allclose(logged, lr * 0.5 * (1 + np.cos(np.pi * t / (epochs * steps))), rtol=1e-5)
    constant = tiny_config(X, train_epochs=epochs, train_steps_per_epoch=steps, train_learning_rate=lr,
                           train_lr_schedule=None)
    np.testing.assert_allclose(_learning_rates(constant, tmp_path, "const"), lr, rtol=1e-6)


def test_invalid_new_fields_are_named():
    X = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    bad = N2VConfig(X, unet_upsampling="bilinear", unet_init="he", train_lr_schedule="linear",
                    train_augment="yes", train_restore_best=1, train_recalibrate_bn="on",
                    n2v_struct_replacement="random", train_calibrate_output=None).invalid_fields()
    assert set(bad) >= {"unet_upsampling", "unet_init", "train_lr_schedule", "train_augment", "train_restore_best",
                        "train_recalibrate_bn", "n2v_struct_replacement", "train_calibrate_output"}
    assert "must be a bool" in bad["train_calibrate_output"] and "None" in bad["train_calibrate_output"]
    assert "'random'" in bad["n2v_struct_replacement"] and "'local'" in bad["n2v_struct_replacement"]
    assert "must be a bool" in bad["train_recalibrate_bn"] and "'on'" in bad["train_recalibrate_bn"]
    assert "'bilinear'" in bad["unet_upsampling"] and "'linear'" in bad["unet_upsampling"]


@pytest.mark.parametrize("restore_best", (True, False))
def test_restore_best_chooses_the_weights_after_training_and_when_loading(restore_best, tmp_path):
    X = np.random.default_rng(1).normal(size=(8, 32, 32, 1)).astype(np.float32)
    config = tiny_config(X, train_epochs=3, train_steps_per_epoch=3, train_restore_best=restore_best)
    model = N2V(config, "m", basedir=str(tmp_path))
    init = [w.copy() for w in model.keras_model.get_weights()]
    model.train(X[:6], X[6:], verbose=0, seed=0)
    trained = model.keras_model.get_weights()

    def file_weights(name):
        other = N2V(config, f"probe_{name}", basedir=None)
        nets.load_weights_h5(other.keras_model, str(tmp_path / "m" / name))
        return other.keras_model.get_weights()

    chosen = "weights_best.h5" if restore_best else "weights_last.h5"
    for a, b in zip(trained, file_weights(chosen)):
        np.testing.assert_array_equal(a, b)  # the model after train() holds the chosen file's weights
    # make the two files differ for sure, then load the folder as a new session would
    other = "weights_last.h5" if restore_best else "weights_best.h5"
    model.keras_model.set_weights(init)
    model.keras_model.save_weights(str(tmp_path / "m" / other))
    loaded = N2V(None, "m", basedir=str(tmp_path)).keras_model.get_weights()
    for a, b in zip(loaded, trained):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["train_restore_best"] is restore_best


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("n_dim", (2, 3))
def test_recalibrated_batch_norm_predicts_what_training_mode_computes(n_dim):
    rng = np.random.default_rng(3)
    net = build_unet(n_dim=n_dim, n_first=4, n_depth=2, kern_size=3, batch_norm=True)
    random_batch_norm(net, rng)
    shape = (8, 16, 16) if n_dim == 3 else (32, 32)
    b1, b2 = (rng.normal(size=(3,) + shape + (1,)).astype(np.float32) for _ in range(2))
    train_mode = keras.models.clone_model(net)
    train_mode.set_weights(net.get_weights())
    expected = np.asarray(train_mode(b1, training=True))
    assert np.abs(np.asarray(net(b1, training=False)) - expected).max() > 1e-2  # the moving statistics differ
    # one batch, given twice: the moving statistics become its batch statistics, so inference == training mode
    assert nets.recalibrate_batch_norm(net, [b1, b1]) == 2
    np.testing.assert_allclose(np.asarray(net(b1, training=False)), expected, atol=1e-4 * float(np.ptp(expected)))
    # two batches: the first layer's statistics are the averages of the per-batch moments of its input (a convolution
    # of the input, whatever the other layers do), in NumPy
    first = _bn_layers(net)[0]
    conv = keras.Model(net.input, first.input)
    assert nets.recalibrate_batch_norm(net, iter([b1, b2])) == 2
    moments = [np.asarray(conv(b), np.float64).reshape(-1, first.moving_mean.shape[0]) for b in (b1, b2)]
    np.testing.assert_allclose(first.moving_mean.numpy(), np.mean([m.mean(0) for m in moments], 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.moving_variance.numpy(), np.mean([m.var(0) for m in moments], 0), rtol=1e-4)
    # nothing to do: no batches, or no batch normalisation
    before = [w.copy() for w in net.get_weights()]
    assert nets.recalibrate_batch_norm(net, []) == 0
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert nets.recalibrate_batch_norm(build_unet(n_dim=n_dim, n_first=4, batch_norm=False), [b1]) == 0


@pytest.mark.parametrize("n_dim", (2, 3))
def test_training_recalibrates_batch_norm_and_saves_it(n_dim, tmp_path):
    from n2v_tf.data import N2VSequence
    from n2v_tf.models import BN_RECALIBRATION_BATCHES
    shape = (16, 32, 32) if n_dim == 3 else (64, 64)
    X = np.stack([smooth_image(shape, seed=s)[1] for s in range(4)])[..., None]
    models = {}
    for on in (True, False):
        config = tiny_config(X, train_epochs=2, train_steps_per_epoch=3, train_mixed_precision=None,
                             train_recalibrate_bn=on, train_calibrate_output=False)
        keras.utils.set_random_seed(0)
        models[on] = N2V(config, f"m{on}", basedir=str(tmp_path))
        models[on].train(X[:3], X[3:], verbose=0, seed=5)
    on, off = models[True], models[False]
    stats = {id(v) for layer in _bn_layers(on.keras_model) for v in (layer.moving_mean, layer.moving_variance)}
    for a, b in zip(on.keras_model.weights, off.keras_model.weights):  # the training itself is the same
        if id(a) not in stats:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the statistics are those of 6 (= steps run, < BN_RECALIBRATION_BATCHES) unmasked training batches
    assert BN_RECALIBRATION_BATCHES > 6
    c = on.config
    seq = N2VSequence(X[:3], c.n2v_patch_shape, batch_size=c.train_batch_size, seed=5, means=c.normalization()[0],
                      stds=c.normalization()[1])
    rng = np.random.default_rng((5, 2**31 - 1))
    assert nets.recalibrate_batch_norm(off.keras_model, [seq.crop_batch(rng) for _ in range(6)]) == 6
    for a, b in zip(_bn_layers(on.keras_model), _bn_layers(off.keras_model)):
        np.testing.assert_allclose(a.moving_mean.numpy(), b.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.moving_variance.numpy(), b.moving_variance.numpy(), rtol=1e-5)
    # ...saved in the weight file the folder loads, so a new session predicts the same
    img = X[3, ..., 0]
    axes = "ZYX" if n_dim == 3 else "YX"
    np.testing.assert_allclose(N2V(None, "mTrue", basedir=str(tmp_path)).predict(img, axes), on.predict(img, axes),
                               rtol=1e-5, atol=1e-5)


def _masked_batches(rng, shape, n_batches=3, n_channel=1, perc=20.0):
    """``(X_masked, Y)`` batches of random inputs, as ``mask_batch`` gives them, and the network's prediction."""
    from n2v_tf.masking import mask_batch
    out = []
    for _ in range(n_batches):
        x = rng.normal(size=(2,) + shape + (n_channel,)).astype(np.float32)
        xm, y = mask_batch(x, perc_pix=perc, rng=rng)
        out.append((xm, y))
    return out


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("residual, k, n_channel, single", [(False, 1, 1, True), (True, 1, 1, True),
                                                             (False, 3, 2, True), (False, 1, 2, False)])
def test_calibrate_output_fits_gain_and_offset_per_channel_and_folds_them(n_dim, residual, k, n_channel, single):
    """Targets made as ``gain * f + offset`` of the network's own blind-spot prediction ``f`` (plus noise that is
    independent of ``f``) are fitted back, per channel, and the folded network predicts ``gain * f + offset``."""
    rng = np.random.default_rng(7)
    net = build_unet(n_dim=n_dim, n_channel_in=n_channel, n_first=4, n_depth=1, kern_size=3, residual=residual,
                     n_out_per_channel=k, single_net_per_channel=single)
    random_batch_norm(net, rng)
    shape = (8, 16, 16) if n_dim == 3 else (32, 32)
    gain, offset = np.array([1.3, 0.8])[:n_channel], np.array([-0.4, 0.25])[:n_channel]
    batches, before = [], []
    for xm, y in _masked_batches(rng, shape, n_channel=n_channel):
        out = np.asarray(net(xm, training=False))
        f = out.reshape(out.shape[:-1] + (n_channel, k)).mean(-1)
        part = f - xm if residual else f  # a residual network: its convolutional part is calibrated
        target = gain * part + offset + (xm if residual else 0) + 0.01 * rng.normal(size=f.shape)
        y = y.copy()
        y[..., :n_channel] = target
        batches.append((xm, y))
        before.append(out)
    gains, offsets = nets.calibrate_output(net, iter(batches), n_out_per_channel=k, residual=residual)
    np.testing.assert_allclose(gains, gain, rtol=2e-2)
    np.testing.assert_allclose(offsets, offset, atol=2e-2)
    for (xm, _), out in zip(batches, before):  # every sample of a channel gets its channel's gain and offset
        base = np.repeat(xm, k, axis=-1) if residual else 0
        expected = np.repeat(gains, k) * (out - base) + np.repeat(offsets, k) + base
        np.testing.assert_allclose(np.asarray(net(xm, training=False)), expected, atol=1e-4)
    # the folded network is calibrated: a second fit on the same data finds gain 1 and offset 0
    again = nets.calibrate_output(net, batches, n_out_per_channel=k, residual=residual)
    np.testing.assert_allclose(again[0], 1, atol=1e-4)
    np.testing.assert_allclose(again[1], 0, atol=1e-4)


def test_calibrate_output_refuses_too_few_pixels_and_foreign_networks():
    rng = np.random.default_rng(0)
    net = build_unet(n_dim=2, n_first=4, n_depth=1, kern_size=3)
    weights = [w.copy() for w in net.get_weights()]
    xm, y = _masked_batches(rng, (16, 16), n_batches=1, perc=1.0)[0]
    with pytest.raises(ValueError, match=r"calibrate_output: no gain and offset.*channel 0: \d masked pixel\(s\); "
                                         r"at least 100 needed"):
        nets.calibrate_output(net, [(xm, y)])
    for a, b in zip(weights, net.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing changed
    inp = keras.Input((None, None, 1))
    with pytest.raises(ValueError, match="not a network of build_unet"):
        nets.calibrate_output(keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp)), [(xm, y)])


@pytest.mark.parametrize("n_dim", (2, 3))
def test_training_calibrates_the_output_on_validation_and_saves_it(n_dim, tmp_path, monkeypatch, caplog):
    """With ``train_calibrate_output`` the trained network equals the uncalibrated one with the validation fit
    folded into its head (nothing else changes), and the model folder predicts the calibrated values."""
    import logging
    from n2v_tf import models as models_module
    from n2v_tf.data import validation_data
    shape = (16, 32, 32) if n_dim == 3 else (64, 64)
    X = np.stack([smooth_image(shape, seed=s)[1] for s in range(4)])[..., None]
    monkeypatch.setattr(models_module, "CALIBRATION_PIXELS", 1)  # one draw: the validation masking itself
    models = {}
    for on in (True, False):
        config = tiny_config(X, train_epochs=2, train_steps_per_epoch=3, train_mixed_precision=None,
                             train_calibrate_output=on, n2v_perc_pix=5.0)
        keras.utils.set_random_seed(0)
        models[on] = N2V(config, f"m{on}", basedir=str(tmp_path))
        models[on].train(X[:3], X[3:], verbose=0, seed=5)
    on, off = models[True], models[False]
    assert off.output_calibration is None
    gains, offsets = (np.array(on.output_calibration[k]) for k in ("gain", "offset"))
    assert gains.shape == offsets.shape == (1,) and abs(gains[0] - 1) > 1e-3  # a 6-step training is not calibrated
    heads = {"channel_0final"}
    for a, b in zip(on.keras_model.layers, off.keras_model.layers):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            if a.name not in heads:
                np.testing.assert_array_equal(wa, wb)  # the training itself is the same
    c = on.config
    val = validation_data(X[3:], c.n2v_patch_shape, c.n2v_perc_pix, c.n2v_manipulator, c.n2v_neighborhood_radius,
                          means=c.normalization()[0], stds=c.normalization()[1], div_by=4)
    expected = nets.calibrate_output(off.keras_model, [val])  # the same fit, done by hand on the same patches
    np.testing.assert_allclose(gains, expected[0], rtol=1e-5)
    np.testing.assert_allclose(offsets, expected[1], atol=1e-6)
    img = X[3, ..., 0]
    axes = "ZYX" if n_dim == 3 else "YX"
    np.testing.assert_allclose(on.predict(img, axes), off.predict(img, axes), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(N2V(None, "mTrue", basedir=str(tmp_path)).predict(img, axes), on.predict(img, axes),
                               rtol=1e-5, atol=1e-5)
    # by default the validation patches are masked anew until ~CALIBRATION_PIXELS blind spots are fitted
    monkeypatch.setattr(models_module, "CALIBRATION_PIXELS", 3.5 * float((val[1][..., 1] > 0).sum()))
    with caplog.at_level(logging.INFO, logger="n2v_tf.models"):
        keras.utils.set_random_seed(0)
        N2V(c, "m4", basedir=str(tmp_path)).train(X[:3], X[3:], verbose=0, seed=5)
    assert "output calibrated on 4 mask draw(s)" in caplog.text


def test_training_warns_when_the_fitted_gain_is_far_from_one(monkeypatch):
    """A gain far from 1 means the network hardly follows the data: the user is told (and the fit is kept)."""
    from n2v_tf import models as models_module
    X = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    model = N2V(tiny_config(X, train_epochs=1, train_steps_per_epoch=1), None, basedir=None)
    monkeypatch.setattr(models_module, "calibrate_output", lambda *a, **k: (np.float32([0.04]), np.float32([0.1])))
    with pytest.warns(UserWarning, match=r"gain far from 1 \(channel 0: 0\.040\).*train longer"):
        model.train(X[:3], X[3:], verbose=0, seed=0)
    assert model.output_calibration == {"gain": [pytest.approx(0.04)], "offset": [pytest.approx(0.1)]}
    monkeypatch.setattr(models_module, "calibrate_output", lambda *a, **k: (np.float32([1.05]), np.float32([0.0])))
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="train_calibrate_output")
        model.train(X[:3], X[3:], verbose=0, seed=0)


def _curve_reference(f, t, n_bins):
    """NumPy reference of :func:`n2v_tf.nets.fit_curve`: least squares on the dense matrix of hat functions at the
    quantile knots."""
    knots = np.unique(np.quantile(f, np.linspace(0, 1, n_bins + 1)))
    basis = np.stack([np.interp(f, knots, np.eye(len(knots))[k]) for k in range(len(knots))], axis=1)
    return knots, np.linalg.lstsq(basis, t, rcond=None)[0]


def test_fit_curve_is_the_least_squares_linear_spline():
    """``fit_curve`` equals a dense least-squares fit of hat functions (NumPy reference); one segment is the straight
    least-squares line; a curve with a bend is recovered from noisy targets and continued linearly beyond the
    knots by ``apply_curve``; too few pixels or a constant prediction are refused."""
    rng = np.random.default_rng(0)
    f = rng.gamma(2.0, 1.0, 20_000)
    truth = np.where(f < 2, 0.5 * f, 1.0 + 1.5 * (f - 2))  # a bend at 2
    t = truth + rng.normal(0, 0.5, f.shape)
    for n_bins in (1, 3, 16):
        knots, values = nets.fit_curve(f, t, n_bins)
        ref_knots, ref_values = _curve_reference(f, t, n_bins)
        np.testing.assert_allclose(knots, ref_knots)
        np.testing.assert_allclose(values, ref_values, rtol=1e-8, atol=1e-8)
    gain, offset = np.polyfit(f, t, 1)
    knots, values = nets.fit_curve(f, t, 1)
    np.testing.assert_allclose(nets.apply_curve(f, knots, values), gain * f + offset, rtol=1e-5, atol=1e-5)
    knots, values = nets.fit_curve(f, t, 16)
    grid = np.linspace(0.5, 6, 50)
    truth_grid = np.where(grid < 2, 0.5 * grid, 1.0 + 1.5 * (grid - 2))
    assert np.abs(nets.apply_curve(grid, knots, values) - truth_grid).max() < 0.15  # a straight line misses by ~0.5
    beyond = nets.apply_curve(np.array([knots[-1] + 1.0]), knots, values)  # past the last knot: the end segment
    slope = (values[-1] - values[-2]) / (knots[-1] - knots[-2])
    np.testing.assert_allclose(beyond, values[-1] + slope, rtol=1e-5)
    assert nets.apply_curve(f, knots, values).dtype == np.float32
    with pytest.raises(ValueError, match="at least two per segment"):
        nets.fit_curve(f[:5], t[:5], 3)
    with pytest.raises(ValueError, match="not constant"):
        nets.fit_curve(np.ones(100), t[:100], 2)
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        nets.fit_curve(f, t, 0)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_predict_calibrates_on_the_blind_spots_of_the_image_itself(n_dim, monkeypatch):
    """``predict(calibrate=K)`` equals the plain prediction mapped through the least-squares curve of the noisy image
    on the predictions of K masked copies at their blind spots (NumPy reference; ``calibrate_bins=1``: the straight
    line), tiled or not, each image of a stack on its own; ``'auto'`` draws until enough blind spots are found."""
    from n2v_tf import models
    from n2v_tf.masking import mask_batch
    shape = (16, 32, 32) if n_dim == 3 else (64, 64)
    X = np.stack([smooth_image(shape, seed=s)[1] for s in range(3)])[..., None]
    model = N2V(tiny_config(X, n2v_perc_pix=5.0), None, basedir=None)
    random_batch_norm(model.keras_model, np.random.default_rng(2))
    img = X[0, ..., 0]
    axes = "ZYX" if n_dim == 3 else "YX"
    plain = model.predict(img, axes)
    rng = np.random.default_rng(0)
    f, t = [], []
    for _ in range(3):
        masked, y = mask_batch(img[None, ..., None], rng=rng, **model._masking())
        at = y[0, ..., 1] > 0
        f.append(model.predict(masked[0, ..., 0], axes)[at])
        t.append(img[at])
    f, t = np.concatenate(f).astype(np.float64), np.concatenate(t).astype(np.float64)
    a, b = np.polyfit(f, t, 1)
    assert abs(a - 1) > 1e-2  # an untrained network: the fit changes the prediction
    line = a * plain + b
    tol = 1e-4 * float(np.ptp(line))
    np.testing.assert_allclose(model.predict(img, axes, calibrate=3, calibrate_bins=1), line, atol=tol)
    knots, values = _curve_reference(f, t, 4)
    curve = np.interp(plain, knots, values)
    inside = (plain >= knots[0]) & (plain <= knots[-1])
    got = model.predict(img, axes, calibrate=3, calibrate_bins=4)
    np.testing.assert_allclose(got[inside], curve[inside], atol=tol)
    assert np.abs(got - line).max() > 10 * tol  # the curve is not the line
    np.testing.assert_allclose(model.predict(img, axes, n_tiles=(2,) * n_dim, calibrate=3, calibrate_bins=4), got,
                               atol=tol)
    stack = model.predict(X[:2, ..., 0], "S" + axes, calibrate=3, calibrate_bins=4)  # each image on its own
    np.testing.assert_allclose(stack[0], got, atol=tol)
    # default segments: one per CALIBRATION_PIXELS_PER_BIN blind spots
    monkeypatch.setattr(models, "CALIBRATION_PIXELS_PER_BIN", len(f) // 4)
    np.testing.assert_allclose(model.predict(img, axes, calibrate=3), got, atol=tol)
    # 'auto': as many draws as reach CALIBRATION_IMAGE_PIXELS (here: those of 3 draws), at most the maximum
    monkeypatch.setattr(models, "CALIBRATION_IMAGE_PIXELS", len(f) - 1)
    np.testing.assert_allclose(model.predict(img, axes, calibrate="auto", calibrate_bins=4), got, atol=tol)
    monkeypatch.setattr(models, "CALIBRATION_IMAGE_PIXELS", 10 ** 9)
    monkeypatch.setattr(models, "CALIBRATION_IMAGE_MAX_DRAWS", 3)
    np.testing.assert_allclose(model.predict(img, axes, calibrate="auto", calibrate_bins=4), got, atol=tol)
    for bad in (-1, 1.5, True, "all"):
        with pytest.raises(ValueError, match="calibrate must be a number of mask draws"):
            model.predict(img, axes, calibrate=bad)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="calibrate_bins must be a number of curve segments"):
            model.predict(img, axes, calibrate=3, calibrate_bins=bad)
    with pytest.raises(ValueError, match="calibrate_bins=4 needs calibrate"):
        model.predict(img, axes, calibrate_bins=4)
    with pytest.raises(ValueError, match="at least two per segment"):
        model.predict(img, axes, calibrate=1, calibrate_bins=10 ** 6)


def test_predict_calibrates_each_channel_on_its_own_blind_spots():
    """A 2-channel model: ``predict(calibrate=K)`` maps each channel through the curve fitted on that channel's
    blind spots only (NumPy reference), for one network per channel and for a joint network."""
    from n2v_tf.masking import mask_batch
    X = np.stack([np.stack([smooth_image((64, 64), seed=s)[1], 2 * smooth_image((64, 64), seed=s + 5)[1] + 3], -1)
                  for s in range(3)])
    for joint in (False, True):
        model = N2V(tiny_config(X, n2v_perc_pix=5.0, single_net_per_channel=not joint), None, basedir=None)
        random_batch_norm(model.keras_model, np.random.default_rng(2))
        img = X[0]
        plain = model.predict(img, "YXC")
        got = model.predict(img, "YXC", calibrate=3, calibrate_bins=3)
        rng = np.random.default_rng(0)
        draws = [mask_batch(img[None], rng=rng, **model._masking()) for _ in range(3)]
        for ch in range(2):
            at = [y[0, ..., 2 + ch] > 0 for _, y in draws]
            f = np.concatenate([model.predict(m[0], "YXC")[..., ch][a] for (m, _), a in zip(draws, at)])
            t = np.concatenate([img[..., ch][a] for a in at])
            knots, values = _curve_reference(f.astype(np.float64), t.astype(np.float64), 3)
            inside = (plain[..., ch] >= knots[0]) & (plain[..., ch] <= knots[-1])
            expected = np.interp(plain[..., ch], knots, values)
            np.testing.assert_allclose(got[..., ch][inside], expected[inside], atol=1e-4 * float(np.ptp(expected)))
