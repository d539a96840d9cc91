"""Tests of the command line (n2v_tf.cli): errors, input handling, train -> predict, demo --quick."""
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from n2v_tf import N2V, cli
from n2v_tf.cli import main
from n2v_tf.qc import psnr

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
    assert all(cmd in res.stdout for cmd in ("train", "predict", "demo", "analyze-noise"))


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
def test_predict_qc_report_of_the_first_image(tiny_tif, tmp_path, capsys, monkeypatch):
    """--qc: qc_report of the first input (its input and prediction, no reference) as a PNG; outputs as before."""
    pytest.importorskip("matplotlib")
    from n2v_tf import qc
    models = tmp_path / "models"
    assert main(["train", str(tiny_tif), "--model-dir", str(models), "--name", "tiny", "--seed", "0"] + TINY) == 0
    second = tiny_tif.parent / "z_second.tif"
    tifffile.imwrite(second, smooth_noisy((48, 64), seed=1))
    calls = []
    original = qc.qc_report

    def recording(noisy, denoised, reference=None, history=None, path=None):
        calls.append((noisy, denoised, reference, history))
        return original(noisy, denoised, reference, history, path)

    monkeypatch.setattr(qc, "qc_report", recording)
    capsys.readouterr()
    outdir, png = tmp_path / "denoised", tmp_path / "qc" / "report.png"
    rc = main(["predict", str(tiny_tif.parent), "--model-dir", str(models), "--name", "tiny", "--output", str(outdir),
               "--qc", str(png)])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Wrote 2 denoised image(s)" in out and f"QC report of '{tiny_tif}'" in out and str(png) in out
    assert len(calls) == 1
    noisy, denoised, reference, history = calls[0]
    np.testing.assert_array_equal(noisy, tifffile.imread(tiny_tif))               # the first image, sorted by name
    np.testing.assert_array_equal(denoised, tifffile.imread(outdir / "tiny_n2v.tif"))
    assert reference is None and history is None
    assert (outdir / "z_second_n2v.tif").is_file()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500


def test_qc_images_takes_the_first_sample_and_channel():
    img = np.arange(2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)          # SYXC
    noisy, denoised, note = cli.qc_images(img, img + 1, "SYXC")
    np.testing.assert_array_equal(noisy, img[0, :, :, 0])
    np.testing.assert_array_equal(denoised, img[0, :, :, 0] + 1)
    assert note == " (image 1 of 2, channel 1 of 3)"
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    noisy, _, note = cli.qc_images(vol, vol, "ZYX")
    assert noisy.shape == (4, 5, 6) and note == ""
    noisy, _, _ = cli.qc_images(np.zeros((5, 6, 2, 4)), np.zeros((5, 6, 2, 4)), "YXCZ")
    assert noisy.shape == (4, 5, 6)                                                  # brought to ZYX


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    rc = main(["demo", "--quick", "--outdir", str(tmp_path / "demo"), "--verbose", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"PSNR [^\n]*?(-?\d+\.\d+) dB", out)]
    assert len(values) == 3, out                        # input, output, output calibrated to the image
    assert 15 < values[0] < 30                          # the shipped noisy image: about 21.8 dB
    den = tifffile.imread(tmp_path / "demo" / "nuclei_n2v2.tif")
    assert den.shape == (256, 256) and den.dtype == np.float32
    assert "with the last weights" in out
    assert re.search(r"Output calibrated on the validation data's blind spots: gain -?\d\.\d{4}, offset [+-]\d", out)
    model = N2V(None, "n2v2_demo", basedir=str(tmp_path / "demo" / "models"))
    model.load_weights("weights_last.h5")  # the demo's image is the last weights' prediction
    noisy = cli.load_demo_data()[0]
    np.testing.assert_allclose(den, model.predict(noisy, "YX"), atol=1e-5 * np.ptp(den))
    clean = cli.load_demo_data()[1]
    assert "PSNR calibrated to the image (predict(..., calibrate='auto'), not written)" in out
    assert abs(values[2] - psnr(clean, model.predict(noisy, "YX", calibrate="auto"))) < 0.01
    with Image.open(tmp_path / "demo" / "nuclei_noisy_denoised_clean.png") as png:
        assert png.size[0] > 3 * 256 and png.size[1] == 256


# --------------------------------------------------------------------------- analyze-noise (structN2V mask)

def striped_noise(shape, width=9, axis=-1, seed=0, pixel_sigma=0.3):
    """White noise convolved with a box of ``width`` pixels along ``axis``, plus pixel-wise Gaussian noise."""
    from scipy.ndimage import uniform_filter1d
    rng = np.random.default_rng(seed)
    x = uniform_filter1d(rng.normal(size=shape), width, axis=axis, mode="wrap") * np.sqrt(width)
    return (100 + 10 * (x + pixel_sigma * rng.normal(size=shape))).astype(np.float32)


def printed_mask(out):
    """The mask of the ``structN2Vmask=[...]`` line of analyze-noise's output."""
    import json
    lines = [ln for ln in out.splitlines() if ln.startswith("structN2Vmask=")]
    assert len(lines) == 1, out
    return np.array(json.loads(lines[0][len("structN2Vmask="):]))


def test_analyze_noise_box_along_x(tmp_path, capsys):
    tif = tmp_path / "stripes.tif"
    tifffile.imwrite(tif, striped_noise((128, 128)))
    png = tmp_path / "out" / "acf.png"
    png.parent.mkdir()
    assert main(["analyze-noise", str(tif), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    mask = printed_mask(out)
    assert mask.ndim == 2 and mask.shape[0] == 1 and 7 <= mask.shape[1] <= 11 and (mask == 1).all(), out
    assert re.search(rf"spans: Y 1, X {mask.shape[1]}\b", out), out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in out


def test_analyze_noise_default_png_in_cwd_stack_and_crop(tmp_path, capsys, monkeypatch):
    tif = tmp_path / "data" / "dark.tif"
    tif.parent.mkdir()
    stack = np.stack([striped_noise((48, 96), axis=0, seed=s) for s in (1, 2)])    # correlated along Y
    tifffile.imwrite(tif, stack, photometric="minisblack")
    monkeypatch.chdir(tmp_path)
    assert main(["analyze-noise", str(tif), "--axes", "SYX", "--crop", "8:,:80"]) == 0
    out = capsys.readouterr().out
    mask = printed_mask(out)
    assert mask.shape[1] == 1 and 7 <= mask.shape[0] <= 11, out
    assert "2 images" in out and "40x80" in out
    assert (tmp_path / "dark_acf.png").is_file()                     # <INPUT stem>_acf.png in the cwd


def test_analyze_noise_3d_and_white_noise(tmp_path, capsys):
    tif = tmp_path / "vol.tif"
    tifffile.imwrite(tif, striped_noise((16, 64, 64), axis=1), photometric="minisblack")
    assert main(["analyze-noise", str(tif), "--axes", "ZYX", "--no-png"]) == 0
    out = capsys.readouterr().out
    mask = printed_mask(out)
    assert mask.ndim == 3 and mask.shape[0] <= 3 and mask.shape[2] <= 3 and 7 <= mask.shape[1] <= 11, out
    assert not list(tmp_path.glob("*.png"))
    white = tmp_path / "white.tif"
    tifffile.imwrite(white, np.random.default_rng(3).normal(size=(64, 64)).astype(np.float32))
    assert main(["analyze-noise", str(white), "--no-png"]) == 0
    captured = capsys.readouterr()
    assert printed_mask(captured.out).tolist() == [[1]] and "plain N2V" in captured.out
    assert "Traceback" not in captured.err


def test_analyze_noise_missing_file(tmp_path, capsys):
    assert main(["analyze-noise", str(tmp_path / "nope.tif")]) == 2
    err = error_line(capsys)
    assert "nope.tif" in err and "does not exist" in err and "analyze-noise" in err


@pytest.mark.parametrize("extra, words", [
    (["--crop", "0:300,:"], ["--crop", "outside"]), (["--crop", "0:64"], ["--crop", "one START:STOP"]),
    (["--crop", "a:b,:"], ["--crop", "integers"]), (["--crop", "0:4,:"], ["8 pixels"]),
    (["--axes", "ZYX"], ["--axes", "does not fit"]), (["--axes", "YXC"], ["one channel"]),
    (["--threshold", "1.5"], ["threshold"]), (["--min-correlation", "0"], ["min_correlation"]),
    (["--max-span", "4"], ["max_span"]), (["--name", "m"], ["--model-dir and --name"]),
    (["--model-dir", "MODELS", "--name", "none"], ["no model 'none'"]),
])
def test_analyze_noise_errors(tmp_path, capsys, extra, words):
    tif = tmp_path / "n.tif"
    tifffile.imwrite(tif, striped_noise((64, 64)))
    extra = [str(tmp_path) if a == "MODELS" else a for a in extra]
    assert main(["analyze-noise", str(tif), "--no-png"] + extra) == 2
    err = error_line(capsys)
    assert all(w in err for w in words), err


def test_analyze_noise_folder_and_help(tmp_path, capsys):
    assert main(["analyze-noise", str(tmp_path)]) == 2
    assert "folder" in error_line(capsys)
    assert main(["analyze-noise", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model-dir" in out and "--crop" in out and "structN2V" in out


def test_parse_crop():
    assert cli.parse_crop("2:10, :-4", "YX", (16, 20)) == (slice(2, 10), slice(0, 16))
    assert cli.parse_crop(":,-8:,0:5", "ZYX", (4, 16, 20)) == (slice(0, 4), slice(8, 16), slice(0, 5))
    for bad in ("5:5,:", "3:2,:", ":,0:21", "1:2:3,:", "1,:"):
        with pytest.raises(cli.CLIError, match="--crop"):
            cli.parse_crop(bad, "YX", (16, 20))


@pytest.mark.slow
def test_analyze_noise_residual_of_a_model(tmp_path, capsys):
    """--model-dir/--name: the autocorrelation of INPUT - prediction (a tiny model, so the residual ~ the noise)."""
    import warnings

    from n2v_tf import N2V
    from n2v_tf.analysis import suggest_struct_mask
    tif = tmp_path / "noisy.tif"
    img = striped_noise((64, 64), seed=4)
    tifffile.imwrite(tif, img)
    models = tmp_path / "models"
    assert main(["train", str(tif), "--model-dir", str(models), "--name", "tiny", "--preset", "n2v",
                 "--seed", "0"] + TINY) == 0
    capsys.readouterr()
    assert main(["analyze-noise", str(tif), "--model-dir", str(models), "--name", "tiny",
                 "--png", str(tmp_path / "res.png")]) == 0
    out = capsys.readouterr().out
    assert "residual of model 'tiny'" in out and (tmp_path / "res.png").is_file()
    residual = img.astype(np.float64) - N2V(None, "tiny", basedir=str(models)).predict(img, "YX")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, _ = suggest_struct_mask(residual)
    np.testing.assert_array_equal(printed_mask(out), expected)


def test_parse_struct_mask_forms():
    from n2v_tf.cli import CLIError, _parse_struct_mask
    assert _parse_struct_mask("X:5", 2) == [[1, 1, 1, 1, 1]]
    assert _parse_struct_mask("Y:3", 3) == [[[1], [1], [1]]]
    assert _parse_struct_mask("[[1, 1, 1]]", 2) == [[1, 1, 1]]
    assert _parse_struct_mask(None, 2) is None
    for bad in ("X:4", "Q:5", "[[1, 1"):
        with pytest.raises(CLIError, match="struct-mask|span|axis"):
            _parse_struct_mask(bad, 2)


@pytest.mark.slow
def test_train_with_struct_mask(tiny_tif, tmp_path):
    models = tmp_path / "models"
    args = ["train", str(tiny_tif.parent), "--axes", "YX", "--model-dir", str(models), "--name", "st",
            "--preset", "n2v", "--seed", "0", "--struct-mask", "X:5"] + TINY
    assert main(args) == 0
    assert '"structN2Vmask": [[1, 1, 1, 1, 1]]' in (models / "st" / "config.json").read_text()


# --------------------------------------------------------------------------- PN2V: noise-model, bootstrap, train --noise-model

GAIN, READ_SIGMA = 1.0, 1.0          # Poisson-Gaussian noise of the synthetic data: Var[x|s] = GAIN * s + READ_SIGMA**2


def smooth_photons(shape, peak=30.0, low=2.0):
    """A smooth clean image in photons, ``low`` to ``peak``."""
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    return low + (peak - low) * np.prod([np.sin(g) ** 2 for g in grids], axis=0)


def poisson_gaussian(clean, rng):
    return (GAIN * rng.poisson(clean / GAIN) + rng.normal(0, READ_SIGMA, clean.shape)).astype(np.float32)


@pytest.fixture
def calibration_tif(tmp_path):
    """8 noisy frames (Poisson + Gaussian read noise) of a static smooth sample."""
    rng = np.random.default_rng(5)
    clean = smooth_photons((48, 48))
    path = tmp_path / "calib.tif"
    tifffile.imwrite(path, np.stack([poisson_gaussian(clean, rng) for _ in range(8)]), photometric="minisblack")
    return path


def test_noise_model_gmm_from_calibration_stack(calibration_tif, tmp_path, capsys):
    from n2v_tf import GaussianMixtureNoiseModel
    out = tmp_path / "nm" / "calib_gmm.npz"
    rc = main(["noise-model", "--calibration", str(calibration_tif), "--output", str(out), "--steps", "300",
               "--fit-batch-size", "4096"])
    assert rc == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "8 frames" in captured.out and "Signal range" in captured.out and "Variance law" in captured.out
    assert "--check" in captured.out                                        # the coverage note
    assert "only 8 frames" in captured.err and "Traceback" not in captured.err
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nm = GaussianMixtureNoiseModel.load(out)
    s = np.linspace(8, 24, 5)                                               # inside the sample's signal range
    _, var = nm.mean_and_variance(s)
    np.testing.assert_allclose(var, GAIN * s + READ_SIGMA ** 2, rtol=0.35)  # 8 frames: a rough but right law


def test_noise_model_both_kinds_png_and_check(calibration_tif, tmp_path, capsys):
    from n2v_tf import GaussianMixtureNoiseModel, HistogramNoiseModel
    img = tmp_path / "to_denoise.tif"
    tifffile.imwrite(img, poisson_gaussian(smooth_photons((40, 40)), np.random.default_rng(1)))
    far = tmp_path / "far.tif"                                              # far brighter than the calibration
    tifffile.imwrite(far, poisson_gaussian(200 + smooth_photons((40, 40)), np.random.default_rng(2)))
    rc = main(["noise-model", "--calibration", str(calibration_tif), "--kind", "both", "--output",
               str(tmp_path / "nm"), "--png", str(tmp_path / "plots" / "p.png"), "--steps", "20", "--bins", "32",
               "--check", str(img), str(far)])
    assert rc == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert isinstance(cli.load_noise_model_file(str(tmp_path / "nm_gmm.npz")), GaussianMixtureNoiseModel)
    hist = cli.load_noise_model_file(str(tmp_path / "nm_histogram.npz"))
    assert isinstance(hist, HistogramNoiseModel) and hist.bins == 32
    assert (tmp_path / "plots" / "p_gmm.png").is_file() and (tmp_path / "plots" / "p_histogram.png").is_file()
    assert "Gaussian mixture noise model" in captured.out and "Histogram noise model: 32 x 32" in captured.out
    assert captured.out.count("to_denoise.tif") == 2 and captured.out.count("far.tif") == 2
    assert "far.tif" in captured.err and "signal range" in captured.err      # warned: not covered
    assert "to_denoise.tif" not in captured.err


def test_noise_model_no_png(calibration_tif, tmp_path, capsys):
    rc = main(["noise-model", "--calibration", str(calibration_tif), "--kind", "histogram", "--output",
               str(tmp_path / "h.npz"), "--no-png", "--bins", "16"])
    assert rc == 0
    assert (tmp_path / "h.npz").is_file() and not list(tmp_path.glob("*.png"))


def _write(path, array):
    tifffile.imwrite(path, np.asarray(array), photometric="minisblack")
    return path


@pytest.mark.parametrize("case, extra, words", [
    ("one_frame", [], ["1 frame", "at least 2"]),
    ("single_image", [], ["not a stack"]),
    ("nan", [], ["NaN"]),
    ("unreadable", [], ["cannot read"]),
    ("missing", [], ["does not exist"]),
    ("folder", [], ["folder"]),
    ("ok", ["--axis", "3"], ["--axis 3"]),
    ("ok", ["--bins", "1"], ["--bins"]),
    ("ok", ["--steps", "0"], ["--steps"]),
    ("ok", ["--png", "x.png", "--no-png"], ["exclude"]),
    ("ok", ["--check", "MISSING.tif"], ["does not exist"]),
])
def test_noise_model_errors(tmp_path, capsys, case, extra, words):
    good = np.random.default_rng(0).normal(10, 1, (4, 16, 16)).astype(np.float32)
    path = tmp_path / f"{case}.tif"
    if case == "one_frame":
        _write(path, good[:1])
    elif case == "single_image":
        _write(path, good[0])
    elif case == "nan":
        bad = good.copy()
        bad[1, 2, 3] = np.nan
        _write(path, bad)
    elif case == "unreadable":
        path.write_bytes(b"not a tiff")
    elif case == "folder":
        path = tmp_path
    elif case == "ok":
        _write(path, good)
    extra = [str(tmp_path / e) if e == "MISSING.tif" else e for e in extra]
    rc = main(["noise-model", "--calibration", str(path), "--output", str(tmp_path / "nm.npz")] + extra)
    assert rc == 2
    err = error_line(capsys)
    assert "noise-model" in err and all(w in err for w in words), err
    assert not (tmp_path / "nm.npz").exists()


def test_load_noise_model_file_errors(tmp_path):
    with pytest.raises(cli.CLIError, match="does not exist"):
        cli.load_noise_model_file(str(tmp_path / "none.npz"))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(cli.CLIError, match="not a noise model file"):
        cli.load_noise_model_file(str(tmp_path / "other.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(cli.CLIError, match="cannot read"):
        cli.load_noise_model_file(str(tmp_path / "junk.npz"))


def test_histogram_bins_default_matches_the_library():
    from n2v_tf.noise_models import DEFAULT_BINS
    assert cli.HISTOGRAM_BINS == DEFAULT_BINS


def test_help_lists_pn2v_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "noise-model" in out and "bootstrap" in out
    assert main(["bootstrap", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(w in out for w in ("--pn2v-samples", "--kind", "--n2v-name", "--reuse-n2v", "--gmm-steps"))
    assert main(["predict", "--help"]) == 0
    assert "--pn2v-output" in capsys.readouterr().out


@pytest.fixture
def photon_tif(tmp_path):
    path = tmp_path / "imgs" / "photons.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, poisson_gaussian(smooth_photons((64, 64)), np.random.default_rng(7)))
    return path


@pytest.mark.parametrize("extra, words", [
    (["--n2v-name", "pn"], ["--n2v-name must differ"]),
    (["--pn2v-samples", "1"], ["--pn2v-samples"]),
    (["--clip-percent", "50"], ["--clip-percent"]),
    (["--gmm-steps", "0"], ["--gmm-steps"]),
    (["--reuse-n2v"], ["no model 'pn_n2v'"]),
    (["--axes", "YXC"], ["does not fit"]),
])
def test_bootstrap_errors(photon_tif, tmp_path, capsys, extra, words):
    rc = main(["bootstrap", str(photon_tif), "--model-dir", str(tmp_path / "models"), "--name", "pn"] + extra)
    assert rc == 2
    err = error_line(capsys)
    assert "bootstrap" in err and all(w in err for w in words), err


def test_bootstrap_refuses_existing_folders_and_colour(photon_tif, tmp_path, capsys):
    models = tmp_path / "models"
    (models / "pn_n2v").mkdir(parents=True)
    (models / "pn_n2v" / "config.json").write_text("{}")
    base = ["bootstrap", str(photon_tif), "--model-dir", str(models), "--name", "pn"]
    assert main(base) == 2
    assert "--reuse-n2v" in error_line(capsys)
    (models / "pn").mkdir()
    (models / "pn" / "config.json").write_text("{}")
    assert main(base) == 2
    err = error_line(capsys)
    assert "already exists" in err and "--overwrite" in err and "pn_n2v" not in err
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 32, 2), np.float32), photometric="minisblack", planarconfig="contig")
    assert main(["bootstrap", str(rgb), "--axes", "YXC", "--model-dir", str(models), "--name", "new"]) == 2
    assert "single-channel" in error_line(capsys)


def test_train_pn2v_option_errors(photon_tif, tmp_path, capsys):
    base = ["train", str(photon_tif), "--model-dir", str(tmp_path), "--name", "m"]
    assert main(base + ["--pn2v-samples", "16"]) == 2
    assert "--noise-model" in error_line(capsys)
    assert main(base + ["--noise-model", str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in error_line(capsys)


@pytest.mark.slow
def test_bootstrap_end_to_end_then_predict(photon_tif, tmp_path, capsys):
    """N2V -> bootstrapped GMM -> PN2V on a tiny image; predict writes the MMSE estimate and the prior mean."""
    from n2v_tf import GaussianMixtureNoiseModel
    models = tmp_path / "models"
    args = ["bootstrap", str(photon_tif.parent), "--axes", "YX", "--model-dir", str(models), "--name", "pn",
            "--patch", "32", "--pn2v-samples", "8", "--gmm-steps", "50", "--fit-batch-size", "4096",
            "--seed", "0"] + TINY
    assert main(args) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "[1/3]" in captured.out and "[3/3]" in captured.out and "PN2V model saved" in captured.out
    assert "Gaussian mixture noise model" in captured.out and "Variance law" in captured.out
    assert "Traceback" not in captured.err
    folder = models / "pn"
    assert (models / "pn_n2v" / "weights_best.h5").is_file() and (folder / "weights_best.h5").is_file()
    assert (folder / "noise_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nm = GaussianMixtureNoiseModel.load(folder / "noise_model_gmm.npz")
    assert np.isfinite(nm.weight).all()
    assert '"probabilistic": true' in (folder / "config.json").read_text()
    assert '"pn2v_samples": 8' in (folder / "config.json").read_text()

    outs = {}
    for mode in ("mmse", "prior_mean"):
        extra = [] if mode == "mmse" else ["--pn2v-output", "prior_mean"]
        rc = main(["predict", str(photon_tif), "--model-dir", str(models), "--name", "pn", "--output",
                   str(tmp_path / mode)] + extra)
        assert rc == 0, capsys.readouterr().err
        assert ("MMSE" if mode == "mmse" else "prior mean") in capsys.readouterr().out
        outs[mode] = tifffile.imread(tmp_path / mode / "photons_n2v.tif")
        assert outs[mode].shape == (64, 64) and np.isfinite(outs[mode]).all()
    assert not np.allclose(outs["mmse"], outs["prior_mean"])
    # --pn2v-output is for PN2V models only
    assert main(["predict", str(photon_tif), "--model-dir", str(models), "--name", "pn_n2v", "--output",
                 str(tmp_path / "x"), "--pn2v-output", "mmse"]) == 2
    assert "plain N2V" in error_line(capsys)
    # a PN2V model whose noise model file went missing: a clear error, and the prior mean still works
    (folder / "noise_model_gmm.npz").unlink()
    assert main(["predict", str(photon_tif), "--model-dir", str(models), "--name", "pn", "--output",
                 str(tmp_path / "y")]) == 2
    assert "prior_mean" in error_line(capsys)


@pytest.mark.slow
def test_calibration_noise_model_then_train_pn2v(calibration_tif, photon_tif, tmp_path, capsys):
    """noise-model -> train --noise-model (PN2V) -> predict: the calibration path of the CLI."""
    nm = tmp_path / "nm.npz"
    assert main(["noise-model", "--calibration", str(calibration_tif), "--output", str(nm), "--steps", "30",
                 "--fit-batch-size", "4096", "--no-png"]) == 0
    models = tmp_path / "models"
    assert main(["train", str(photon_tif), "--model-dir", str(models), "--name", "pn", "--noise-model", str(nm),
                 "--pn2v-samples", "8", "--patch", "32", "--preset", "n2v"] + TINY) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "PN2V (8 samples per pixel)" in out and "3x3-smoothed" in out
    assert (models / "pn" / "noise_model_gmm.npz").is_file()
    assert main(["predict", str(photon_tif), "--model-dir", str(models), "--name", "pn", "--output",
                 str(tmp_path / "den")]) == 0
    assert np.isfinite(tifffile.imread(tmp_path / "den" / "photons_n2v.tif")).all()


def test_export_errors_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing_model"), str(tmp_path / "out.zip"),
                 "--test-img", str(tmp_path / "x.tif")]) == 2
    assert "missing_model" in error_line(capsys) or "model" in error_line(capsys)
    assert not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize("flag, expected", (([], "preset"), (["--augment"], True), (["--no-augment"], False)))
@pytest.mark.parametrize("preset", ("n2v", "n2v2", "n2v-0.3"))
def test_train_augment_flag_overrides_the_preset(flag, expected, preset, tmp_path):
    from n2v_tf.config import PRESETS
    args = cli.build_parser().parse_args(["train", "x.tif", "--model-dir", str(tmp_path), "--name", "m",
                                          "--preset", preset] + flag)
    train = [np.random.default_rng(0).normal(size=(64, 64, 1)).astype(np.float32)]
    config = cli._config_from_args(args, train, (32, 32))
    want = PRESETS[preset].get("train_augment", False) if expected == "preset" else expected
    assert config.train_augment is want


@pytest.mark.parametrize("flag, expected", (([], "preset"), (["--calibrate"], True), (["--no-calibrate"], False)))
@pytest.mark.parametrize("preset", ("n2v2", "n2v-0.3"))
def test_train_calibrate_flag_overrides_the_preset(flag, expected, preset, tmp_path):
    args = cli.build_parser().parse_args(["train", "x.tif", "--model-dir", str(tmp_path), "--name", "m",
                                          "--preset", preset] + flag)
    train = [np.random.default_rng(0).normal(size=(64, 64, 1)).astype(np.float32)]
    config = cli._config_from_args(args, train, (32, 32))
    assert config.train_calibrate_output is ({"n2v2": True, "n2v-0.3": False}[preset] if expected == "preset"
                                             else expected)


@pytest.mark.parametrize("flag, expected", (([], "preset"), (["--mixed-precision", "auto"], "auto"),
                                            (["--mixed-precision", "float32"], None),
                                            (["--mixed-precision", "mixed_bfloat16"], "mixed_bfloat16")))
def test_train_mixed_precision_flag_overrides_the_preset(flag, expected, tmp_path):
    from n2v_tf.config import PRESETS
    args = cli.build_parser().parse_args(["train", "x.tif", "--model-dir", str(tmp_path), "--name", "m"] + flag)
    train = [np.random.default_rng(0).normal(size=(64, 64, 1)).astype(np.float32)]
    config = cli._config_from_args(args, train, (32, 32))
    want = PRESETS[args.preset].get("train_mixed_precision") if expected == "preset" else expected
    assert config.train_mixed_precision == want


@pytest.mark.parametrize("flag", ([], ["--bootstrap-tta"]))
def test_bootstrap_tta_flag_reaches_the_pipeline(flag, photon_tif, tmp_path, monkeypatch):
    import n2v_tf.models as models_module
    seen = {}

    def fake_pipeline(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(models_module, "train_pn2v_bootstrapped", fake_pipeline)
    assert main(["bootstrap", str(photon_tif.parent), "--axes", "YX", "--model-dir", str(tmp_path / "m"),
                 "--name", "pn", "--patch", "32"] + flag + TINY) == 2
    assert seen["bootstrap_tta"] is bool(flag)
