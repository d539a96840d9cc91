"""N2V model: n2v 0.3.3 folders, training, tiling, TTA, bad input, model-folder safety."""
import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, random_batch_norm, smooth_image, tiny_config

from n2v_tf import N2V, psnr


@pytest.mark.slow
@pytest.mark.parametrize("folder", ("n2v_2d", "n2v2_2d", "n2v_3d", "n2v_2d_rgb"))
def test_loads_n2v033_folders_and_predicts_the_same(folder, tmp_path):
    shutil.copytree(FIXTURES / folder, tmp_path / folder)  # loading must not need write access to tests/
    x = np.load(tmp_path / folder / "test_input.npy")
    expected = np.load(tmp_path / folder / "test_output.npy")
    axes = (tmp_path / folder / "axes.txt").read_text().strip()
    with pytest.warns() if folder == "n2v_2d_rgb" else _nullcontext():
        model = N2V(None, folder, basedir=str(tmp_path))
    got = model.predict(x, axes)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4 * (expected.max() - expected.min())


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("n_dim", (2, 3))
def test_training_traces_its_step_once(n_dim, tmp_path):
    # Keras 3 creates optimizer and metric variables inside the first trace unless they exist before fit, and a
    # tf.function that creates variables is traced twice; N2V.train builds them first (one trace, not two)
    _, noisy = smooth_image((48, 48) if n_dim == 2 else (16, 32, 32))
    X = noisy[None, ..., None]
    model = N2V(tiny_config(X, train_epochs=2, train_steps_per_epoch=2), "m", basedir=str(tmp_path))
    traces, step = [], model.keras_model.train_step
    model.keras_model.train_step = lambda data: (traces.append(1), step(data))[1]
    model.train(X, X, verbose=0, seed=0)
    assert len(traces) == 1
    assert model.keras_model.optimizer.built and int(model.keras_model.optimizer.iterations) == 4


def test_name_none_and_history_has_lr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, noisy = smooth_image((64, 64))
    X = noisy[None, ..., None]
    model = N2V(tiny_config(X), name=None)  # crashed in n2v 0.3.3
    hist = model.train(X, X[:, :32, :32], verbose=0)
    assert model.logdir.parent == tmp_path / "." or model.logdir.parent.resolve() == tmp_path.resolve()
    for key in ("loss", "val_loss", "n2v_mse", "n2v_abs", "lr", "learning_rate"):
        assert len(hist.history[key]) == 2, key
    assert (model.logdir / "weights_best.h5").exists() and (model.logdir / "weights_last.h5").exists()
    assert not (model.logdir / "weights_now.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]  # nothing written outside basedir/name


@pytest.mark.slow
@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("n2v2", (False, True))
def test_short_training_improves_psnr(n_dim, n2v2, tmp_path):
    clean, noisy = smooth_image((96, 96) if n_dim == 2 else (16, 48, 48))
    X = noisy[None, ..., None]
    extra = dict(blurpool=True, skip_skipone=True, n2v_manipulator="median") if n2v2 else {}
    config = tiny_config(X, train_epochs=2, train_steps_per_epoch=40 if n_dim == 2 else 12, train_batch_size=8,
                         train_learning_rate=0.002, batch_norm=False,
                         n2v_patch_shape=(32, 32) if n_dim == 2 else (8, 32, 32), **extra)
    model = N2V(config, "m", basedir=str(tmp_path))
    model.train(X, X, verbose=0, seed=0)
    axes = "YX" if n_dim == 2 else "ZYX"
    out = model.predict(noisy, axes)
    assert psnr(clean, out) > psnr(clean, noisy) + 3.0
    # the saved model reloads and predicts the same
    again = N2V(None, "m", basedir=str(tmp_path)).predict(noisy, axes)
    np.testing.assert_allclose(again, out, atol=1e-5 * np.ptp(out))


@pytest.mark.parametrize("n_dim", (2, 3))
def test_train_on_list_of_images_of_different_sizes(n_dim, tmp_path):
    shapes = [(40, 52), (64, 36), (33, 70)] if n_dim == 2 else [(10, 20, 24), (12, 17, 30)]
    imgs = [smooth_image(s, seed=i)[1][..., None] for i, s in enumerate(shapes)]
    config = tiny_config(imgs, n2v_patch_shape=(32, 32) if n_dim == 2 else (8, 16, 16), unet_n_depth=1)
    model = N2V(config, "lst", basedir=str(tmp_path))
    hist = model.train(imgs[1:], imgs[:1], verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    out = model.predict(imgs[0][..., 0], "YX" if n_dim == 2 else "ZYX")
    assert out.shape == imgs[0].shape[:-1]


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("blurpool", (False, True))
def test_tiled_equals_untiled(n_dim, blurpool):
    shape = (75, 61) if n_dim == 2 else (13, 43, 37)
    _, noisy = smooth_image(shape)
    model = N2V(tiny_config(noisy[None, ..., None], blurpool=blurpool, skip_skipone=blurpool), basedir=None)
    # untrained batch norm is the identity and, without convolution biases, leaves an output of nearly constant
    # value whose range is below float32 resolution; statistics that matter give the output structure to compare
    random_batch_norm(model.keras_model, np.random.default_rng(n_dim))
    axes = "YX" if n_dim == 2 else "ZYX"
    full = model.predict(noisy, axes)
    tiles = (3, 2) if n_dim == 2 else (2, 2, 3)
    tiled = model.predict(noisy, axes, n_tiles=tiles)
    assert full.shape == shape
    assert np.ptp(full) > 1e-3 * np.abs(full).max()  # an output with structure to compare, not a constant
    assert np.abs(full - tiled).max() <= 1e-4 * np.ptp(full)


def test_tta_uses_yx_plane_only_and_averages():
    _, noisy = smooth_image((6, 16, 24))
    model = N2V(tiny_config(noisy[None, ..., None], n2v_patch_shape=(4, 16, 16)), basedir=None)
    out = model.predict(noisy, "ZYX", tta=True)
    assert out.shape == noisy.shape
    manual = np.mean([np.rot90(model.predict(np.ascontiguousarray(np.rot90(noisy, k, axes=(1, 2))), "ZYX"), -k,
                               axes=(1, 2)) for k in range(4)]
                     + [np.rot90(model.predict(np.ascontiguousarray(np.rot90(noisy, k, axes=(1, 2))[..., ::-1]),
                                               "ZYX")[..., ::-1], -k, axes=(1, 2)) for k in range(4)], axis=0)
    np.testing.assert_allclose(out, manual, atol=1e-4 * np.ptp(manual))


def test_multichannel_and_sample_axis(tmp_path):
    imgs = np.stack([smooth_image((32, 32), seed=s)[1] for s in range(4)])
    X = np.stack([imgs[:2], imgs[2:]], axis=-1)  # (2, 32, 32, 2)
    model = N2V(tiny_config(X, unet_n_depth=1), "mc", basedir=str(tmp_path))
    model.train(X, X[:1], verbose=0)
    out = model.predict(np.moveaxis(X, -1, 1), "SCYX")
    assert out.shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match="model expects 2"):
        model.predict(X[0, ..., 0], "YX")
    with pytest.raises(ValueError, match="axes"):
        model.predict(X[0], "ZYX")


def test_bad_training_data_gets_clear_errors(tmp_path):
    _, noisy = smooth_image((64, 64))
    X = noisy[None, ..., None]
    model = N2V(tiny_config(X), "bad", basedir=str(tmp_path))
    bad = X.copy()
    bad[0, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.train(bad, X, verbose=0)
    with pytest.raises(ValueError, match="empty|no images"):
        model.train([], X, verbose=0)
    with pytest.raises(ValueError, match="smaller than n2v_patch_shape"):
        model.train(X[:, :16, :16], X, verbose=0)
    with pytest.raises(ValueError, match="channel"):
        model.train(np.concatenate([X, X], -1), X, verbose=0)
    with pytest.raises(ValueError, match="divisible"):
        model.train(X, X[:, :30, :30], verbose=0)
    with pytest.raises(TypeError):
        model.prepare_for_training(metric=("mse",))


def test_existing_model_folder_is_not_silently_overwritten(tmp_path):
    _, noisy = smooth_image((32, 32))
    X = noisy[None, ..., None]
    N2V(tiny_config(X), "keep", basedir=str(tmp_path))
    N2V(tiny_config(X), "keep", basedir=str(tmp_path))  # same config (re-run cell): fine
    with pytest.raises(FileExistsError, match="overwrite=True"):
        N2V(tiny_config(X, unet_n_first=4), "keep", basedir=str(tmp_path))
    N2V(tiny_config(X, unet_n_first=4), "keep", basedir=str(tmp_path), overwrite=True)
    assert '"unet_n_first": 4' in (tmp_path / "keep" / "config.json").read_text()
    with pytest.raises(FileNotFoundError, match="no weight file"):  # never trained: no silent random weights
        N2V(None, "keep", basedir=str(tmp_path))


def test_invalid_config_lists_every_field(tmp_path):
    _, noisy = smooth_image((32, 32))
    config = tiny_config(noisy[None, ..., None], n2v_patch_shape=(30, 30), train_epochs=0)
    with pytest.raises(ValueError, match=r"n2v_patch_shape.*train_epochs|train_epochs.*n2v_patch_shape"):
        N2V(config, "x", basedir=str(tmp_path))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("augment", (False, True))
def test_train_augment_reaches_the_training_sequence(augment, tmp_path, monkeypatch):
    import n2v_tf.models as models_module
    made = []

    class Recording(models_module.N2VSequence):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(models_module, "N2VSequence", Recording)
    X = np.random.default_rng(0).normal(size=(6, 32, 32, 1)).astype(np.float32)
    config = tiny_config(X, train_epochs=1, train_steps_per_epoch=2, train_augment=augment)
    N2V(config, "aug", basedir=str(tmp_path)).train(X[:4], X[4:], verbose=0, seed=0)
    assert len(made) == 1 and made[0].augment is augment
    saved = json.loads((tmp_path / "aug" / "config.json").read_text())
    assert saved["train_augment"] is augment


# --------------------------------------------------------------------------- predict(match_mean=True)

@pytest.mark.parametrize("n_dim", (2, 3))
def test_match_mean_shifts_each_image_and_channel_to_the_input_mean(n_dim):
    """match_mean: per image (S) and channel, prediction + a constant whose mean is the input's; NaN pixels ignored."""
    rng = np.random.default_rng(0)
    spatial = (32, 40) if n_dim == 2 else (8, 16, 24)
    X = (rng.normal(size=(2, *spatial, 2)) * 5 + 50).astype(np.float32)
    model = N2V(tiny_config(X, n_channel_in=2, unet_n_depth=1, unet_n_first=4), "mm", basedir=None)
    random_batch_norm(model.keras_model, rng)
    axes = "S" + "ZYX"[-n_dim:] + "C"
    img = np.stack([X[0], X[1] * 2 - 30])            # two images with different statistics
    plain = model.predict(img, axes)
    matched = model.predict(img, axes, match_mean=True)
    space = tuple(range(1, n_dim + 1))
    np.testing.assert_allclose(matched.mean(space, dtype=np.float64), img.mean(space, dtype=np.float64),
                               rtol=0, atol=1e-4 * np.ptp(img))
    shift = matched - plain                          # a constant per image and channel ...
    np.testing.assert_allclose(shift, np.broadcast_to(shift.mean(space, keepdims=True), shift.shape), rtol=0,
                               atol=1e-4 * np.ptp(img))
    offsets = shift.mean(space)
    assert np.abs(offsets).max() > 1e-2 * np.ptp(img)            # ... that is not zero for this untrained network
    assert not np.allclose(offsets[0], offsets[1])               # ... and computed for each image
    # NaN pixels (nan_policy='fill'): the means are taken over the finite pixels, NaN stays NaN
    holed = img[0].copy()
    holed[(0,) * n_dim] = np.nan
    with pytest.warns(UserWarning, match="NaN"):
        out = model.predict(holed, axes[1:], nan_policy="fill", match_mean=True)
    assert np.isnan(out[(0,) * n_dim]).all() and np.isfinite(out).sum() == out.size - 2
    np.testing.assert_allclose(np.nanmean(out.reshape(-1, 2), 0, dtype=np.float64),
                               np.nanmean(holed.reshape(-1, 2), 0, dtype=np.float64), rtol=0, atol=1e-4 * np.ptp(img))
    # tiled == untiled, also with match_mean
    tiles = (1,) + (2,) * n_dim + (1,)
    np.testing.assert_allclose(model.predict(img, axes, n_tiles=tiles, match_mean=True), matched, rtol=0,
                               atol=1e-4 * np.ptp(matched))


def test_match_mean_is_refused_for_pn2v():
    from n2v_tf import GaussianMixtureNoiseModel
    rng = np.random.default_rng(0)
    X = (rng.poisson(20, size=(2, 32, 32, 1))).astype(np.float32)
    nm = GaussianMixtureNoiseModel.fit(X.ravel(), X.ravel() + rng.normal(0, 1, X.size).astype(np.float32), steps=5)
    model = N2V(tiny_config(X, probabilistic=True, pn2v_samples=4, unet_n_depth=1, unet_n_first=4), "pn",
                basedir=None, noise_model=nm)
    with pytest.raises(ValueError, match="match_mean=True is for N2V models"):
        model.predict(X[0, ..., 0], "YX", match_mean=True)
