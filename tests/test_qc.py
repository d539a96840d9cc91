"""QC measures and figures (n2v_tf.qc): SSIM against independent references, and what the plots show."""
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from n2v_tf import qc
from n2v_tf.qc import (
    plot_before_after,
    plot_history,
    plot_orthogonal,
    plot_residual,
    psnr,
    qc_report,
    ssim,
)


def smooth(shape, seed=0):
    """A smooth random image (values ~ 0..100)."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    return 100 * (img - img.min()) / (img.max() - img.min())


# --------------------------------------------------------------------------- SSIM

def ssim_reference(x, y, data_range):
    """SSIM written out window by window: explicit 11-tap Gaussian weights, interior pixels only."""
    r = 5
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
    g /= g.sum()
    w = g
    for _ in range(x.ndim - 1):
        w = np.multiply.outer(w, g)
    wx, wy = sliding_window_view(x, w.shape), sliding_window_view(y, w.shape)
    axes = tuple(range(x.ndim, 2 * x.ndim))
    mx, my = (wx * w).sum(axes), (wy * w).sum(axes)
    vx = (w * (wx - mx[(...,) + (None,) * x.ndim]) ** 2).sum(axes)
    vy = (w * (wy - my[(...,) + (None,) * x.ndim]) ** 2).sum(axes)
    cxy = (w * (wx - mx[(...,) + (None,) * x.ndim]) * (wy - my[(...,) + (None,) * x.ndim])).sum(axes)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


@pytest.mark.parametrize("shape", [(23, 31), (13, 14, 15)])
def test_ssim_matches_window_by_window_reference(shape):
    rng = np.random.default_rng(1)
    x = smooth(shape)
    y = x + rng.normal(0, 10, shape)
    expected = ssim_reference(x, y, 100.0)
    assert ssim(x, y, data_range=100.0) == pytest.approx(expected, rel=1e-9)
    assert ssim(x, y) == pytest.approx(expected, rel=1e-9)       # default data_range: reference max - min


@pytest.mark.parametrize("shape", [(40, 48), (12, 20, 24)])
def test_ssim_matches_skimage(shape):
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    x = smooth(shape, seed=3)
    y = x + rng.normal(0, 8, shape)
    for dr in (100.0, 255.0):
        expected = metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                 data_range=dr)
        assert ssim(x, y, data_range=dr) == pytest.approx(expected, rel=1e-9)


def test_ssim_simple_cases():
    rng = np.random.default_rng(4)
    x = smooth((48, 48))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x[None].repeat(4, 0), x[None].repeat(4, 0)) == pytest.approx(1.0)   # 3D with only 4 Z slices
    values = [ssim(x, x + rng.normal(0, s, x.shape)) for s in (2, 10, 40)]
    assert 1 > values[0] > values[1] > values[2]
    assert ssim(x, rng.normal(50, 30, x.shape)) < 0.2                                  # independent noise
    # scale invariance with the data range, symmetric in the two images
    y = x + rng.normal(0, 10, x.shape)
    assert ssim(10 * x, 10 * y, data_range=1000) == pytest.approx(ssim(x, y, data_range=100))
    assert ssim(x, y, 100) == pytest.approx(ssim(y, x, 100))


@pytest.mark.parametrize("args, words", [
    ((np.zeros((8, 8)), np.zeros((8, 9))), "differs from image shape"),
    ((np.zeros(8), np.zeros(8)), "reference must be 2D"),
    ((np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 5))), "4 dimension"),
    ((np.ones((8, 8)), np.ones((8, 8))), "reference is constant"),
    ((np.eye(8), np.full((8, 8), np.nan)), "image contains 64 NaN"),
])
def test_ssim_errors(args, words):
    with pytest.raises(ValueError, match=words):
        ssim(*args)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(np.eye(8), np.eye(8), data_range=0)


# --------------------------------------------------------------------------- figures

mpl = pytest.importorskip("matplotlib")


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_qc_import_needs_neither_matplotlib_nor_keras():
    code = ("import sys, n2v_tf.qc, n2v_tf; n2v_tf.ssim; "
            "bad = [m for m in ('matplotlib', 'keras', 'tensorflow') if m in sys.modules]; assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr


def test_plot_history_panels_scale_and_png(tmp_path):
    h = {"loss": [1.0, 0.5, 0.4, 0.35], "val_loss": [1.1, 0.6, 0.62, 0.5], "n2v_mse": [1, 1, 1, 1],
         "learning_rate": [1e-3, 1e-3, 5e-4, 5e-4], "lr": [1e-3, 1e-3, 5e-4, 5e-4]}
    fig = plot_history(SimpleNamespace(history=h), path=tmp_path / "sub" / "h.png")   # keras History-like
    loss_ax, lr_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and lr_ax.get_title() == "learning rate"
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels[:2] == ["training", "validation"] and "n2v_mse" not in labels
    best = next(line for line in loss_ax.get_lines() if "lowest" in line.get_label())
    assert tuple(best.get_xydata()[0]) == (4, 0.5)                   # epoch 4 holds the lowest val_loss
    np.testing.assert_allclose(lr_ax.get_lines()[0].get_ydata(), h["learning_rate"])
    png = (tmp_path / "sub" / "h.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # a plain dict, no learning rate, negative values: one linear panel
    fig = plot_history({"loss": [0.5, -0.1], "val_loss": [0.4, -0.2]})
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "linear"
    # CSBDeep style: one panel per key group
    fig = plot_history(h, keys=[["loss", "val_loss"], ["n2v_mse"]])
    assert len(fig.axes) == 2 and fig.axes[1].get_lines()[0].get_label() == "n2v_mse"
    assert fig.axes[1].get_title() == "n2v_mse" and fig.axes[0].get_ylabel() == "loss"
    # a metric with its validation counterpart gets a readable title and training/validation lines
    h["val_n2v_mse"] = [1.2, 1.1, 1.0, 1.05]
    fig = plot_history(h, keys=[["n2v_mse", "val_n2v_mse"]])
    ax = fig.axes[0]
    assert ax.get_title() == "training and validation n2v mse" and ax.get_ylabel() == "n2v mse"
    assert [line.get_label() for line in ax.get_lines()][:2] == ["training", "validation"]


def test_plot_history_errors():
    with pytest.raises(ValueError, match=r"no 'loss'.*'acc'"):
        plot_history({"acc": [1, 2]})
    with pytest.raises(ValueError, match=r"\['val_mse'\] are not in the history"):
        plot_history({"loss": [1, 2]}, keys=["loss", "val_mse"])
    with pytest.raises(TypeError, match="keras History"):
        plot_history([1, 2, 3])


def test_plot_before_after_shared_contrast_crop_and_metrics(tmp_path):
    rng = np.random.default_rng(5)
    clean = smooth((64, 80))
    noisy = clean + rng.normal(0, 15, clean.shape)
    dimmer = 0.5 * clean
    fig = plot_before_after([noisy, dimmer], titles=["noisy", "dim"], path=tmp_path / "ba.png")
    axes = image_axes(fig)
    lims = {ax.images[0].get_clim() for ax in axes}
    assert len(lims) == 1                                              # shared: the dim image looks dim
    np.testing.assert_allclose(lims.pop(), np.percentile(noisy, [0.5, 99.8]))
    assert (tmp_path / "ba.png").stat().st_size > 1000
    # reference: shown last, sets the contrast; PSNR/SSIM of each image against it in the titles
    crop = (slice(8, 40), slice(16, 48))
    fig = plot_before_after([noisy, clean + 1], reference=clean, crop=crop)
    axes = image_axes(fig)
    assert [ax.images[0].get_array().shape for ax in axes] == [(32, 32)] * 3
    np.testing.assert_array_equal(axes[0].images[0].get_array(), noisy[crop])
    np.testing.assert_allclose(axes[0].images[0].get_clim(), np.percentile(clean[crop], [0.5, 99.8]))
    assert axes[2].get_title() == "reference"
    for ax, img in zip(axes[:2], (noisy, clean + 1)):
        p, s = (float(v) for v in re.search(r"PSNR (\S+) dB, SSIM (\S+)", ax.get_title()).groups())
        assert p == pytest.approx(psnr(clean, img, np.ptp(clean)), abs=0.01)
        assert s == pytest.approx(ssim(clean, img), abs=0.001)
    # 3D: the middle Z slice
    vol = rng.normal(size=(5, 16, 16))
    fig = plot_before_after(vol)
    np.testing.assert_array_equal(image_axes(fig)[0].images[0].get_array(), vol[2])


@pytest.mark.parametrize("kwargs, words", [
    ({"images": [np.zeros((8, 8)), np.zeros((8, 9))]}, r"images\[1\] has shape \(8, 9\)"),
    ({"images": []}, "images is empty"),
    ({"images": [np.zeros(8)]}, "must be 2D"),
    ({"images": [np.zeros((8, 8))], "titles": ["a", "b"]}, "titles must be a list of 1"),
    ({"images": [np.zeros((8, 8))], "reference": np.zeros((4, 4))}, "reference has shape"),
    ({"images": [np.zeros((8, 8))], "crop": (slice(0, 4),)}, "crop must be"),
    ({"images": [np.zeros((8, 8))], "crop": (slice(5, 5), slice(None))}, "leaves nothing"),
])
def test_plot_before_after_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        plot_before_after(**kwargs)


def test_plot_orthogonal_sections(tmp_path):
    rng = np.random.default_rng(6)
    vol = rng.normal(size=(6, 20, 30))
    fig = plot_orthogonal([vol, vol / 2], titles=["noisy", "denoised"], path=tmp_path / "o.png")
    axes = image_axes(fig)
    assert len(axes) == 6
    np.testing.assert_array_equal(axes[0].images[0].get_array(), vol[3])
    np.testing.assert_array_equal(axes[1].images[0].get_array(), vol[:, 10, :])
    np.testing.assert_array_equal(axes[2].images[0].get_array(), vol[:, :, 15].T)
    np.testing.assert_array_equal(axes[5].images[0].get_array(), vol[:, :, 15].T / 2)
    assert len({ax.images[0].get_clim() for ax in axes}) == 1
    assert "denoised" in axes[3].get_ylabel()
    assert (tmp_path / "o.png").is_file()
    with pytest.raises(ValueError, match=r"volumes|images\[0\] must be 3D"):
        plot_orthogonal(np.zeros((8, 8)))


def lag1_from_title(fig):
    return {a: float(v) for a, v in re.findall(r"([ZYX]) ([+-]\d\.\d+)", fig.get_suptitle())}


def test_plot_residual_white_and_correlated():
    rng = np.random.default_rng(7)
    clean = smooth((96, 96))
    white = rng.normal(0, 5, clean.shape)
    fig = plot_residual(clean + white, clean, max_lag=10)
    res_ax, acf_ax = image_axes(fig)
    np.testing.assert_allclose(res_ax.images[0].get_array(), white)
    lo, hi = res_ax.images[0].get_clim()
    assert lo == -hi and hi > 0                                         # symmetric limits
    assert acf_ax.images[0].get_array().shape == (21, 21)
    lag1 = lag1_from_title(fig)
    assert set(lag1) == {"Y", "X"} and max(abs(v) for v in lag1.values()) < 0.05
    assert f"residual std {white.std():.4g}" in fig.get_suptitle()
    # noise correlated along X (a box of 5 pixels): lag-1 correlation 0.8 along X, ~0 along Y
    striped = ndimage.uniform_filter1d(rng.normal(0, 5, clean.shape), 5, axis=1)
    lag1 = lag1_from_title(plot_residual(clean + striped, clean))
    assert lag1["X"] > 0.6 and abs(lag1["Y"]) < 0.1
    # 3D: Z, Y, X lags; a constant residual is said, not an error
    vol = rng.normal(size=(8, 24, 24))
    assert set(lag1_from_title(plot_residual(vol, vol / 2))) == {"Z", "Y", "X"}
    assert "constant (denoised = noisy - 1)" in plot_residual(clean + 1, clean).get_suptitle()


def test_plot_residual_errors():
    with pytest.raises(ValueError, match=r"denoised has shape \(8, 9\), noisy has shape \(8, 8\)"):
        plot_residual(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="max_lag must be an int >= 1, got 0"):
        plot_residual(np.zeros((8, 8)), np.zeros((8, 8)), max_lag=0)
    with pytest.raises(TypeError, match="noisy must be an image array"):
        plot_residual("noisy.tif", np.zeros((8, 8)))


def test_qc_report_rows_and_png(tmp_path):
    rng = np.random.default_rng(8)
    clean = smooth((64, 64))
    noisy = clean + rng.normal(0, 10, clean.shape)
    history = {"loss": [2.0, 1.0], "val_loss": [2.1, 1.2], "learning_rate": [1e-3, 5e-4]}
    full = qc_report(noisy, clean + 1, reference=clean, history=history, path=tmp_path / "qc.png")
    short = qc_report(noisy, clean + 1)
    assert len(image_axes(full)) == 5 and len(image_axes(short)) == 4       # + reference panel
    assert len(full.axes) - len(short.axes) == 1 + 2                        # + reference, loss, learning rate
    assert any("PSNR" in ax.get_title() for ax in full.axes)
    assert not any("PSNR" in ax.get_title() for ax in short.axes)
    from PIL import Image
    with Image.open(tmp_path / "qc.png") as png:
        assert png.size[0] > 600 and png.size[1] > 600
    vol = rng.normal(size=(6, 32, 32))
    assert len(image_axes(qc_report(vol, vol / 2))) == 4
    with pytest.raises(ValueError, match="denoised has shape"):
        qc_report(noisy, noisy[:10])
    with pytest.raises(ValueError, match="no 'loss'"):
        qc_report(noisy, noisy, history={"acc": [1]})


def test_psnr_unchanged():
    x = np.zeros((4, 4))
    y = x.copy()
    y[0, 0] = 1
    assert psnr(x + np.eye(4), y + np.eye(4), data_range=1) == pytest.approx(10 * np.log10(16))
    assert qc.autocorrelation(np.random.default_rng(0).normal(size=(8, 8)))[4, 4] == pytest.approx(1)
