"""Out-of-core prediction (n2v_tf.large): blocks equal in-memory predict, Zarr/OME-Zarr/TIFF destinations, resume,
bounded reads, bad input, and Dask (threads and a LocalCluster of 2 worker processes)."""
import errno
import json

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from n2v_tf import N2V, N2VConfig  # noqa: E402
from n2v_tf import large  # noqa: E402
from conftest import random_batch_norm  # noqa: E402
from n2v_tf.large import predict_blocks, predict_dask  # noqa: E402


def _model(tmp_path, n_dim=2, n_channel=1, seed=0, upsampling="nearest", **kw):
    """A tiny untrained model with batch-norm statistics that matter.

    The block-mechanics tests size their images and blocks for n2v's network (``unet_upsampling='nearest'``,
    receptive field 26 at depth 2); the equality tests run the new default ('linear') as well.
    """
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(2,) + (16,) * n_dim + (n_channel,)) * 10 + 100).astype(np.float32)
    config = N2VConfig(X, unet_n_depth=2 if n_dim == 2 else 1, unet_n_first=4, unet_kern_size=3,
                       n2v_patch_shape=(16,) * n_dim, unet_upsampling=upsampling, **kw)
    model = N2V(config, "m", basedir=str(tmp_path))
    random_batch_norm(model.keras_model, rng)
    model.keras_model.save_weights(str(tmp_path / "m" / "weights_best.h5"))
    return model


def _image(shape, seed=1):
    return (np.random.default_rng(seed).normal(size=shape) * 10 + 100).astype(np.float32)


def _close(a, ref):
    np.testing.assert_allclose(np.asarray(a), ref, atol=1e-4 * np.ptp(ref))


@pytest.mark.parametrize("upsampling", ("nearest", "linear"))
@pytest.mark.parametrize("n_dim", (2, 3))
def test_blocks_equal_in_memory_predict(tmp_path, n_dim, upsampling):
    model = _model(tmp_path, n_dim, upsampling=upsampling)
    axes, shape, block = (("TYX", (2, 90, 75), (32, 24)) if n_dim == 2 else ("ZYX", (21, 34, 29), (8, 16, 12)))
    img = _image(shape)
    ref = model.predict(img, axes)
    _close(predict_blocks(model, img, None, axes, block_shape=block, progress=False), ref)
    z = predict_blocks(model, img, tmp_path / "out.zarr", axes, block_shape=block, progress=False)
    _close(z[...], ref)
    assert z.chunks == ((1,) if n_dim == 2 else ()) + block, "blocks are the chunks"
    assert not (tmp_path / "out.zarr.partial").exists()


def _smooth(shape, seed=1):
    """A smooth image (blurred noise, 50..150): an untrained network's prediction of it is far from calibrated."""
    from scipy.ndimage import gaussian_filter
    x = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 3)
    return (100 + 50 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_blocks_calibrate_like_in_memory_predict(tmp_path, n_dim):
    """``predict_blocks(calibrate=K)`` fits the intensity curve on K maskings of every block instead of K masked copies
    of the whole image: it moves the plain prediction most of the way to ``predict(calibrate=K)``'s, each sample on
    its own; 'auto' too; bad values are refused as in ``predict``."""
    model = _model(tmp_path, n_dim, n2v_perc_pix=5.0)
    axes, shape, block = (("SYX", (2, 256, 256), (128, 128)) if n_dim == 2 else ("ZYX", (32, 64, 64), (16, 32, 32)))
    img = _smooth(shape)
    plain = model.predict(img, axes)
    mem = model.predict(img, axes, calibrate=8, calibrate_bins=2)
    got = predict_blocks(model, img, None, axes, block_shape=block, progress=False, calibrate=8, calibrate_bins=2)
    change = np.sqrt(np.mean((mem - plain) ** 2))
    assert change > 0.5  # an untrained network: the calibration changes the prediction by grey levels
    assert np.sqrt(np.mean((got - mem) ** 2)) < 0.2 * change
    if n_dim == 2:  # each sample has its own curve
        one = predict_blocks(model, img[1], None, "YX", block_shape=block, progress=False, calibrate=8,
                             calibrate_bins=2)
        _close(got[1], one)
    auto = predict_blocks(model, img, None, axes, block_shape=block, progress=False, calibrate="auto",
                          calibrate_bins=2)
    assert np.sqrt(np.mean((auto - mem) ** 2)) < 0.2 * change
    with pytest.raises(ValueError, match="calibrate must be a number of mask draws"):
        predict_blocks(model, img, None, axes, block_shape=block, progress=False, calibrate=-1)
    with pytest.raises(ValueError, match="calibrate_bins=2 needs calibrate"):
        predict_blocks(model, img, None, axes, block_shape=block, progress=False, calibrate_bins=2)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_predict_dask_calibrates_as_predict_blocks(tmp_path, n_dim):
    """``predict_dask(calibrate=K)`` fits the curves as ``predict_blocks`` with its default blocks does (one per
    sample) and the workers apply them: the same result, whatever the chunks."""
    model = _model(tmp_path, n_dim, n2v_perc_pix=5.0)
    axes, shape, chunks = (("SYX", (2, 96, 80), (1, 48, 40)) if n_dim == 2 else ("ZYX", (24, 40, 36), (12, 20, 18)))
    img = _smooth(shape)
    ref = predict_blocks(model, img, None, axes, progress=False, calibrate=4, calibrate_bins=2)
    assert np.abs(ref - model.predict(img, axes)).max() > 1e-2 * np.ptp(ref)
    got = predict_dask(str(tmp_path / "m"), da.from_array(img, chunks=chunks), axes, calibrate=4,
                       calibrate_bins=2).compute()
    _close(got, ref)
    with pytest.raises(ValueError, match="calibrate must be a number of mask draws"):
        predict_dask(str(tmp_path / "m"), img, axes, calibrate="all")


def test_calibrated_run_resumes_with_the_same_curve(tmp_path, monkeypatch):
    """An interrupted ``predict_blocks(calibrate=K)`` resumes to what an uninterrupted run writes (the curve is fitted
    again with the same draws); a different ``calibrate`` is another job."""
    model = _model(tmp_path, n2v_perc_pix=5.0)
    img = _smooth((96, 96))
    ref = predict_blocks(model, img, None, "YX", block_shape=(32, 32), progress=False, calibrate=4)
    assert np.abs(ref - model.predict(img, "YX")).max() > 1e-2 * np.ptp(ref)
    original = large._Destination.record
    batches = []

    def record_then_stop(self, keys):
        original(self, keys)
        batches.append(len(keys))
        if len(batches) == 3:
            raise _Stop

    monkeypatch.setattr(large._Destination, "record", record_then_stop)
    with pytest.raises(_Stop):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1,
                       progress=False, calibrate=4)
    monkeypatch.setattr(large._Destination, "record", original)
    with pytest.raises(FileExistsError, match="another job"):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1,
                       progress=False, calibrate=5)
    z = predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1,
                       progress=False, calibrate=4)
    _close(z[...], ref)


def test_channels_tiff_source_and_tiff_destination(tmp_path):
    model = _model(tmp_path, 2, n_channel=2)
    img = _image((2, 70, 66))  # CYX
    ref = model.predict(img, "CYX")
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, img, metadata={"axes": "CYX"})
    out = predict_blocks(model, src, tmp_path / "out.tif", block_shape=(32, 32), progress=False)
    assert out == tmp_path / "out.tif" and not (tmp_path / "out.tif.partial").exists()
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        _close(tif.asarray(), ref)


def test_ome_zarr_keeps_axes_and_pixel_sizes(tmp_path):
    model = _model(tmp_path)
    img = _image((3, 64, 48))
    src = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=2)
    src.create_array("0", shape=img.shape, chunks=(1, 32, 48), dtype=img.dtype)[...] = img
    src.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "t", "type": "time", "unit": "second"},
                                                            {"name": "y", "type": "space", "unit": "micrometer"},
                                                            {"name": "x", "type": "space", "unit": "micrometer"}],
                                 "datasets": [{"path": "0", "coordinateTransformations": [
                                     {"type": "scale", "scale": [2.0, 0.25, 0.5]}]}]}]
    predict_blocks(model, tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", block_shape=(32, 32), progress=False)
    group = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")
    ms = group.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    assert ms["axes"][1].get("unit") == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.25, 0.5]
    _close(group["0"][...], model.predict(img, "TYX"))


def test_existing_destination_is_refused_unless_overwrite(tmp_path):
    model = _model(tmp_path)
    img = _image((40, 40))
    predict_blocks(model, img, tmp_path / "o.zarr", "YX", progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", progress=False)
    z = predict_blocks(model, 2 * img, tmp_path / "o.zarr", "YX", overwrite=True, progress=False)
    _close(z[...], model.predict(2 * img, "YX"))


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_and_skips_written_blocks(tmp_path, monkeypatch):
    model = _model(tmp_path)
    img = _image((96, 96))
    ref = model.predict(img, "YX")
    original = large._Destination.record
    batches = []

    def record_then_stop(self, keys):
        original(self, keys)
        batches.append(len(keys))
        if len(batches) == 3:  # the initial empty record, then two batches of blocks
            raise _Stop

    monkeypatch.setattr(large._Destination, "record", record_then_stop)
    with pytest.raises(_Stop):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1,
                       progress=False)
    monkeypatch.setattr(large._Destination, "record", original)
    progress = json.loads((tmp_path / "o.zarr.partial" / large.PROGRESS_FILE).read_text())
    assert len(progress["done"]) == 2 and not (tmp_path / "o.zarr").exists()
    calls = []
    net = model._inference("mmse", *model.config.normalization())
    monkeypatch.setattr(type(net), "__call__", lambda self, b, f=type(net).__call__: calls.append(len(b)) or f(self, b))
    z = predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1, progress=False)
    assert sum(calls) == 9 - 2, "the two written blocks are skipped"
    _close(z[...], ref)
    # another job (other block shape) does not silently reuse an interrupted run's blocks
    (tmp_path / "o.zarr.partial").mkdir()
    (tmp_path / "o.zarr.partial" / large.PROGRESS_FILE).write_text(json.dumps({"signature": {}, "done": [[0, 0]]}))
    with pytest.raises(FileExistsError, match="another job"):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", progress=False)


def test_full_disk_gives_a_clear_error_and_keeps_written_blocks(tmp_path, monkeypatch):
    model = _model(tmp_path)
    img = _image((96, 64))
    original = large._zarr_writer
    writes = []

    def failing_writer(*args, **kwargs):
        write = original(*args, **kwargs)

        def w(index, values):
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            writes.append(index)
            write(index, values)
        return w

    monkeypatch.setattr(large, "_zarr_writer", failing_writer)
    with pytest.raises(OSError, match="No space left.*resume"):
        predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), batch_pixels=1, progress=False)
    done = json.loads((tmp_path / "o.zarr.partial" / large.PROGRESS_FILE).read_text())["done"]
    assert len(done) == 2
    monkeypatch.setattr(large, "_zarr_writer", original)
    _close(predict_blocks(model, img, tmp_path / "o.zarr", "YX", block_shape=(32, 32), progress=False)[...],
           model.predict(img, "YX"))


class _Counting:
    """An array-like that counts the elements read through it."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

    def __getitem__(self, key):
        out = self.a[key]
        self.reads.append(out.size)
        return out


def test_reads_are_bounded_by_the_block_not_the_image(tmp_path):
    model = _model(tmp_path)
    src = _Counting(_image((256, 192)))
    predict_blocks(model, src, None, "YX", block_shape=(32, 32), progress=False)
    ctx = 28  # receptive field 26 of depth 2, kernel 3, rounded up to a multiple of 4
    assert max(src.reads) <= (32 + 2 * ctx) ** 2
    assert sum(src.reads) <= 48 * (32 + 2 * ctx) ** 2 and sum(src.reads) < 8 * src.a.size


def test_bad_input_is_named(tmp_path):
    model = _model(tmp_path)
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=(4, 40, 40), chunks=(1, 40, 40), dtype="f4")
    with pytest.raises(ValueError, match=r"40 channel\(s\) \(axes 'YXC', shape \(4, 40, 40\)\).*expects 1"):
        predict_blocks(model, z, None, "YXC", progress=False)
    with pytest.raises(ValueError, match=r"axes 'TCX' \(shape \(4, 40, 40\)\) do not fit this 2D model"):
        predict_blocks(model, z, None, "TCX", progress=False)
    with pytest.raises(ValueError, match="axes"):
        predict_blocks(model, z, None, None, progress=False)
    with pytest.raises(ValueError, match="block_shape"):
        predict_blocks(model, z[0], None, "YX", block_shape=(8,), progress=False)
    with pytest.raises(ValueError, match=".zarr, .ome.zarr, .tif"):
        predict_blocks(model, z[0], tmp_path / "out.h5", "YX", progress=False)


@pytest.mark.parametrize("upsampling", ("nearest", "linear"))
@pytest.mark.parametrize("n_dim", (2, 3))
def test_predict_dask_equals_predict(tmp_path, n_dim, upsampling):
    model = _model(tmp_path, n_dim, upsampling=upsampling)
    axes, shape, chunks = (("TYX", (2, 90, 75), (1, 40, 30)) if n_dim == 2 else ("ZYX", (21, 34, 29), (10, 17, 15)))
    img = _image(shape)
    out = predict_dask(tmp_path / "m", da.from_array(img, chunks=chunks), axes)
    assert out.shape == img.shape and out.dtype == np.float32
    _close(out.compute(scheduler="threads"), model.predict(img, axes))


@pytest.mark.slow
def test_predict_dask_on_a_local_cluster_of_two_processes(tmp_path):
    distributed = pytest.importorskip("distributed")
    model = _model(tmp_path)
    img = _image((2, 96, 80))
    ref = model.predict(img, "TYX")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = predict_dask(tmp_path / "m", da.from_array(img, chunks=(1, 48, 40)), "TYX")
        result = client.compute(out).result()
        pids = client.run(lambda: __import__("os").getpid())
    assert len(pids) == 2
    _close(result, ref)
