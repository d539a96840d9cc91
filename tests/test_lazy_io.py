"""open_array, LazyArray, block_slices, require: images opened without reading, read region by region."""
import sys

import numpy as np
import pytest
import tifffile

from n2v_tf.io import LazyArray, block_slices, open_array, require

zarr = pytest.importorskip("zarr")


def _stack(shape=(6, 40, 56), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


def test_lazy_array_views_slice_like_numpy():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    lazy = LazyArray(data, "CZYX")
    view = lazy.as_axes("ZYXC")
    ref = np.moveaxis(data, 0, -1)
    assert view.shape == ref.shape and view.axes == "ZYXC"
    for key in [(slice(None),), (1, slice(1, 3)), (Ellipsis, 1), (slice(0, 2), 2, slice(None, None, 2), slice(1, 2)),
                (-1, -1, -1, -1)]:
        assert np.array_equal(view[key], ref[key]), key
    added = LazyArray(data[0], "ZYX").as_axes("YXZC")  # a channel axis of length 1 is added
    assert np.array_equal(added[1:3, :, 0], np.moveaxis(data[0], 0, -1)[1:3, :, 0, None])
    sample = view.sample(2)
    assert sample.shape == ref.shape[1:] and np.array_equal(sample[1:3], ref[2, 1:3])
    assert np.array_equal(np.asarray(view), ref)
    with pytest.raises(ValueError, match="leave out the axis 'C' of length 2"):
        lazy.as_axes("ZYX")
    with pytest.raises(TypeError, match="integers, slices and"):
        view[[0, 1]]
    with pytest.raises(IndexError, match="out of bounds"):
        view[3]


def test_block_slices_cover_once_aligned_to_chunks():
    shape, chunks = (7, 50, 30), (2, 16, 30)
    count = np.zeros(shape, int)
    for block in block_slices(shape, chunks, max_elements=2000):
        count[block] += 1
        size = np.prod([s.stop - s.start for s in block])
        assert size <= 2000 and all(s.start % c == 0 for s, c in zip(block, chunks))
    assert (count == 1).all()


def test_open_tiff_contiguous_and_compressed(tmp_path):
    data = _stack()
    tifffile.imwrite(tmp_path / "plain.tif", data, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "tiled.tif", data, tile=(16, 16), compression="zlib", metadata={"axes": "ZYX"})
    for name, kind in [("plain.tif", np.memmap), ("tiled.tif", zarr.Array)]:
        arr, axes, meta = open_array(tmp_path / name)
        assert isinstance(arr.base, kind) and axes == "ZYX" and meta["format"] == "tiff"
        assert arr.shape == data.shape and arr.dtype == np.uint16
        assert np.array_equal(arr[2, 5:9, 10:30], data[2, 5:9, 10:30])
        assert np.array_equal(arr.as_axes("ZYXC")[1:3, ..., 0], data[1:3])
    assert open_array(tmp_path / "plain.tif")[2]["tiff"]["kind"] == "imagej"
    with pytest.raises(ValueError, match=r"axes='YX' has 2 letter\(s\), but .*plain.tif' has 3"):
        open_array(tmp_path / "plain.tif", axes="YX")


def test_open_zarr_axes_from_dimension_names_or_given(tmp_path):
    data = _stack()
    named = zarr.create_array(store=str(tmp_path / "named.zarr"), shape=data.shape, dtype=data.dtype,
                              chunks=(1, 16, 16), dimension_names=["z", "y", "x"])
    named[...] = data
    arr, axes, meta = open_array(tmp_path / "named.zarr")
    assert axes == "ZYX" and meta["chunks"] == (1, 16, 16) and np.array_equal(arr[3], data[3])
    zarr.save_array(str(tmp_path / "bare.zarr"), data)
    with pytest.raises(ValueError, match=r"cannot determine the axes of '.*bare.zarr' .*axes='ZYX'"):
        open_array(tmp_path / "bare.zarr")
    assert open_array(tmp_path / "bare.zarr", axes="TYX")[1] == "TYX"
    with pytest.raises(ValueError, match=r"axes='CYX' do not match the axes 'ZYX' that '.*named.zarr' stores"):
        open_array(tmp_path / "named.zarr", axes="CYX")
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a", shape=(4, 4), dtype="f4")
    group.create_array("b", shape=(4, 4), dtype="f4")
    with pytest.raises(ValueError, match="holds 2 arrays"):
        open_array(tmp_path / "two.zarr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_array(tmp_path / "missing.zarr")


def test_open_ome_zarr_levels_axes_and_pixel_sizes(tmp_path):
    ome_zarr_writer = pytest.importorskip("ome_zarr.writer")
    data = np.random.default_rng(1).random((2, 8, 64, 64)).astype(np.float32)
    ome_zarr_writer.write_image(data, zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w"), axes="czyx",
                                scale_factors=(2,), scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5})
    arr, axes, meta = open_array(tmp_path / "img.ome.zarr")
    assert axes == "CZYX" and meta["format"] == "ome-zarr" and meta["levels"] == 2
    assert meta["pixel_size"] == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    assert np.array_equal(arr.as_axes("ZYXC")[3, 10:20, 5], np.moveaxis(data, 0, -1)[3, 10:20, 5])
    low, _, low_meta = open_array(tmp_path / "img.ome.zarr", level=1)
    assert low.shape == (2, 8, 32, 32) and low_meta["pixel_size"]["X"] == 1.0 and low_meta["level"] == 1
    with pytest.raises(ValueError, match="level=2 but the OME-Zarr .* has 2 resolution level"):
        open_array(tmp_path / "img.ome.zarr", level=2)
    with pytest.raises(ValueError, match="do not match the axes 'CZYX'"):
        open_array(tmp_path / "img.ome.zarr", axes="ZCYX")
    # NGFF 0.4 (Zarr v2, metadata at the top level of the attributes), written by hand
    group = zarr.open_group(str(tmp_path / "v04.zarr"), mode="w", zarr_format=2)
    group.create_array("s0", shape=(16, 24), dtype="u2", chunks=(8, 8))[...] = 7
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                                                              {"name": "x", "type": "space", "unit": "micrometer"}],
                                   "datasets": [{"path": "s0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [0.25, 0.3]}]}]}]
    arr, axes, meta = open_array(tmp_path / "v04.zarr")
    assert axes == "YX" and meta["pixel_size"] == {"Y": 0.25, "X": 0.3} and meta["units"]["X"] == "micrometer"
    assert arr[3:5, 0].tolist() == [7, 7]


def test_require_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ome_zarr", None)  # makes `import ome_zarr` fail
    with pytest.raises(ImportError, match=r'pip install "n2v_tf\[large\]" \(or pip install "ome-zarr"\)'):
        require("ome_zarr")
    assert require("numpy") is np
