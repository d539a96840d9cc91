"""Training from data larger than memory: Zarr/Dask/open_array images are read by block and by patch, never whole."""
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from n2v_tf.config import _data_stats
from n2v_tf.data import N2VSequence, validation_data
from n2v_tf.io import BLOCK_ELEMENTS, ChunkCache, LazyArray, open_array

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
        self.keys = []

    def __getitem__(self, key):
        out = np.asarray(self.base[key])
        self.elements += out.size
        self.reads += 1
        self.largest = max(self.largest, out.size)
        self.keys.append(key)
        return out


def _is_one_chunk(key, shape, chunks):
    """Whether a read ``key`` is exactly one chunk of the grid (clipped at the edge)."""
    return all(k.start % c == 0 and k.stop == min(k.start + c, s) for k, s, c in zip(key, shape, chunks))


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
    seq = N2VSequence([lazy], (32, 32), batch_size=4, perc_pix=3.0, seed=0, cache_bytes=0)  # no chunk cache
    assert lazy.elements == 0  # checked by shape and dtype only
    for i in range(3):
        seq.batch(0, i)
    assert lazy.elements == 3 * 4 * 32 * 32 and lazy.reads == 12  # exactly the patches, nothing more
    # through the chunk cache: each chunk the patches cover is read once, whole, and nothing else
    lazy.elements, lazy.reads, lazy.keys = 0, 0, []
    seq = N2VSequence([lazy], (32, 32), batch_size=4, perc_pix=3.0, seed=0)
    for i in range(3):
        seq.batch(0, i)
    assert all(_is_one_chunk(k, lazy.shape, lazy.chunks) for k in lazy.keys)
    assert lazy.reads == len({tuple((k.start, k.stop) for k in key) for key in lazy.keys}) == seq.cache.misses
    assert 3 * 4 <= lazy.reads <= 3 * 4 * 4 and lazy.elements == lazy.reads * 64 * 64  # at most 4 chunks a patch
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
    group.create_array("0", shape=(512, 512), chunks=(32, 32), dtype="uint16")[...] = rng.poisson(100, (512, 512))
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
    X[0].elements = X[0].largest = 0
    history = N2V(config, None, None).train(X, X_val, seed=0, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    # 2 steps of 4 patches, plus the batches tf.data prepares ahead: the (at most 4) chunks of a few patches, each
    # read once (the chunk cache), not the image
    assert 0 < X[0].elements <= 8 * 4 * 4 * 32 * 32 <= 512 * 512 // 2 and X[0].largest <= 32 * 32


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


def test_chunk_cache_reads_exactly_what_a_direct_read_does(tmp_path):
    image = np.random.default_rng(4).integers(0, 60000, (70, 90, 2)).astype(np.uint16)  # 8x8 chunks: edges clipped
    z = _to_zarr(tmp_path, [image])[0]
    cache = ChunkCache(max_bytes=4 * 8 * 8 * 2)  # four chunks of one channel
    regions = [(slice(0, 8), slice(0, 8), slice(0, 1)), (slice(60, 70), slice(81, 90), slice(None)),
               (slice(3, 12), slice(5, 6), slice(1, 2)), (slice(66, None), slice(-7, None), slice(None)),
               (slice(0, 16), slice(0, 16), slice(0, 1))]  # the last one: exactly the four chunks of the limit
    for region in regions:
        got = cache.read(z, region)
        assert got.dtype == image.dtype and np.array_equal(got, image[region]) and got.flags.writeable
        assert cache.nbytes <= cache.max_bytes
    assert cache.direct == 1 and cache.misses > 0  # the region of two channels (8 chunks) is read directly
    # least recently used goes first: read chunks a, b, a, then c with room for two: b is dropped, a kept
    small, counted = ChunkCache(max_bytes=2 * 8 * 8 * 2), Counting(z)
    a, b, c = [(slice(0, 8), slice(x, x + 8), slice(0, 1)) for x in (0, 8, 16)]
    for region in (a, b, a, c, a, b):
        small.read(counted, region)
    assert counted.reads == 4 and small.hits == 2 and len(small) == 2  # a, b, (a), c, (a), b again
    # no chunk shape (NumPy, memmap), steps, integers: direct reads, same values
    for arr, region in [(LazyArray(image), (slice(2, 9), slice(None), slice(0, 1))),
                        (z, (slice(0, 20, 3), slice(0, 9), slice(None))), (z, (5, slice(0, 9), 1))]:
        before = cache.direct
        assert np.array_equal(cache.read(arr, region), image[region]) and cache.direct == before + 1
    # threads may share it; a pickled cache (a worker process) arrives empty, with its limit
    with ThreadPoolExecutor(2) as pool:
        out = list(pool.map(lambda r: cache.read(z, r), regions * 4))
    assert all(np.array_equal(o, image[r]) for o, r in zip(out, regions * 4)) and cache.nbytes <= cache.max_bytes
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.max_bytes == cache.max_bytes and len(copy) == copy.nbytes == copy.hits == 0


@pytest.mark.parametrize("n_dim", [2, 3])
def test_batches_through_a_small_chunk_cache_equal_numpy_and_stay_within_its_limit(tmp_path, n_dim):
    images = _images(n_dim, seed=5)
    limit = {2: 10_000, 3: 160_000}[n_dim]  # a patch's chunks fit, the images' (236 / 140 chunks) do not
    kw = {"patch_shape": PATCH[n_dim], "batch_size": 4, "perc_pix": 3.0, "seed": 3, "steps_per_epoch": 5}
    lazy = _to_zarr(tmp_path, images)
    ref, seq = N2VSequence(images, **kw), N2VSequence(lazy, cache_bytes=limit, **kw)
    for epoch in range(3):
        for index in range(5):
            for a, b in zip(ref.batch(epoch, index), seq.batch(epoch, index)):
                assert np.array_equal(a, b)
            assert 0 < seq.cache.nbytes <= limit
    assert seq.cache.hits > 0 and seq.cache.misses > 0 and seq.cache.direct == 0
    tiny = N2VSequence(lazy, cache_bytes=1000, **kw)  # smaller than a patch: direct reads
    assert all(np.array_equal(a, b) for a, b in zip(ref.batch(1, 2), tiny.batch(1, 2)))
    assert tiny.cache.nbytes == 0 and tiny.cache.direct == 4


def test_chunk_cache_reuses_chunks_across_batches(tmp_path):
    image = np.random.default_rng(6).normal(size=(64, 64, 1)).astype(np.float32)
    lazy = Counting(_to_zarr(tmp_path, [image], chunks=(16, 16, 1))[0])  # 16 chunks
    seq = N2VSequence([lazy], (32, 32), batch_size=8, perc_pix=3.0, seed=0, steps_per_epoch=10)
    for i in range(10):
        seq.batch(0, i)
    lookups = seq.cache.hits + seq.cache.misses
    assert lookups >= 10 * 8 * 4  # 80 patches, each covering 4 to 9 chunks of 16 x 16 ...
    assert lazy.reads == seq.cache.misses <= 16  # ... but every chunk is read once
    assert all(_is_one_chunk(k, lazy.shape, lazy.chunks) for k in lazy.keys) and seq.cache.hit_rate > 0.9


@pytest.mark.parametrize("bad", [-1, 1.5, "256MB", True])
def test_a_bad_cache_size_is_reported(bad):
    with pytest.raises(ValueError, match=r"N2VSequence: cache_bytes must be an int >= 0 .*got"):
        N2VSequence([LazyArray(im) for im in _images(2)], (32, 32), cache_bytes=bad)
    with pytest.raises(ValueError, match=r"cache_bytes must be an int >= 0"):  # also for in-memory data
        N2VSequence(_images(2), (32, 32), cache_bytes=bad)
    with pytest.raises(ValueError, match=r"max_bytes must be an int >= 0"):
        ChunkCache(bad)


def test_batches_from_a_tiled_tiff_go_through_the_chunk_cache(tmp_path):
    import tifffile
    image = np.random.default_rng(7).integers(0, 4000, (100, 120)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tiled.tif", image, tile=(32, 32), compression="zlib")
    lazy = open_array(tmp_path / "tiled.tif")[0].as_axes("YXC")  # read tile by tile (zarr)
    kw = {"patch_shape": (32, 32), "batch_size": 4, "perc_pix": 3.0, "seed": 1, "steps_per_epoch": 4}
    ref, seq = N2VSequence([image[..., np.newaxis]], **kw), N2VSequence([lazy], **kw)
    for index in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(ref.batch(0, index), seq.batch(0, index)))
    assert seq.cache.misses <= 4 * 4 and seq.cache.hits > 0 and seq.cache.direct == 0  # 4 x 4 tiles, each read once
