"""Loading user images with their axes (load_images, guess_axes) and the data check (check_images)."""
import logging
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from n2v_tf import check_images, guess_axes, load_images
from n2v_tf import io as data_module  # file reading moved from data to io


def ramp(shape, dtype=np.uint16):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


# --------------------------------------------------------------------------- guess_axes

@pytest.mark.parametrize("shape, axes", [
    ((64, 64), "YX"), ((64, 64, 3), "YXC"), ((64, 64, 4), "YXC"), ((5, 64, 64), "ZYX"), ((64, 64, 5), "ZYX"),
    ((10, 64, 64, 2), "ZYXC"), ((3, 10, 64, 64), "SZYX"), ((2, 10, 64, 64, 3), "SZYXC"),
    ((4, 10, 2, 64, 64), "SZCYX"),
])
def test_guess_axes_rules(shape, axes):
    assert guess_axes(shape) == axes
    assert guess_axes(np.zeros(shape, np.uint8)) == axes          # an array works too


def test_guess_axes_n_channel_max_logging_and_errors(caplog):
    assert guess_axes((64, 64, 5), n_channel_max=8) == "YXC"
    with caplog.at_level(logging.INFO, logger="n2v_tf"):
        guess_axes((7, 32, 32))
    assert "guessed axes 'ZYX' from shape (7, 32, 32)" in caplog.text
    for shape in [(64,), (1, 2, 3, 4, 5, 6)]:
        with pytest.raises(ValueError, match=f"{len(shape)} dimension"):
            guess_axes(shape)
    with pytest.raises(ValueError, match="n_channel_max must be an int >= 1, got 0"):
        guess_axes((8, 8, 3), n_channel_max=0)


# --------------------------------------------------------------------------- load_images

def test_load_folder_sorted_skips_other_files(tmp_path):
    a, b = ramp((16, 20)), ramp((16, 20)) * 2
    tifffile.imwrite(tmp_path / "b.tif", b)
    tifffile.imwrite(tmp_path / "a.TIFF", a)
    tifffile.imwrite(tmp_path / "._a.tif", a[:2])                 # macOS resource fork: skipped
    (tmp_path / "notes.txt").write_text("not an image")
    images, axes = load_images(tmp_path)
    assert axes == "YX" and len(images) == 2
    np.testing.assert_array_equal(images[0], a)
    np.testing.assert_array_equal(images[1], b)
    assert images[0].dtype == np.uint16                            # not converted
    # the same through a glob pattern, a list of files, and the pattern argument
    assert len(load_images(str(tmp_path / "*.tif"))[0]) == 1
    assert len(load_images([tmp_path / "b.tif", str(tmp_path / "a.TIFF")])[0]) == 2
    only_b, _ = load_images(tmp_path, pattern="b*")
    np.testing.assert_array_equal(only_b[0], b)


@pytest.mark.parametrize("shape, kwargs, axes", [
    ((5, 2, 16, 16), {"imagej": True, "metadata": {"axes": "ZCYX"}}, "ZCYX"),
    ((4, 16, 16), {"imagej": True, "metadata": {"axes": "TYX"}}, "TYX"),
    ((2, 5, 16, 16), {"ome": True, "metadata": {"axes": "CZYX"}}, "CZYX"),
    ((16, 16, 3), {"photometric": "rgb"}, "YXC"),
    ((6, 16, 16), {"metadata": {"axes": "ZYX"}}, "ZYX"),
])
def test_load_tiff_axes_from_the_file(tmp_path, caplog, shape, kwargs, axes):
    arr = ramp(shape, np.uint8)
    tifffile.imwrite(tmp_path / "x.tif", arr, **kwargs)
    with caplog.at_level(logging.WARNING, logger="n2v_tf"):
        images, got = load_images(tmp_path / "x.tif")
    assert got == axes
    np.testing.assert_array_equal(images[0], arr)
    assert not caplog.records                                      # nothing guessed


def test_load_tiff_unknown_axes_are_guessed_and_said(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "shaped.tif", ramp((6, 16, 16)))           # tifffile: 'QYX'
    with tifffile.TiffWriter(tmp_path / "pages.tif") as w:               # plain pages: 'IYX'
        for i in range(3):
            w.write(ramp((16, 16)) + i, metadata=None, contiguous=False)
    for name in ("shaped.tif", "pages.tif"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="n2v_tf"):
            images, axes = load_images(tmp_path / name)
        assert axes == "ZYX" and images[0].ndim == 3
        assert len(caplog.records) == 1 and "pass axes=" in caplog.text and name in caplog.text
    # given axes win, and are checked against every file
    images, axes = load_images(tmp_path / "pages.tif", axes="tyx")
    assert axes == "TYX" and images[0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match=r"axes='YX' has 2 letter\(s\), but '.*pages.tif' has 3 dimension\(s\), "
                                         r"shape \(3, 16, 16\)"):
        load_images(tmp_path / "pages.tif", axes="YX")


def test_load_png_gray_and_rgb(tmp_path):
    gray = ramp((12, 10), np.uint8)
    rgb = ramp((12, 10, 3), np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    images, axes = load_images(tmp_path / "g.png")
    assert axes == "YX"
    np.testing.assert_array_equal(images[0], gray)
    images, axes = load_images(tmp_path / "c.png")
    assert axes == "YXC"
    np.testing.assert_array_equal(images[0], rgb)
    with pytest.raises(ValueError, match="different axes: '.*c.png' has 'YXC'.*'.*g.png' has 'YX'"):
        load_images(tmp_path)
    with pytest.raises(ValueError, match="for colour channels add C, e.g. axes='YXC'"):
        load_images(tmp_path / "c.png", axes="YX")


def test_load_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no image files in folder '.*empty' \(read: \*\.tif, \*\.tiff, \*\.png"):
        load_images(empty)
    with pytest.raises(ValueError, match="matching pattern '\\*.tif'"):
        load_images(empty, pattern="*.tif")
    with pytest.raises(ValueError, match="no files match the pattern"):
        load_images(str(empty / "*.tif"))
    with pytest.raises(FileNotFoundError, match="'.*missing.tif' does not exist"):
        load_images(tmp_path / "missing.tif")
    with pytest.raises(ValueError, match="source is an empty list"):
        load_images([])
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="cannot read '.*broken.tif'"):
        load_images(tmp_path / "broken.tif")
    with pytest.raises(ValueError, match="axes='YZ' is invalid"):
        load_images(tmp_path / "broken.tif", axes="YZ")


# --------------------------------------------------------------------------- check_images

def test_check_images_summary():
    imgs = [ramp((64, 80)), ramp((64, 80)) + 5]
    text = check_images(imgs, "YX", n_dim=2)
    assert text == "2 image(s), axes YX, shape 64x80, dtype uint16, values 0 to 5124"
    text = check_images([ramp((64, 64, 3), np.float32)], None, n_dim=2)
    assert "axes YXC (guessed from the shape)" in text and "3 channel(s)" in text and "float32" in text
    mixed = check_images([ramp((64, 64)), ramp((80, 64))], "YX", 2, allow_mixed_sizes=True)
    assert "2 different shapes (64x64, 80x64)" in mixed


@pytest.mark.parametrize("images, args, kwargs, words", [
    ([], ("YX", 2), {}, "no images"),
    ([ramp((64, 64)), ramp((64, 64), np.uint8)], ("YX", 2), {"names": ["a.tif", "b.tif"]},
     r"different dtypes \(uint16 in a.tif, uint8 in b.tif\): convert them to one type"),
    ([ramp((64, 64)), ramp((64, 96))], ("YX", 2), {"names": ["a.tif", "b.tif"]},
     (r"different sizes \(a.tif: 64x64, b.tif: 64x96 along YX\): crop them to one size, or set "
     r"allow_mixed_sizes=True: training accepts images of different sizes")),
    ([ramp((64, 64, 3), np.uint8)], ("YXC", 2), {"channels": 1, "names": ["cells.png"]},
     r"cells.png is an RGB image .* convert to grayscale .* or train a 3-channel model"),
    ([ramp((64, 64, 2))], ("YXC", 2), {"channels": 1}, r"has 2 channel\(s\) .* channels=1 are expected"),
    ([ramp((20, 64, 64))], ("ZYX", 2), {}, r"3D stack was passed as 2D data: .*20 Z slices.*set n_dim=3.*axes 'SYX'"),
    ([ramp((20, 64, 64))], (None, 2), {}, r"3D stack was passed as 2D data: image 0 has axes 'ZYX' \(guessed"),
    ([ramp((64, 64))], ("YX", 3), {}, "2D image was given where 3D stacks are expected"),
    ([ramp((64, 64))], ("ZYX", 2), {}, r"image 0 has 2 dimension\(s\), shape \(64, 64\), but axes 'ZYX' has 3"),
    ([ramp((64, 40))], ("YX", 2), {"min_size": 48, "names": ["small.tif"]},
     "small.tif is 40 px along X, smaller than the minimum 48"),
    ([np.full((64, 64), np.nan)], ("YX", 2), {}, "4096 NaN or infinite"),
    ([ramp((64, 64))], ("YX", 2), {"names": ["a", "b"]}, "names must be a list of 1"),
    ([ramp((64, 64)).astype(bool)], ("YX", 2), {}, "dtype bool"),
])
def test_check_images_errors(images, args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        check_images(images, *args, **kwargs)


def test_check_images_warnings(monkeypatch):
    with pytest.warns(UserWarning, match="tiny .*32 px along Y, 32 px along X"):
        check_images([ramp((32, 32))], "YX", 2)
    with pytest.warns(UserWarning, match="single value .* blank frame"):
        check_images([np.full((64, 64), 7, np.uint16)], "YX", 2)
    monkeypatch.setattr(data_module, "HUGE_BYTES", 1000)
    with pytest.warns(UserWarning, match="huge .* n_tiles"):
        check_images([ramp((64, 64))], "YX", 2)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # a normal stack: no warning
        check_images([ramp((16, 64, 64))], "ZYX", 3)


def test_load_then_check(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", ramp((8, 64, 64)), imagej=True, metadata={"axes": "ZYX"})
    images, axes = load_images(tmp_path)
    with pytest.raises(ValueError, match="3D stack was passed as 2D"):
        check_images(images, axes, n_dim=2)
    with pytest.warns(UserWarning, match="8 px along Z"):
        assert "axes ZYX, shape 8x64x64" in check_images(images, axes, n_dim=3, names=["stack.tif"])


def test_io_does_not_import_tensorflow():
    """Reading a TIFF must not cost the TensorFlow import (issue 12): n2v_tf.io imports no Keras."""
    import subprocess
    import sys
    code = ("import sys, n2v_tf.io, n2v_tf.config, n2v_tf.masking; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
