"""Training from data larger than memory: Zarr/Dask/open_array images are read by block and by patch, never whole."""
import numpy as np
import pytest

from n2v_tf.config import _data_stats
from n2v_tf.data import N2VSequence, validation_data
from n2v_tf.io import BLOCK_ELEMENTS, open_array

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

SHAPES = {2: [(70, 90, 1), (64, 128, 1)], 3: [(20, 40, 48, 1), (16, 36, 40, 1)]}
PATCH = {2: (32, 32), 3: (16, 32, 32)}


def _images(n_dim, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(100, 30, s)).astype(np.float32) for s in SHAPES[n_dim]]


def _to_zarr(tmp_path, images, chunks=None):
    out = []
    for i, im in enumerate(images):
        z = zarr.create_array(store=str(tmp_path / f"im{i}.zarr"), shape=im.shape, dtype=im.dtype,
                              chunks=chunks or (8,) * (im.ndim - 1) + (1,))
        z[...] = im
        out.append(z)
    return out


class Counting:
    """A lazy array that counts what is read from it (elements and reads)."""

    def __init__(self, base):
        self.base, self.shape, self.dtype, self.chunks = base, base.shape, base.dtype, base.chunks
        self.elements = self.reads = self.largest = 0

    def __getitem__(self, key):
        out = np.asarray(self.base[key])
        self.elements += out.size
        self.reads += 1
        self.largest = max(self.largest, out.size)
        return out


@pytest.mark.parametrize("n_dim", [2, 3])
def test_config_stats_from_zarr_and_dask_equal_numpy(tmp_path, n_dim):
    images = _images(n_dim)
    expected = _data_stats(images)
    for lazy in (_to_zarr(tmp_path, images), [da.from_array(im, chunks=9) for im in images]):
        got = _data_stats(lazy)
        assert got[:2] == expected[:2]
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-12)
        np.testing.assert_allclose(got[3], expected[3], rtol=1e-12)
    stack = np.stack([im[:16, :32] for im in images]) if n_dim == 2 else np.stack([im[:16, :32, :32] for im in images])
    got = _data_stats(zarr.array(stack, chunks=(1,) + stack.shape[1:]))  # float64 sums; numpy's stack: float32 ones
    np.testing.assert_allclose(got[2] + got[3], np.r_[_data_stats(stack)[2], _data_stats(stack)[3]], rtol=1e-5)


@pytest.mark.parametrize("n_dim", [2, 3])
def test_zarr_batches_and_validation_are_identical_to_numpy(tmp_path, n_dim):
    images = _images(n_dim, seed=1)
    lazy = _to_zarr(tmp_path, images)
    kw = {"patch_shape": PATCH[n_dim], "batch_size": 4, "perc_pix": 3.0, "seed": 7, "augment": True,
          "means": [100.0], "stds": [30.0], "steps_per_epoch": 3}
    ref, seq = N2VSequence(images, **kw), N2VSequence(lazy, **kw)
    for epoch, index in [(0, 0), (0, 1), (3, 2)]:
        for a, b in zip(ref.batch(epoch, index), seq.batch(epoch, index)):
            assert np.array_equal(a, b)
    val = {"patch_shape": PATCH[n_dim], "perc_pix": 3.0, "means": [100.0], "stds": [30.0], "max_patches": 5}
    for a, b in zip(validation_data(images, **val), validation_data(lazy, **val)):
        assert np.array_equal(a, b)
    # a lazy n2v array (S, *spatial, C): the same batches as the NumPy array
    stack = np.stack([im[tuple(slice(0, p) for p in PATCH[n_dim])] for im in images])
    ref, seq = N2VSequence(stack, **kw), N2VSequence(zarr.array(stack, chunks=(1,) + stack.shape[1:]), **kw)
    assert all(np.array_equal(a, b) for a, b in zip(ref.batch(1, 1), seq.batch(1, 1)))


def test_reads_are_bounded_by_the_patches(tmp_path):
    image = np.random.default_rng(2).normal(size=(512, 384, 1)).astype(np.float32)
    lazy = Counting(_to_zarr(tmp_path, [image], chunks=(64, 64, 1))[0])
    seq = N2VSequence([lazy], (32, 32), batch_size=4, perc_pix=3.0, seed=0)
    assert lazy.elements == 0  # checked by shape and dtype only
    for i in range(3):
        seq.batch(0, i)
    assert lazy.elements == 3 * 4 * 32 * 32 and lazy.reads == 12  # exactly the patches, nothing more
    lazy.elements = lazy.reads = 0
    validation_data([lazy], (32, 32), 3.0, max_patches=10)
    assert lazy.elements == 10 * 32 * 32
    lazy.elements = lazy.reads = 0
    _data_stats([lazy])
    assert lazy.elements == image.size and lazy.largest <= BLOCK_ELEMENTS  # one pass, block by block


def test_training_from_ome_zarr_runs_and_reads_only_patches(tmp_path):
    from n2v_tf import N2V, N2VConfig
    rng = np.random.default_rng(3)
    group = zarr.open_group(str(tmp_path / "noisy.ome.zarr"), mode="w")
    group.create_array("0", shape=(512, 512), chunks=(64, 64), dtype="uint16")[...] = rng.poisson(100, (512, 512))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.5]}]}]}]}
    arr, axes, meta = open_array(tmp_path / "noisy.ome.zarr")
    assert axes == "YX" and meta["pixel_size"] == {"Y": 0.5, "X": 0.5}
    X = [Counting(arr.as_axes("YXC"))]
    X_val = [arr.as_axes("YXC")[:128, :128].astype(np.float32)]
    config = N2VConfig(X, unet_kern_size=3, unet_n_first=8, unet_n_depth=1, train_epochs=1, train_steps_per_epoch=2,
                       train_batch_size=4, n2v_patch_shape=(32, 32), n2v_perc_pix=3.0, train_tensorboard=False)
    assert 99 < float(config.means[0]) < 101 and X[0].elements == 512 * 512
    X[0].elements = 0
    history = N2V(config, None, None).train(X, X_val, seed=0, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    # 2 steps of 4 patches, plus the batches tf.data prepares ahead: a few patches, not the image
    assert 0 < X[0].elements <= 8 * 4 * 32 * 32 < 512 * 512 // 4


def test_nan_in_a_lazy_image_is_reported_where_it_is_read(tmp_path):
    image = np.full((64, 64, 1), np.nan, np.float32)
    lazy = _to_zarr(tmp_path, [image])
    with pytest.raises(ValueError, match=r"X\[0\]: contains NaN or Inf"):
        _data_stats(lazy)
    seq = N2VSequence(lazy, (32, 32), batch_size=2, perc_pix=3.0, seed=0)  # not scanned up front
    with pytest.raises(ValueError, match=r"X\[0\]: the training patch at \(\d+, \d+\).*NaN or Inf"):
        seq.batch(0, 0)
    with pytest.raises(ValueError, match=r"validation_X\[0\]: the validation patch at \(0, 0\)"):
        validation_data(lazy, (32, 32), 3.0)
