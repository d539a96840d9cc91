"""Quality measures for denoising: PSNR and the noise autocorrelation (NumPy only)."""
from __future__ import annotations

import numpy as np

__all__ = ["psnr", "autocorrelation"]


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
