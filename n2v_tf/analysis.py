"""Noise analysis for structN2V: estimate the blind mask from the noise autocorrelation.

structN2V hides, around every blind-spot pixel, all pixels whose noise is correlated
with the noise at that pixel. This module measures that correlation on a noise-only
image and turns it into a ``structN2Vmask`` for :class:`n2v_tf.N2VConfig`:

>>> mask, acf = suggest_struct_mask(dark_frame)            # doctest: +SKIP
>>> config = N2VConfig(X, structN2Vmask=mask.tolist())       # doctest: +SKIP
>>> plot_autocorrelation(acf, mask, path='acf.png')          # doctest: +SKIP

Only NumPy and SciPy are imported; matplotlib is imported by :func:`plot_autocorrelation`.

References
----------
.. [1] Broaddus, Krull, Weigert, Schmidt, Myers, "Removing Structured Noise with
   Self-Supervised Blind-Spot Networks" (structN2V), ISBI 2020.
"""
from __future__ import annotations

import json
import warnings
from typing import Sequence, Union

import numpy as np
from scipy import ndimage

from .qc import autocorrelation

__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_MIN_CORRELATION", "struct_mask", "suggest_struct_mask", "mask_literal",
           "plot_autocorrelation"]

DEFAULT_THRESHOLD = 0.5          # relative to the strongest neighbour correlation: half maximum
DEFAULT_MIN_CORRELATION = 0.1    # absolute: below it the noise counts as pixel-wise independent
_AXES = {2: 'YX', 3: 'ZYX'}


def _is_int(v, low: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low


def struct_mask(axis: str = 'X', span: Union[int, Sequence[int]] = 9, n_dim: int = 2) -> np.ndarray:
    """A structN2V mask made of centred lines of ones along the named axes.

    Parameters
    ----------
    axis : str
        ``'X'``, ``'Y'`` or ``'Z'`` (``'Z'`` only for ``n_dim=3``), or several of them,
        e.g. ``'XY'``, for a cross of lines through the centre (case-insensitive).
    span : int or sequence of int
        Odd line length(s) >= 1, one for all axes or one per letter of ``axis``.
    n_dim : int
        Number of spatial dimensions, 2 (YX) or 3 (ZYX).

    Returns
    -------
    numpy.ndarray
        int 0/1 array with ``n_dim`` odd sides; e.g. ``struct_mask('X', 9)`` has shape
        ``(1, 9)`` and ``struct_mask('Y', 17, 3)`` shape ``(1, 17, 1)``.

    Notes
    -----
    Read-out stripes along X correlate the noise of horizontal neighbours only, so
    the blind spot becomes a horizontal line [1]_. The centre (the active pixel) is 1;
    its value is irrelevant since structN2V hides only the other 1-entries.

    References
    ----------
    .. [1] Broaddus et al., "structN2V", ISBI 2020.
    """
    if n_dim not in (2, 3) or isinstance(n_dim, bool):
        raise ValueError(f"n_dim must be 2 or 3, got {n_dim!r}")
    names = _AXES[n_dim]
    letters = axis.upper() if isinstance(axis, str) else None
    if not letters or any(a not in names for a in letters) or len(set(letters)) != len(letters):
        raise ValueError(f"axis must be one or more distinct letters of {names!r} for n_dim={n_dim}, got {axis!r}")
    spans = [span] * len(letters) if np.ndim(span) == 0 else list(span)
    if len(spans) != len(letters) or not all(_is_int(s, 1) and s % 2 == 1 for s in spans):
        raise ValueError(f"span must be an odd int >= 1 (or one per axis in {letters!r}), got {span!r}")
    shape = [1] * n_dim
    for a, s in zip(letters, spans):
        shape[names.index(a)] = s
    mask = np.zeros(shape, dtype=int)
    centre = tuple(s // 2 for s in shape)
    for a in letters:
        i = names.index(a)
        mask[centre[:i] + (slice(None),) + centre[i + 1:]] = 1
    return mask


def _images(noise, n_dim: int | None) -> tuple[list[np.ndarray], int]:
    """Split ``noise`` into a list of float64 images with ``n_dim`` axes."""
    items = list(noise) if isinstance(noise, (list, tuple)) else [noise]
    if not items:
        raise ValueError("noise must hold at least one image, got an empty sequence")
    items = [np.asarray(x, dtype=np.float64) for x in items]
    if n_dim is None:
        n_dim = {2: 2, 3: 3, 4: 3}.get(items[0].ndim)
    if n_dim not in (2, 3) or isinstance(n_dim, bool):
        raise ValueError(f"n_dim must be 2 or 3 (or None to infer it from noise of 2, 3 or 4 axes), got {n_dim!r} "
                         f"for noise with {items[0].ndim} axes")
    images = []
    for x in items:
        if x.ndim not in (n_dim, n_dim + 1):
            raise ValueError(f"noise must be a {n_dim}D image or a stack of them ({n_dim} or {n_dim + 1} axes), "
                             f"got shape {x.shape}")
        images += [x] if x.ndim == n_dim else list(x)
    for x in images:
        if min(x.shape) < 8:
            raise ValueError(f"noise images must have >= 8 pixels per axis to estimate a correlation, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("noise must be finite, got NaN or Inf values")
        if x.std() == 0:
            raise ValueError(f"noise must not be constant, got an image of shape {x.shape} with the single value "
                             f"{x.flat[0]}")
    return images, n_dim


def _central(a: np.ndarray, radius: Sequence[int]) -> np.ndarray:
    """Odd-sided window of half-widths ``radius`` around ``s // 2`` (the zero lag)."""
    return a[tuple(slice(s // 2 - r, s // 2 + r + 1) for s, r in zip(a.shape, radius))]


def _check_fraction(value, name: str) -> float:
    """``value`` as a float in the open interval (0, 1), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _neighbour_peak(acf: np.ndarray) -> float:
    """Largest autocorrelation at the ``3**n - 1`` lags adjacent to the zero lag (``s // 2`` per axis)."""
    win = _central(acf, [min(1, s // 2, s - 1 - s // 2) for s in acf.shape]).astype(np.float64)
    if win.size == 1:
        return 0.0
    win[tuple(n // 2 for n in win.shape)] = -np.inf
    return float(win.max())


def suggest_struct_mask(noise: np.ndarray | Sequence[np.ndarray], threshold: float = DEFAULT_THRESHOLD,
                        max_span: int | None = None, n_dim: int | None = None,
                        min_correlation: float = DEFAULT_MIN_CORRELATION) -> tuple[np.ndarray, np.ndarray]:
    """Suggest a structN2V mask from the autocorrelation of a noise-only image.

    Parameters
    ----------
    noise : numpy.ndarray or sequence of numpy.ndarray
        Noise without signal, one channel: a dark frame, a background crop, or the
        residual ``noisy - prediction`` of a plain N2V model. A 2D (YX) or 3D (ZYX)
        image, a stack of them (extra first axis), or a list; their autocorrelations
        are averaged (different shapes are cropped to the common central window).
    threshold : float
        Relative level in (0, 1): a lag is hidden where its correlation exceeds
        ``threshold * peak``, ``peak`` being the strongest correlation at the lags
        adjacent to the zero lag (the ``3**n - 1`` neighbours: lag 1 along the axes and
        diagonals); default 0.5, the half maximum.
    max_span : int, optional
        Largest odd mask side; default about half the image side per axis.
    n_dim : int, optional
        2 or 3; needed only to read a 3-axis array as a stack of 2D images (default:
        2 axes are YX, 3 are ZYX, 4 a stack of ZYX).
    min_correlation : float
        Absolute correlation coefficient in (0, 1): when ``peak <= min_correlation``
        the noise counts as pixel-wise independent and the mask is ``[[1]]``
        (``[[[1]]]``); default 0.1.

    Returns
    -------
    mask : numpy.ndarray
        int 0/1 array with ``n_dim`` odd sides, centre 1: ``structN2Vmask=mask.tolist()``.
        ``[[1]]`` (``[[[1]]]``) when no neighbour is correlated by more than
        ``min_correlation``, i.e. plain N2V.
    acf : numpy.ndarray
        The (mean) autocorrelation map of :func:`n2v_tf.qc.autocorrelation`: 1 at the
        zero lag, which sits at index ``s // 2`` per axis.

    Warns
    -----
    UserWarning
        When no neighbour is correlated by more than ``min_correlation`` (plain N2V
        suffices); when the correlation reaches ``max_span`` or half the image (the mask
        is truncated there and the estimate is unreliable); when the image is too small
        for ``min_correlation`` to exceed the white-noise fluctuation ``4 / sqrt(n_pixels)``.

    Notes
    -----
    The mask is the set of lags ``k`` with ``acf[k] > threshold * peak`` that is
    connected (including diagonally) to the zero lag, made point-symmetric and cropped
    to its smallest odd bounding box. For stripes along one axis this is a line: along
    each axis, the lags ``-L..L`` where ``L`` is the last lag of the contiguous run above
    the level starting at lag 1. Diagonal or 2D/3D-blurred noise gives the matching
    blob, which a cross of per-axis lines would miss.

    Relative default threshold 0.5: white noise convolved with a line (box) of ``w``
    pixels has the triangular autocorrelation ``acf(k) = (w - k) / w * s`` for lags
    ``k < w`` (0 beyond), where ``s`` is the stripes' share of the total variance:
    pixel-wise noise added to the stripes only scales all non-zero lags by ``s``. An
    absolute threshold therefore gives a span that depends on the noise mix. Relative to
    the lag-1 value ``(w - 1) / w * s`` the ratio is ``(w - k) / (w - 1)``, independent
    of ``s`` and > 0.5 for ``k < (w + 1) / 2``, so the mask spans ``w`` pixels for odd
    ``w`` (``w + 1`` for even ``w``): the full width at half maximum of the correlated
    component. The lag ``(w + 1) / 2`` of an odd ``w`` sits exactly at the half maximum,
    so estimation noise can add it: expect ``w`` or ``w + 2`` (a 1x9 box gives 1x9 or
    1x11). Lags further out still share a little noise with the centre: each explains
    ``acf(k)**2 <= (threshold * peak)**2`` of its variance, at the default at most a
    quarter of what the nearest neighbour explains; a smaller ``threshold`` hides more
    of them at the cost of more hidden context.

    Absolute ``min_correlation`` 0.1: for white noise of ``N`` pixels the
    autocorrelation at a non-zero lag fluctuates with standard deviation
    ``1 / sqrt(N)``, 0.016 for 64x64 pixels, so 0.1 is more than 6 standard deviations
    away and pure white noise gives plain N2V; a neighbour correlated by less than 0.1
    leaks less than 1% of the centre's noise variance through the blind spot.

    Only positive correlation is used: the residual of a smoothing denoiser is
    anti-correlated at small lags without the raw noise being structured.
    The autocorrelation is circular (FFT), so lags near half the image are unreliable.

    References
    ----------
    .. [1] Broaddus et al., "Removing Structured Noise with Self-Supervised Blind-Spot
       Networks", ISBI 2020.
    """
    threshold = _check_fraction(threshold, 'threshold')
    min_correlation = _check_fraction(min_correlation, 'min_correlation')
    if max_span is not None and not (_is_int(max_span, 1) and max_span % 2 == 1):
        raise ValueError(f"max_span must be None or an odd int >= 1, got {max_span!r}")
    images, n_dim = _images(noise, n_dim)
    acfs = [autocorrelation(x) for x in images]
    if len({a.shape for a in acfs}) > 1:
        common = np.min([[min(s // 2, s - 1 - s // 2) for s in a.shape] for a in acfs], axis=0)
        acfs = [_central(a, common) for a in acfs]
    acf = acfs[0] if len(acfs) == 1 else np.mean(acfs, axis=0)

    n_pix = sum(x.size for x in images)
    if min_correlation < 4 / np.sqrt(n_pix):
        warnings.warn(f"min_correlation={min_correlation} is within 4 standard deviations (4/sqrt(n_pixels) = "
                      f"{4 / np.sqrt(n_pix):.3g}) of white-noise correlation; use more noise pixels or a larger "
                      "min_correlation", stacklevel=2)
    names = _AXES[n_dim]
    peak = _neighbour_peak(acf)
    if peak <= min_correlation:
        warnings.warn(f"the strongest correlation of a neighbouring pixel, {peak:.3g}, does not exceed "
                      f"min_correlation={min_correlation}: the noise looks pixel-wise independent and plain N2V "
                      "(structN2Vmask=None) suffices", stacklevel=2)
        return np.ones((1,) * n_dim, dtype=int), acf
    limit = np.array([max(1, s // 4) for s in acf.shape])                 # mask half-width: span ~ half the image
    if max_span is not None:
        limit = np.minimum(limit, (max_span - 1) // 2)
    search = np.minimum(limit + 1, [(s - 1) // 2 for s in acf.shape])      # one lag more, to detect truncation
    win = _central(acf, search)
    labels, _ = ndimage.label(win > threshold * peak, structure=np.ones((3,) * n_dim))
    centre = tuple(search)
    comp = labels == labels[centre]
    comp |= comp[(slice(None, None, -1),) * n_dim]                         # acf(k) = acf(-k)
    comp[centre] = True
    offsets = np.argwhere(comp) - search                                   # (K, n_dim) lags
    reach = np.abs(offsets).max(axis=0)
    if np.any(reach > limit):
        cut = [f"{names[i]} (lag {limit[i]})" for i in np.flatnonzero(reach > limit)]
        warnings.warn(f"the noise correlation reaches the search limit along {', '.join(cut)} (max_span={max_span} "
                      "or half the image size); the mask is truncated there and the estimate is unreliable: use "
                      "a larger noise image or inspect plot_autocorrelation", stacklevel=2)
        offsets = offsets[np.all(np.abs(offsets) <= limit, axis=1)]
        reach = np.minimum(reach, limit)
    mask = np.zeros(2 * reach + 1, dtype=int)
    mask[tuple((offsets + reach).T)] = 1
    return mask, acf


def _check_mask(mask, name: str = 'mask') -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim not in (2, 3) or any(s % 2 == 0 for s in m.shape) or not np.isin(m, (0, 1)).all():
        raise ValueError(f"{name} must be a 0/1 array with 2 or 3 axes and odd sides, got shape {m.shape} "
                         f"and values {np.unique(m)[:10].tolist()}")
    return m.astype(int)


def mask_literal(mask: np.ndarray) -> str:
    """The ``structN2Vmask=`` literal of a mask, valid Python and JSON.

    Parameters
    ----------
    mask : numpy.ndarray
        0/1 array with 2 or 3 odd sides.

    Returns
    -------
    str
        E.g. ``'[[1, 1, 1, 1, 1, 1, 1, 1, 1]]'`` for ``struct_mask('X', 9)``.
    """
    return json.dumps(_check_mask(mask).tolist())


def plot_autocorrelation(acf: np.ndarray, mask: np.ndarray | None = None, path: str | None = None, max_lag: int = 15,
                         title: str | None = None, threshold: float | None = DEFAULT_THRESHOLD):
    """Figure of the central autocorrelation, the mask footprint and the per-axis profiles.

    Parameters
    ----------
    acf : numpy.ndarray
        2D or 3D autocorrelation with the zero lag at ``s // 2`` (see :func:`suggest_struct_mask`).
    mask : numpy.ndarray, optional
        structN2V mask to outline (pixel by pixel, centred at the zero lag).
    path : str, optional
        Save the figure there (format from the suffix, e.g. ``.png``; 120 dpi).
    max_lag : int
        Largest lag shown per axis.
    title : str, optional
        Figure title.
    threshold : float, optional
        Relative threshold of :func:`suggest_struct_mask` (None: no line). The profile
        panel draws the absolute level it uses, ``threshold * peak``, ``peak`` being the
        strongest correlation at the lags adjacent to the zero lag.

    Returns
    -------
    matplotlib.figure.Figure
        Top row: the YX map (3D: the YX, ZX and ZY planes through the zero lag), colour
        scale clipped at the largest off-centre value so that weak correlation shows.
        Bottom: the correlation along each axis through the zero lag.

    Notes
    -----
    Uses :class:`matplotlib.figure.Figure` directly (no pyplot), so it works headless.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError as err:  # pragma: no cover - matplotlib is installed in the test environment
        raise ImportError("plot_autocorrelation needs matplotlib: pip install matplotlib") from err
    acf = np.asarray(acf, dtype=np.float64)
    if acf.ndim not in (2, 3) or not np.isfinite(acf).all():
        raise ValueError(f"acf must be a finite 2D or 3D array, got shape {acf.shape}")
    if not _is_int(max_lag, 1):
        raise ValueError(f"max_lag must be an int >= 1, got {max_lag!r}")
    if mask is not None:
        mask = _check_mask(mask)
        if mask.ndim != acf.ndim:
            raise ValueError(f"mask must have acf's {acf.ndim} axes, got shape {mask.shape}")
    if threshold is not None:
        threshold = _check_fraction(threshold, 'threshold')
    peak = _neighbour_peak(acf)
    level = None if threshold is None else threshold * peak
    n_dim, names = acf.ndim, _AXES[acf.ndim]
    radius = [min(max_lag, s // 2, s - 1 - s // 2) for s in acf.shape]
    win = _central(acf, radius)
    c = tuple(radius)
    pairs = ('YX',) if n_dim == 2 else ('YX', 'ZX', 'ZY')                  # (row axis, column axis) per panel
    planes = [(names.index(r), names.index(k)) for r, k in pairs]
    centre_free = win.copy()
    centre_free[c] = 0
    vmax = max(float(np.abs(centre_free).max()), 0.05 if level is None else abs(level), 1e-3)

    fig = Figure(figsize=(max(6.0, 4.0 * len(planes)), 7.5), layout='constrained')
    grid = fig.add_gridspec(2, len(planes), height_ratios=(3, 2))
    maps = []
    for j, (ra, ca) in enumerate(planes):
        ax = fig.add_subplot(grid[0, j])
        sl = tuple(slice(None) if i in (ra, ca) else c[i] for i in range(n_dim))
        rr, rc = radius[ra], radius[ca]
        im = ax.imshow(win[sl], cmap='RdBu_r', vmin=-vmax, vmax=vmax, interpolation='nearest',
                       extent=(-rc - .5, rc + .5, rr + .5, -rr - .5))
        if mask is not None:
            msl = tuple(slice(None) if i in (ra, ca) else mask.shape[i] // 2 for i in range(n_dim))
            for dy, dx in np.argwhere(mask[msl] == 1) - [mask.shape[ra] // 2, mask.shape[ca] // 2]:
                ax.add_patch(Rectangle((dx - .5, dy - .5), 1, 1, fill=False, edgecolor='black', linewidth=1.2))
        ax.set_xlabel(f"lag {names[ca]}")
        ax.set_ylabel(f"lag {names[ra]}")
        ax.set_title(f"{names[ra]}{names[ca]} plane" + (" (mask outlined)" if mask is not None else ""))
        maps.append(ax)
    fig.colorbar(im, ax=maps, shrink=0.8, label="autocorrelation (colours clipped)")
    ax = fig.add_subplot(grid[1, :])
    for i, a in enumerate(names):
        profile = win[tuple(slice(None) if k == i else c[k] for k in range(n_dim))]
        ax.plot(np.arange(-radius[i], radius[i] + 1), profile, marker='o', ms=3, label=f"along {a}")
    if level is not None:
        ax.axhline(level, color='grey', linestyle='--',
                   label=f"threshold {threshold:g} x peak {peak:.2g} = {level:.2g}")
    ax.axhline(0, color='black', linewidth=0.5)
    ax.set_xlabel("lag (pixels)")
    ax.set_ylabel("autocorrelation")
    ax.legend(loc='upper right')
    if title:
        fig.suptitle(title)
    if path is not None:
        from .io import savefig_atomic
        savefig_atomic(fig, path, dpi=120)
    return fig
