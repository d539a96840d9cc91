"""Tiled prediction engine (n2v_tf.tiling) and batch-norm folding: tiles cover the image, tiled == untiled, one trace."""
import keras
import numpy as np
import pytest

from n2v_tf import N2V, N2VConfig
from n2v_tf.nets import build_unet, fold_batch_norm, receptive_field_radius
from n2v_tf.tiling import CompiledNetwork, axis_tiles, predict_tiles, tile_grid
from conftest import random_batch_norm


@pytest.mark.parametrize("length,core,overlap,div,offset", [(64, 16, 5, 4, 0), (96, 32, 13, 8, 0), (40, 8, 3, 4, 0),
                                                            (32, 32, 6, 4, 0), (48, 16, 40, 4, 0), (64, 16, 5, 4, 3),
                                                            (200, 30, 9, 8, 5), (104, 20, 6, 4, 1)])
def test_axis_tiles_cover_align_and_give_context(length, core, overlap, div, offset):
    tiles = axis_tiles(length, core, overlap, div, offset)
    sizes = {t1 - t0 for t0, t1, _, _ in tiles}
    assert len(sizes) == 1, "all tiles have one shape (one trace)"
    covered = np.zeros(length, int)
    ctx = -(-overlap // div) * div
    for t0, t1, c0, c1 in tiles:
        covered[c0:c1] += 1
        assert t0 % div == 0 and 0 <= t0 <= c0 < c1 <= t1 <= length
        assert t0 == 0 or c0 - t0 >= ctx, "context before the core, unless the tile starts at the border"
        assert t1 == length or t1 - c1 >= ctx, "context after the core, unless the tile ends at the border"
    assert (covered == 1).all(), "cores cover the axis exactly once"
    if len(tiles) > 1:
        assert all((c0 - offset) % core == 0 for _, _, c0, _ in tiles[1:]), "cores follow the shifted grid"


def test_axis_tiles_rejects_unaligned_lengths():
    with pytest.raises(ValueError, match="multiple of 4"):
        axis_tiles(30, 8, 2, 4)


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("blurpool", (False, True))
def test_fold_batch_norm_predicts_the_same_with_builtin_layers(n_dim, blurpool):
    rng = np.random.default_rng(0)
    net = build_unet(n_dim, 1, 2, 3, 4, batch_norm=True, blurpool=blurpool, skip_skipone=blurpool)
    random_batch_norm(net, rng)
    folded = fold_batch_norm(net)
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in folded.layers)
    assert all(type(la).__module__.startswith("keras.") for la in folded.layers)
    x = rng.normal(size=(2,) + (16,) * n_dim + (1,)).astype(np.float32)
    ref = net(x, training=False).numpy()
    np.testing.assert_allclose(folded(x).numpy(), ref, atol=1e-5 * np.ptp(ref))
    assert fold_batch_norm(build_unet(n_dim, 1, 1, 3, 4, batch_norm=False)).count_params() > 0  # nothing to fold


@pytest.mark.slow
@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("tta", (False, True))
def test_engine_tiled_equals_untiled_and_traces_once(n_dim, tta):
    rng = np.random.default_rng(1)
    net = build_unet(n_dim, 1, 1, 3, 4, batch_norm=True, blurpool=True, skip_skipone=True)
    random_batch_norm(net, rng)
    shape = (48, 40, 56)[-n_dim:] if n_dim == 3 else (72, 88)
    img = rng.normal(size=shape + (1,)).astype(np.float32)
    r = receptive_field_radius(1, 3, True)
    compiled = CompiledNetwork(net)  # no eager network: every shape is traced
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return compiled(batch)

    def run(cores, batch_pixels):
        out = np.full(shape + (1,), np.nan, np.float32)
        n = predict_tiles(lambda s: img[s], lambda s, p: out.__setitem__(s, p), shape, cores, r, 2, counting,
                          tta=tta, batch_pixels=batch_pixels)
        return out, n

    whole, n_whole = run(shape, 2 ** 30)
    assert n_whole == 1
    cores = tuple(8 if s > 40 else 16 for s in shape)
    tiled, n = run(cores, 4 * int(np.prod([c + 2 * (-(-r // 2) * 2) for c in cores])) * (8 if tta else 1))
    assert n == len(tile_grid(shape, cores, r, 2)) > 4
    assert not np.isnan(tiled).any()
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * np.ptp(whole))
    assert max(calls[1:]) > 1, "several tiles per network call"
    # one trace per input shape: the whole image and the tiles, with tta also with Y and X swapped
    tile = tuple(sl.stop - sl.start for sl in tile_grid(shape, cores, r, 2)[0][0])
    shapes = {shape, tile} | ({shape[:-2] + shape[:-3:-1], tile[:-2] + tile[:-3:-1]} if tta else set())
    assert compiled.n_traces == len(shapes)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_model_predict_tiled_equals_untiled_and_reuses_the_compiled_network(tmp_path, n_dim, monkeypatch):
    monkeypatch.setattr("n2v_tf.tiling.EAGER_PIXELS", 2 ** 22)  # every first call of this test's shapes is "small"
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2,) + (16,) * n_dim + (1,)).astype(np.float32) * 10 + 100
    depth = 2 if n_dim == 2 else 1  # a 3D image small enough for a test, still cut into several tiles
    config = N2VConfig(X, unet_n_depth=depth, unet_n_first=4, unet_kern_size=3, train_batch_size=2,
                       n2v_patch_shape=(16,) * n_dim, unet_upsampling="nearest",  # tile counts sized for it
                       train_epochs=1, train_steps_per_epoch=1,
                       train_mixed_precision=None)  # compared below with keras' own predict of the same network
    model = N2V(config, "m", basedir=None)
    random_batch_norm(model.keras_model, rng)
    img = (rng.normal(size=(34, 50, 45) if n_dim == 3 else (102, 74)) * 10 + 100).astype(np.float32)
    axes = "ZYX" if n_dim == 3 else "YX"
    whole = model.predict(img, axes)
    tiles = (2, 3, 2)[-n_dim:] if n_dim == 3 else (3, 2)
    tiled = model.predict(img, axes, n_tiles=tiles)
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * np.ptp(whole))
    compiled = model._inference_cache[1]
    # first calls of a shape (small: the tiles fit in one batch) run eagerly; a shape that comes again is traced
    assert compiled.n_traces == 0
    np.testing.assert_allclose(model.predict(img, axes), whole, atol=1e-5 * np.ptp(whole))
    np.testing.assert_allclose(model.predict(img, axes, n_tiles=tiles), tiled, atol=1e-5 * np.ptp(whole))
    assert compiled.n_traces == 2
    model.predict(img, axes)
    model.predict(img, axes, n_tiles=tiles)
    assert model._inference_cache[1] is compiled and compiled.n_traces == 2, "each shape traced once"
    monkeypatch.setattr("n2v_tf.tiling.EAGER_PIXELS", 0)  # a large first call is traced at once
    model.predict(img[:-4], axes)
    assert compiled.n_traces == 3
    (mean,), (std,) = config.normalization()
    ref = model.keras_model.predict(np.pad(
        (img - mean) / std, [(p // 2, p - p // 2) for p in (-np.array(img.shape) % 2 ** depth)],
        mode="reflect")[np.newaxis, ..., np.newaxis], verbose=0)[0, ..., 0]
    crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(-np.array(img.shape) % 2 ** depth, img.shape))
    np.testing.assert_allclose(whole, ref[crop] * std + mean, atol=1e-4 * np.ptp(whole))


def test_model_predict_uses_new_weights_after_they_change():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 16, 16, 1)).astype(np.float32)
    model = N2V(N2VConfig(X, unet_n_depth=1, unet_n_first=4, n2v_patch_shape=(16, 16)), "m", basedir=None)
    img = rng.normal(size=(32, 32)).astype(np.float32)
    a = model.predict(img, "YX")
    model.keras_model.set_weights([w * 1.5 for w in model.keras_model.get_weights()])
    b = model.predict(img, "YX")
    assert np.abs(a - b).max() > 1e-3
