"""Tests of the command line (n2v_tf.cli): errors, input handling, train -> predict, demo --quick."""
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from n2v_tf import cli
from n2v_tf.cli import main

TINY = ["--epochs", "1", "--steps", "2", "--batch-size", "2", "--n-first", "4", "--depth", "1", "--verbose", "0"]


def smooth_noisy(shape, seed=0):
    """A smooth image plus Gaussian noise (float32)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    clean = 10 + 5 * np.prod([np.sin(g) for g in grids], axis=0)
    return (clean + rng.normal(0, 1, shape)).astype(np.float32)


@pytest.fixture
def tiny_tif(tmp_path):
    path = tmp_path / "imgs" / "tiny.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, smooth_noisy((64, 64)))
    return path


def error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err   # one line, no traceback
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- errors (fast, no training)

def test_missing_file(tmp_path, capsys):
    rc = main(["train", str(tmp_path / "nope.tif"), "--model-dir", str(tmp_path), "--name", "m"])
    assert rc == 2
    err = error_line(capsys)
    assert "nope.tif" in err and "does not exist" in err


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    rc = main(["train", str(tmp_path / "empty"), "--model-dir", str(tmp_path), "--name", "m"])
    assert rc == 2
    err = error_line(capsys)
    assert "empty" in err and "no images" in err


def test_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a tiff file")
    rc = main(["train", str(bad), "--model-dir", str(tmp_path), "--name", "m"])
    assert rc == 2
    assert "cannot read" in error_line(capsys)


@pytest.mark.parametrize("axes, words", [("ZYX", ["does not fit", "2 dimension"]), ("YXQ", ["invalid"]),
                                         ("YXC", ["does not fit"])])
def test_wrong_axes(tiny_tif, tmp_path, capsys, axes, words):
    rc = main(["train", str(tiny_tif), "--axes", axes, "--model-dir", str(tmp_path), "--name", "m"])
    assert rc == 2
    err = error_line(capsys)
    assert "--axes" in err and all(w in err for w in words), err


def test_rgb_png_hint(tmp_path, capsys):
    png = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png)
    assert main(["train", str(png), "--model-dir", str(tmp_path), "--name", "m"]) == 2
    assert "--axes YXC" in error_line(capsys)


def test_image_smaller_than_patch(tiny_tif, tmp_path, capsys):
    rc = main(["train", str(tiny_tif), "--patch", "128", "--model-dir", str(tmp_path), "--name", "m"])
    assert rc == 2
    assert "smaller than the patch" in error_line(capsys)


def test_image_too_small(tmp_path, capsys):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, np.zeros((6, 6), np.float32))
    assert main(["train", str(path), "--model-dir", str(tmp_path), "--name", "m"]) == 2
    assert "too small" in error_line(capsys)


def test_predict_missing_model(tiny_tif, tmp_path, capsys):
    rc = main(["predict", str(tiny_tif), "--model-dir", str(tmp_path), "--name", "none", "--output", str(tmp_path)])
    assert rc == 2
    assert "no model 'none'" in error_line(capsys)


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["train"]) == 2
    assert main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out


# --------------------------------------------------------------------------- input handling (no training)

def test_folder_stacks_and_sizes(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", smooth_noisy((3, 40, 48)), photometric="minisblack")  # 3 frames
    tifffile.imwrite(folder / "b.tiff", smooth_noisy((3, 72, 36)), photometric="minisblack")
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(folder / "c.png")
    (folder / "readme.txt").write_text("ignored")
    files = cli.collect_files([str(folder)])
    assert [f.name for f in files] == ["a.tif", "b.tiff", "c.png"]
    with pytest.raises(cli.CLIError, match="c.png"):          # c.png is 2D, not TYX
        cli.load_training_images(files, "TYX")
    images = cli.load_training_images(files[:2], "TYX")
    assert len(images) == 6 and all(im.shape[-1] == 1 and im.dtype == np.float32 for _, im in images)
    patch = cli.choose_patch(None, 2, images, div=4)
    assert patch == (40, 36)                                  # clipped to the smallest image, multiple of 4
    train, val, patch2, _ = cli.split_validation(images, patch, 0.1, 4, False)
    assert (len(train), len(val), patch2) == (5, 1, patch)


def test_channel_and_3d_axes():
    img = np.zeros((2, 8, 16, 24), np.uint16)                 # C Z Y X
    ims = cli.to_training_images(img, "CZYX")
    assert len(ims) == 1 and ims[0].shape == (8, 16, 24, 2)
    ims = cli.to_training_images(np.zeros((5, 16, 24, 3)), "SYXC")
    assert len(ims) == 5 and ims[0].shape == (16, 24, 3)


def test_single_image_validation_region():
    im = np.zeros((64, 80, 1), np.float32)
    train, val, patch, _ = cli.split_validation([("x", im)], (64, 64), 0.1, 4, False)
    assert patch == (32, 64)                                  # shrunk so that both regions hold a patch
    assert train[0].shape == (32, 80, 1) and val[0].shape == (32, 80, 1)
    with pytest.raises(cli.CLIError, match="rows"):
        cli.split_validation([("x", im)], (64, 64), 0.1, 4, True)
    big = np.zeros((400, 100, 1), np.float32)
    train, val, patch, _ = cli.split_validation([("x", big)], (64, 64), 0.1, 4, False)
    assert val[0].shape[0] == 64 and train[0].shape[0] == 336 and patch == (64, 64)


# --------------------------------------------------------------------------- commands

def test_python_m_help():
    res = subprocess.run([sys.executable, "-m", "n2v_tf", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert all(cmd in res.stdout for cmd in ("train", "predict", "demo"))


@pytest.mark.slow
def test_train_then_predict(tiny_tif, tmp_path, capsys):
    models = tmp_path / "models"
    args = ["train", str(tiny_tif.parent), "--axes", "YX", "--model-dir", str(models), "--name", "tiny",
            "--preset", "n2v2", "--seed", "0"] + TINY
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Model saved" in out
    assert (models / "tiny" / "config.json").is_file() and (models / "tiny" / "weights_best.h5").is_file()
    # the model folder exists now: a second run needs --overwrite
    assert main(args) == 2
    assert "--overwrite" in error_line(capsys)

    outdir = tmp_path / "denoised"
    rc = main(["predict", str(tiny_tif), "--model-dir", str(models), "--name", "tiny", "--axes", "YX",
               "--output", str(outdir), "--n-tiles", "2", "1"])
    assert rc == 0, capsys.readouterr().err
    pred = tifffile.imread(outdir / "tiny_n2v.tif")
    assert pred.shape == (64, 64) and pred.dtype == np.float32 and np.isfinite(pred).all()
    capsys.readouterr()
    # a 3D axes string does not fit this 2D model
    rc = main(["predict", str(tiny_tif), "--model-dir", str(models), "--name", "tiny", "--axes", "ZYX",
               "--output", str(outdir)])
    assert rc == 2 and "2D model" in error_line(capsys)


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    rc = main(["demo", "--quick", "--outdir", str(tmp_path / "demo"), "--verbose", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"PSNR [^\n]*?(-?\d+\.\d+) dB", out)]
    assert len(values) == 2, out
    assert 15 < values[0] < 30                          # the shipped noisy image: about 21.8 dB
    den = tifffile.imread(tmp_path / "demo" / "nuclei_n2v2.tif")
    assert den.shape == (256, 256) and den.dtype == np.float32
    with Image.open(tmp_path / "demo" / "nuclei_noisy_denoised_clean.png") as png:
        assert png.size[0] > 3 * 256 and png.size[1] == 256
