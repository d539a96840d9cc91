"""Quality control for denoising: PSNR, SSIM, the noise autocorrelation, and QC figures.

The measures need NumPy and SciPy only. The plotting functions (:func:`plot_history`,
:func:`plot_before_after`, :func:`plot_orthogonal`, :func:`plot_residual`, :func:`qc_report`,
:func:`plot_noise_model`) import matplotlib when called (``pip install "n2v_tf[plot]"``) and draw on a
:class:`matplotlib.figure.Figure` directly, without pyplot, so they work headless (CI, servers)
and leave no open figures behind; in a notebook, a returned figure shows when it is the last
expression of a cell.

>>> fig = qc_report(noisy, model.predict(noisy, 'YX'), history=history, path='qc.png')  # doctest: +SKIP

What to look for: the denoised image keeps the structures of the noisy one at the same contrast;
the residual ``noisy - denoised`` looks like noise without structure (no edges of objects, which
would mean the network removed signal); its autocorrelation is a single peak at zero lag (a good
denoiser of pixel-wise independent noise leaves white residual: the lag-1 correlations are ~0);
training and validation losses decrease and level off together.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "autocorrelation",
    "plot_before_after",
    "plot_history",
    "plot_noise_model",
    "plot_orthogonal",
    "plot_residual",
    "psnr",
    "qc_report",
    "ssim",
]

#: Percentiles of the displayed contrast range (low, high) of the image panels.
CONTRAST_PERCENTILES = (0.5, 99.8)
#: Resolution of the saved PNG files.
SAVE_DPI = 100
#: :func:`plot_noise_model` draws the empirical histograms from at most this many (signal, observation) pairs.
NOISE_MODEL_PAIRS = 2_000_000
_SSIM_SIGMA, _SSIM_TRUNCATE, _SSIM_K1, _SSIM_K2 = 1.5, 3.5, 0.01, 0.03


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``image`` against a clean ``reference``, in dB.

    Parameters
    ----------
    reference : numpy.ndarray
        Clean image.
    image : numpy.ndarray
        Noisy or denoised image of the same shape.
    data_range : float, optional
        Peak value range; default ``reference.max() - reference.min()``.

    Returns
    -------
    float
        ``10 * log10(data_range**2 / mean((reference - image)**2))``.
    """
    reference = np.asarray(reference, np.float64)
    image = np.asarray(image, np.float64)
    if reference.shape != image.shape:
        raise ValueError(f"psnr: reference shape {reference.shape} differs from image shape {image.shape}")
    if data_range is None:
        data_range = float(reference.max() - reference.min())
    mse = float(np.mean((reference - image) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity index (SSIM) of ``image`` against a clean ``reference``, 2D or 3D.

    Parameters
    ----------
    reference : numpy.ndarray
        Clean image, 2D (YX) or 3D (ZYX).
    image : numpy.ndarray
        Noisy or denoised image of the same shape.
    data_range : float, optional
        Dynamic range of the data (``L`` below); default ``reference.max() - reference.min()``, as
        for :func:`psnr`. Give it explicitly to compare numbers between images.

    Returns
    -------
    float
        The mean SSIM, 1 for identical images, lower (down to -1) the less similar.

    Raises
    ------
    ValueError
        Shapes differ, not 2D or 3D, non-finite values, or ``data_range`` not positive (e.g. a
        constant reference without ``data_range``).

    Notes
    -----
    Wang et al. (2004) with a Gaussian window (sigma 1.5, truncated at 3.5 sigma: 11 taps):

    .. math:: \\mathrm{SSIM} = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
              {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)},\\quad
              C_1 = (0.01 L)^2,\\ C_2 = (0.03 L)^2,

    with local means, variances and covariance from the Gaussian window (population, not sample,
    covariance), averaged over the image without a border of 5 pixels (the window radius) along
    every axis longer than 10 pixels; shorter axes (e.g. a few Z slices) are averaged whole, with
    mirrored borders. This equals ``skimage.metrics.structural_similarity(reference, image,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)`` for
    images of at least 11 pixels along every axis.

    References
    ----------
    .. [1] Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
       structural similarity", IEEE Trans. Image Process. 13(4), 600-612, 2004.
    """
    x = _as_image(reference, "reference", "ssim")
    y = _as_image(image, "image", "ssim")
    if x.shape != y.shape:
        raise ValueError(f"ssim: reference shape {x.shape} differs from image shape {y.shape}")
    if data_range is None:
        data_range = float(x.max() - x.min())
        if data_range <= 0:
            raise ValueError("ssim: reference is constant, so data_range cannot be taken from it; "
                             "pass data_range (e.g. the value range of the dtype)")
    data_range = float(data_range)
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"ssim: data_range must be a positive number, got {data_range!r}")

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    inner = tuple(slice(pad, n - pad) if n > 2 * pad else slice(None) for n in s.shape)
    return float(s[inner].mean())


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """n-dimensional autocorrelation, normalised to 1 at zero lag, zero lag in the centre.

    Parameters
    ----------
    x : numpy.ndarray
        A noise-only image (dark frame, background crop, or ``noisy - denoised`` residual).

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``; ``fftshift``-ed, so the zero lag is at ``tuple(s // 2 for s in x.shape)``.

    Notes
    -----
    Computed with the Wiener-Khinchin theorem (inverse FFT of the power spectrum) after removing the
    mean and scaling to unit variance, i.e. circular correlation. Pixel-wise independent noise gives
    a single peak; correlated noise (read-out stripes) extends along the correlated axes, which is
    what a structN2V mask must cover (Broaddus et al., ISBI 2020).
    """
    x = np.asarray(x, np.float64)
    std = x.std()
    if std == 0:
        raise ValueError("autocorrelation: x is constant, its autocorrelation is undefined")
    x = (x - x.mean()) / std
    power = np.abs(np.fft.fftn(x)) ** 2
    ac = np.fft.ifftn(power).real
    ac /= ac.flat[0]
    return np.fft.fftshift(ac)


# --------------------------------------------------------------------------- input checks

def _as_image(x: Any, name: str, func: str, ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """``x`` as a finite float64 array with one of ``ndims`` dimensions, or a ValueError naming ``name``."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{func}: {name} must be an image array, got {type(x).__name__} {x!r}")
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{func}: {name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim not in ndims:
        want = " or ".join(f"{d}D ({'YX' if d == 2 else 'ZYX'})" for d in ndims)
        raise ValueError(f"{func}: {name} must be {want}, got {a.ndim} dimension(s), shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{func}: {name} contains {int((~np.isfinite(a)).sum())} NaN or infinite value(s); "
                         "replace them first")
    return a


def _same_shape(arrays: Sequence[np.ndarray], names: Sequence[str], func: str) -> None:
    for a, n in zip(arrays[1:], names[1:]):
        if a.shape != arrays[0].shape:
            raise ValueError(f"{func}: {n} has shape {a.shape}, {names[0]} has shape {arrays[0].shape}; "
                             "they must have the same shape")


def _image_list(images: Any, func: str, ndims: Sequence[int] = (2, 3)) -> list[np.ndarray]:
    """A single array or a sequence of arrays as a non-empty list of same-shape float64 images."""
    if isinstance(images, np.ndarray):
        images = [images]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(f"{func}: images must be an array or a list of arrays, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{func}: images is empty; give at least one image")
    out = [_as_image(im, f"images[{i}]", func, ndims) for i, im in enumerate(images)]
    _same_shape(out, [f"images[{i}]" for i in range(len(out))], func)
    return out


def _titles(titles: Sequence[str] | None, n: int, default: Sequence[str], func: str) -> list[str]:
    if titles is None:
        return list(default)
    if isinstance(titles, str) or len(titles) != n:
        raise ValueError(f"{func}: titles must be a list of {n} string(s), one per image, got {titles!r}")
    return [str(t) for t in titles]


def _figure_class(func: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is installed in the test environment
        raise ImportError(f'{func} needs matplotlib: pip install "n2v_tf[plot]" (or pip install matplotlib)'
                          ) from err
    return Figure


def _save(fig, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from .io import savefig_atomic
        savefig_atomic(fig, path, dpi=SAVE_DPI, bbox_inches="tight")


def _limits(a: np.ndarray) -> tuple[float, float]:
    """Contrast limits: the percentiles :data:`CONTRAST_PERCENTILES` of ``a`` (a non-empty range)."""
    lo, hi = (float(v) for v in np.percentile(a, CONTRAST_PERCENTILES))
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _middle_z(a: np.ndarray) -> np.ndarray:
    return a[a.shape[0] // 2] if a.ndim == 3 else a


# --------------------------------------------------------------------------- training history

def _history_dict(history: Any) -> dict[str, np.ndarray]:
    """The per-epoch values of a keras History, a dict of lists, or a pandas DataFrame."""
    h = getattr(history, "history", history)
    if hasattr(h, "to_dict") and not isinstance(h, Mapping):     # pandas DataFrame (e.g. a CSVLogger file)
        h = h.to_dict("list")
    if not isinstance(h, Mapping):
        raise TypeError("plot_history: history must be a keras History (model.train/model.fit), its .history "
                        f"dict of lists, or a pandas DataFrame, got {type(history).__name__}")
    out = {}
    for k, v in h.items():
        try:
            out[str(k)] = np.asarray(v, np.float64).reshape(-1)
        except (TypeError, ValueError):
            continue            # non-numeric columns (e.g. 'epoch' strings) are not plotted
    return out


def _history_groups(h: dict[str, np.ndarray], keys: Any) -> tuple[list[list[str]], str | None]:
    """Panels of curves (lists of keys) and the learning-rate key (None: no learning-rate panel)."""
    if keys is None:
        lr = next((k for k in ("learning_rate", "lr") if k in h), None)
        loss = [k for k in ("loss", "val_loss") if k in h] or sorted(k for k in h if k.endswith("loss"))
        if not loss:
            raise ValueError(f"plot_history: history has no 'loss' or 'val_loss' values; it has {sorted(h)}. "
                             "Pass keys=[...] to choose what to plot")
        return [loss], lr
    if isinstance(keys, str):
        keys = [keys]
    groups = [[k] if isinstance(k, str) else list(k) for k in keys]
    if not groups or any(not g or not all(isinstance(k, str) for k in g) for g in groups):
        raise ValueError(f"plot_history: keys must be a list of key names, or a list of lists (one panel each, "
                         f"as CSBDeep's plot_history), got {keys!r}")
    missing = [k for g in groups for k in g if k not in h]
    if missing:
        raise ValueError(f"plot_history: keys {missing} are not in the history, which has {sorted(h)}")
    return groups, None


def _panel_labels(keys: list[str]) -> tuple[str, str, dict[str, str]]:
    """Title, y label and line labels of one history panel; a ``[name, val_name]`` pair is 'training and
    validation name'."""
    bases = {k.removeprefix("val_") for k in keys}
    if len(keys) != 2 or len(bases) != 1:
        return ", ".join(keys), ", ".join(keys), {k: k for k in keys}
    what = bases.pop().replace("_", " ")
    lines = {k: "validation" if k.startswith("val_") else "training" for k in keys}
    return f"training and validation {what}", what, lines


def _draw_history(container, h: dict[str, np.ndarray], groups: list[list[str]], lr: str | None) -> list:
    from matplotlib.ticker import MaxNLocator
    panels = groups + ([[lr]] if lr is not None else [])
    axes = container.subplots(1, len(panels), squeeze=False)[0]
    for ax, keys in zip(axes, panels):
        positive = True
        title, ylabel, line_labels = _panel_labels(keys)
        for k in keys:
            v = h[k]
            epochs = np.arange(1, len(v) + 1)
            ax.plot(epochs, v, marker="o" if len(v) < 30 else None, markersize=3, label=line_labels[k])
            finite = v[np.isfinite(v)]
            positive &= bool(finite.size) and bool((finite > 0).all())
            if k.startswith("val_") and finite.size:
                best = int(np.nanargmin(np.where(np.isfinite(v), v, np.inf)))
                ax.plot(best + 1, v[best], "*", markersize=10, color="black",
                        label=f"lowest {k}: {v[best]:.4g} (epoch {best + 1})")
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        is_lr = keys == [lr] and lr is not None
        ax.set_ylabel("learning rate" if is_lr else ylabel)
        ax.set_title("learning rate" if is_lr else title)
        if not is_lr:
            ax.legend(fontsize="small")
        ax.grid(True, alpha=0.3)
    return list(axes)


def plot_history(history: Any, path: str | Path | None = None,
                 keys: Sequence[str] | Sequence[Sequence[str]] | None = None):
    """Training and validation loss per epoch, and the learning rate.

    Parameters
    ----------
    history : keras.callbacks.History or dict of lists or pandas.DataFrame
        What ``N2V.train`` / ``keras.Model.fit`` return, its ``.history`` dict (``{'loss': [...],
        'val_loss': [...], 'learning_rate': [...]}``), or a DataFrame (e.g. a ``CSVLogger`` file read
        with pandas).
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).
    keys : list of str or list of list of str, optional
        Curves to plot: key names for one panel, or, as CSBDeep's ``plot_history(history, ['loss',
        'val_loss'], ['n2v_mse', 'val_n2v_mse'])``, one list per panel. Default: ``loss`` and
        ``val_loss`` in one panel and, if recorded, the learning rate (``learning_rate`` or ``lr``)
        in a second one.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per key group; logarithmic y axis where all values are positive; the lowest
        validation value is starred (``weights_best.h5`` is saved at that epoch).

    Raises
    ------
    TypeError
        ``history`` is not one of the types above.
    ValueError
        No loss in the history, or ``keys`` names values that are not in it.

    Notes
    -----
    The N2V losses are computed on the masked pixels only and stay high (about the noise variance)
    even for a good model; what matters is that the validation loss decreases and levels off with
    the training loss. A validation loss that rises while the training loss falls is overfitting.
    """
    Figure = _figure_class("plot_history")
    h = _history_dict(history)
    groups, lr = _history_groups(h, keys)
    n = len(groups) + (lr is not None)
    fig = Figure(figsize=(5.0 * n, 3.8), layout="constrained")
    _draw_history(fig, h, groups, lr)
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------- before / after

def _check_crop(crop: Any, shape: tuple[int, ...], func: str) -> tuple[slice, ...]:
    """``crop`` as a tuple of slices over all axes of ``shape`` (2 slices for a 3D image: YX only)."""
    if crop is None:
        return tuple(slice(None) for _ in shape)
    if isinstance(crop, slice):
        crop = (crop,)
    crop = tuple(crop)
    if not all(isinstance(s, slice) for s in crop) or len(crop) not in {len(shape), 2}:
        raise ValueError(f"{func}: crop must be None or a tuple of slices, one per axis of the images "
                         f"(shape {shape}; 2 slices crop YX of a 3D image), got {crop!r}")
    if len(crop) < len(shape):
        crop = (slice(None),) * (len(shape) - len(crop)) + crop
    sizes = [len(range(*s.indices(n))) for s, n in zip(crop, shape)]
    if min(sizes) == 0:
        raise ValueError(f"{func}: crop {crop!r} leaves nothing of images of shape {shape}")
    return crop


def _draw_images(container, planes: Sequence[np.ndarray], titles: Sequence[str], lo: float, hi: float,
                 label: str = "intensity") -> list:
    axes = container.subplots(1, len(planes), squeeze=False)[0]
    im = None
    for ax, p, t in zip(axes, planes, titles):
        im = ax.imshow(p, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(t, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    container.colorbar(im, ax=list(axes), shrink=0.8, label=label)
    return list(axes)


def _before_after(container, images: list[np.ndarray], titles: list[str], reference: np.ndarray | None,
                  crop: tuple[slice, ...]) -> list:
    """Draw the images (and the reference) with shared contrast; metrics in the titles."""
    if reference is not None:
        data_range = float(reference.max() - reference.min())
        scores = [f"PSNR {psnr(reference, im, data_range):.2f} dB, SSIM {ssim(reference, im, data_range):.3f}"
                  if data_range > 0 else "(constant reference: no PSNR/SSIM)" for im in images]
        titles = [f"{t}\n{s}" for t, s in zip(titles, scores)] + ["reference"]
        images = images + [reference]
    planes = [_middle_z(im[crop]) for im in images]
    lo, hi = _limits(planes[-1] if reference is not None else planes[0])
    return _draw_images(container, planes, titles, lo, hi)


def plot_before_after(images: np.ndarray | Sequence[np.ndarray], titles: Sequence[str] | None = None,
                      reference: np.ndarray | None = None, crop: Sequence[slice] | None = None,
                      path: str | Path | None = None):
    """Images side by side with the same contrast limits, e.g. noisy input and denoised output.

    Parameters
    ----------
    images : numpy.ndarray or list of numpy.ndarray
        Images of the same shape, 2D (YX) or 3D (ZYX; the middle Z slice is shown). A single array
        is one image.
    titles : list of str, optional
        One per image; default ``'image 1'``, ``'image 2'``, ...
    reference : numpy.ndarray, optional
        The clean image, if known (synthetic data, or a high-SNR acquisition of the same field): shown
        last, and the PSNR and SSIM of every image against it (computed on the whole images, not only
        the crop, with ``data_range`` the value range of ``reference``) go in the titles.
    crop : tuple of slice, optional
        The region to show, one slice per axis (for 3D images also two slices, which crop Y and X),
        e.g. ``(slice(0, 128), slice(64, 192))``.
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).

    Returns
    -------
    matplotlib.figure.Figure
        One row of grey-scale panels with one colour bar. All panels use the contrast limits of the
        first image (of ``reference`` if given): its 0.5 and 99.8 percentiles in the shown region,
        so that brightness changes are visible and not hidden by per-panel auto-contrast.

    Raises
    ------
    ValueError
        Empty list, images or reference of different shapes or not 2D/3D, non-finite values,
        ``titles`` not one per image, or a bad ``crop``.
    """
    Figure = _figure_class("plot_before_after")
    imgs = _image_list(images, "plot_before_after")
    titles = _titles(titles, len(imgs), [f"image {i + 1}" for i in range(len(imgs))], "plot_before_after")
    ref = None
    if reference is not None:
        ref = _as_image(reference, "reference", "plot_before_after")
        _same_shape([imgs[0], ref], ["images[0]", "reference"], "plot_before_after")
    crop = _check_crop(crop, imgs[0].shape, "plot_before_after")
    n = len(imgs) + (ref is not None)
    fig = Figure(figsize=(3.6 * n + 1.0, 4.2), layout="constrained")
    _before_after(fig, imgs, titles, ref, crop)
    _save(fig, path)
    return fig


def plot_orthogonal(volumes: np.ndarray | Sequence[np.ndarray], titles: Sequence[str] | None = None,
                    path: str | Path | None = None):
    """Orthogonal central sections (XY, XZ, YZ) of 3D stacks, one row per stack.

    Parameters
    ----------
    volumes : numpy.ndarray or list of numpy.ndarray
        3D stacks (ZYX) of the same shape, e.g. ``[noisy, denoised]``. A single array is one stack.
    titles : list of str, optional
        One per stack (the row labels); default ``'volume 1'``, ``'volume 2'``, ...
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).

    Returns
    -------
    matplotlib.figure.Figure
        Columns: the XY plane at the middle Z, the XZ plane at the middle Y (Z down), the YZ plane at
        the middle X (Z across). All panels share the contrast limits of the first stack (its 0.5
        and 99.8 percentiles), so the rows compare directly. Voxels are drawn square: give
        anisotropic stacks the Z sampling in mind.

    Raises
    ------
    ValueError
        Empty list, a stack that is not 3D, different shapes, non-finite values, ``titles`` not one
        per stack.
    """
    Figure = _figure_class("plot_orthogonal")
    vols = _image_list(volumes, "plot_orthogonal", ndims=(3,))
    titles = _titles(titles, len(vols), [f"volume {i + 1}" for i in range(len(vols))], "plot_orthogonal")
    nz, ny, nx = vols[0].shape
    lo, hi = _limits(vols[0])
    fig = Figure(figsize=(3.2 * (2 + nz / nx) + 1.5, 3.2 * len(vols) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(vols), 3, width_ratios=(nx, nx, nz))
    im = None
    all_axes = []
    for r, (v, t) in enumerate(zip(vols, titles)):
        sections = ((v[nz // 2], f"XY (z={nz // 2})", "X", "Y"), (v[:, ny // 2, :], f"XZ (y={ny // 2})", "X", "Z"),
                    (v[:, :, nx // 2].T, f"YZ (x={nx // 2})", "Z", "Y"))
        for c, (plane, name, xlab, ylab) in enumerate(sections):
            ax = fig.add_subplot(grid[r, c])
            im = ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(name if r == 0 else "", fontsize="medium")
            ax.set_xlabel(xlab, fontsize="small")
            ax.set_ylabel(f"{t}\n{ylab}" if c == 0 else ylab, fontsize="small" if c else "medium")
            ax.set_xticks([])
            ax.set_yticks([])
            all_axes.append(ax)
    fig.colorbar(im, ax=all_axes, shrink=0.8, label="intensity")
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------- residual

def _lag1(acf: np.ndarray) -> dict[str, float]:
    """Correlation at lag 1 along each axis (mean of the +1 and -1 lags) of a centred autocorrelation."""
    names = "YX" if acf.ndim == 2 else "ZYX"
    c = tuple(s // 2 for s in acf.shape)
    out = {}
    for i, a in enumerate(names):
        vals = []
        for d in (-1, 1):
            idx = list(c)
            idx[i] += d
            if 0 <= idx[i] < acf.shape[i]:
                vals.append(acf[tuple(idx)])
        out[a] = float(np.mean(vals)) if vals else float("nan")
    return out


def _draw_residual(container, noisy: np.ndarray, denoised: np.ndarray, max_lag: int) -> list:
    residual = noisy - denoised
    std = float(residual.std())
    ax_res, ax_acf = container.subplots(1, 2)
    plane = _middle_z(residual)
    vmax = float(np.percentile(np.abs(plane), 99.5)) or float(np.abs(plane).max()) or 1.0
    im = ax_res.imshow(plane, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax_res.set_title("residual noisy - denoised" + (" (middle Z)" if residual.ndim == 3 else ""), fontsize="medium")
    ax_res.set_xticks([])
    ax_res.set_yticks([])
    container.colorbar(im, ax=ax_res, shrink=0.8)
    scale = max(float(np.abs(noisy).max()), float(np.abs(denoised).max()))
    if std <= 1e-6 * scale:             # constant up to float32 rounding: the autocorrelation is noise of rounding
        ax_acf.text(0.5, 0.5, "the residual is constant:\nno autocorrelation", ha="center", va="center",
                    transform=ax_acf.transAxes)
        ax_acf.set_axis_off()
        summary = f"residual std {std:.2g}: constant (denoised = noisy - {float(residual.mean()):.4g})"
    else:
        acf = autocorrelation(residual)
        lag1 = _lag1(acf)
        c = tuple(s // 2 for s in acf.shape)
        acf2 = acf[c[0]] if acf.ndim == 3 else acf
        cy, cx = c[-2:]
        ry, rx = (min(max_lag, cy, acf2.shape[0] - 1 - cy), min(max_lag, cx, acf2.shape[1] - 1 - cx))
        win = acf2[cy - ry:cy + ry + 1, cx - rx:cx + rx + 1]
        off = win.copy()
        off[ry, rx] = 0
        lim = max(float(np.abs(off).max()), 0.05)
        im = ax_acf.imshow(win, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                           extent=(-rx - .5, rx + .5, ry + .5, -ry - .5))
        ax_acf.set_xlabel("lag X")
        ax_acf.set_ylabel("lag Y")
        ax_acf.set_title("autocorrelation of the residual" + (" (lag Z = 0)" if acf.ndim == 3 else "")
                         + "\n(zero lag = 1, colours clipped)", fontsize="medium")
        container.colorbar(im, ax=ax_acf, shrink=0.8)
        summary = (f"residual std {std:.4g}; lag-1 correlation "
                   + ", ".join(f"{a} {v:+.3f}" for a, v in lag1.items())
                   + " (white residual: ~0)")
    container.suptitle(summary, fontsize="medium")
    return [ax_res, ax_acf]


def _check_pair(noisy: Any, denoised: Any, func: str) -> tuple[np.ndarray, np.ndarray]:
    n = _as_image(noisy, "noisy", func)
    d = _as_image(denoised, "denoised", func)
    _same_shape([n, d], ["noisy", "denoised"], func)
    return n, d


def _check_max_lag(max_lag: Any, func: str) -> int:
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 1:
        raise ValueError(f"{func}: max_lag must be an int >= 1, got {max_lag!r}")
    return int(max_lag)


def plot_residual(noisy: np.ndarray, denoised: np.ndarray, path: str | Path | None = None, max_lag: int = 15):
    """The residual ``noisy - denoised`` and its autocorrelation near zero lag.

    Parameters
    ----------
    noisy : numpy.ndarray
        The raw noisy image, 2D (YX) or 3D (ZYX).
    denoised : numpy.ndarray
        The prediction of the same shape.
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).
    max_lag : int
        Largest lag shown along Y and X in the autocorrelation panel.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the residual (3D: the middle Z slice), diverging colours with symmetric limits (99.5th
        percentile of its magnitude). Right: the autocorrelation of the whole residual (see
        :func:`autocorrelation`), lags ``-max_lag..max_lag`` along Y and X (3D: at Z lag 0), colours
        clipped at the largest off-centre value. Title: the residual standard deviation and the
        correlation at lag 1 along each axis.

    Raises
    ------
    ValueError
        Shapes differ, not 2D/3D, non-finite values, or ``max_lag`` < 1.

    Notes
    -----
    N2V removes pixel-wise independent noise, so a good prediction leaves a residual that is that
    noise: no visible structure, and an autocorrelation with a single peak at zero lag (lag-1
    correlations ~0). Object outlines in the residual mean the network removed signal (over-
    smoothing); stripes or a correlation extending along an axis mean correlated noise, which N2V
    cannot remove and structN2V can (see :func:`n2v_tf.suggest_struct_mask` on the residual).
    """
    Figure = _figure_class("plot_residual")
    n, d = _check_pair(noisy, denoised, "plot_residual")
    max_lag = _check_max_lag(max_lag, "plot_residual")
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    _draw_residual(fig, n, d, max_lag)
    _save(fig, path)
    return fig


def qc_report(noisy: np.ndarray, denoised: np.ndarray, reference: np.ndarray | None = None, history: Any = None,
              path: str | Path | None = None):
    """One quality-control figure: before/after, residual with its autocorrelation, and the losses.

    Parameters
    ----------
    noisy : numpy.ndarray
        The raw noisy image, 2D (YX) or 3D (ZYX; the middle Z slice is shown).
    denoised : numpy.ndarray
        Its prediction, same shape.
    reference : numpy.ndarray, optional
        The clean image, if known: shown, with the PSNR and SSIM of ``noisy`` and ``denoised``.
    history : keras.callbacks.History or dict of lists, optional
        Training history: adds the loss (and learning-rate) panels of :func:`plot_history`.
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).

    Returns
    -------
    matplotlib.figure.Figure
        Rows: noisy / denoised (/ reference) with shared contrast (:func:`plot_before_after`); the
        residual and its autocorrelation (:func:`plot_residual`); the training curves (with
        ``history``).

    Raises
    ------
    ValueError
        Shapes differ, not 2D/3D, non-finite values, or a history without loss values.
    """
    Figure = _figure_class("qc_report")
    n, d = _check_pair(noisy, denoised, "qc_report")
    ref = None
    if reference is not None:
        ref = _as_image(reference, "reference", "qc_report")
        _same_shape([n, ref], ["noisy", "reference"], "qc_report")
    rows = [1.0, 1.0]
    if history is not None:
        h = _history_dict(history)
        groups, lr = _history_groups(h, None)
        rows.append(0.8)
    fig = Figure(figsize=(12.0, 4.4 * sum(rows)), layout="constrained")
    subs = fig.subfigures(len(rows), 1, height_ratios=rows)
    titles = ["noisy input", "denoised"]
    _before_after(subs[0], [n, d], titles, ref, _check_crop(None, n.shape, "qc_report"))
    if n.ndim == 3:
        subs[0].suptitle(f"middle Z slice ({n.shape[0] // 2} of {n.shape[0]})", fontsize="medium")
    _draw_residual(subs[1], n, d, 15)
    if history is not None:
        _draw_history(subs[2], h, groups, lr)
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------- PN2V noise models

def plot_noise_model(noise_model: Any, signal: Any, observation: Any, path: str | Path | None = None,
                     title: str | None = None):
    """A PN2V noise model ``p(x|s)`` against the (signal, observation) pairs it was fitted on.

    Parameters
    ----------
    noise_model : n2v_tf.GaussianMixtureNoiseModel or n2v_tf.HistogramNoiseModel
        The noise model.
    signal, observation : array_like
        Pairs of the same size (any shapes; flattened): the mean and the frames of a calibration
        stack, or the N2V prediction and the noisy images of a bootstrapped model. At most
        :data:`NOISE_MODEL_PAIRS` pairs, drawn at random with a fixed seed, are used.
    path : str or pathlib.Path, optional
        Save the figure there as PNG (100 dpi; the folder is created).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure of the noise model's ``plot`` method: left ``log10 p(x|s)`` over signal and
        observation, right the slices ``p(x|s)`` at 10, 30, 50, 70 and 90 % of the signal range
        with the histograms of the observations whose signal lies near each slice (dashed).

    Raises
    ------
    ValueError
        ``signal`` and ``observation`` differ in size, are empty or hold non-finite values.

    Notes
    -----
    What to look for: each dashed histogram should follow its slice. A model that is too broad or
    shifted (in particular at low or high signals) describes the noise poorly there; for a
    bootstrapped model a slightly broader noise than the truth is expected, as the N2V prediction
    is smoother than the true signal (Prakash et al., ISBI 2020).
    """
    _figure_class("plot_noise_model")
    if not callable(getattr(noise_model, "plot", None)):
        raise TypeError("plot_noise_model: noise_model must be an n2v_tf GaussianMixtureNoiseModel or "
                        f"HistogramNoiseModel, got {type(noise_model).__name__}")
    signal, observation = np.ravel(signal), np.ravel(observation)
    if signal.size != observation.size:
        raise ValueError(f"plot_noise_model: signal and observation must be pairs of the same size, got {signal.size} "
                         f"and {observation.size} values")
    if signal.size > NOISE_MODEL_PAIRS:
        idx = np.random.default_rng(0).integers(0, signal.size, NOISE_MODEL_PAIRS)
        signal, observation = signal[idx], observation[idx]
    fig = noise_model.plot(signal=signal, observation=observation, title=title)
    _save(fig, path)
    return fig
