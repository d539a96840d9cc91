"""Noise models p(x|s) for Probabilistic Noise2Void (PN2V).

A noise model gives the probability density of observing the noisy value ``x`` at a pixel whose
true signal is ``s``. PN2V combines it with the network's samples of the signal prior [1]_; it is
fitted on (signal, observation) pairs, which come from

* a calibration stack: many noisy frames of a static sample, whose mean is the signal
  (:meth:`HistogramNoiseModel.from_calibration`, :meth:`GaussianMixtureNoiseModel.from_calibration`);
* or bootstrapping [2]_: the prediction of a plain N2V model is the pseudo ground-truth signal and
  the noisy input the observation (``GaussianMixtureNoiseModel.fit(n2v_prediction, noisy)``).

>>> gmm = GaussianMixtureNoiseModel.fit(n2v_prediction, noisy)          # doctest: +SKIP
>>> gmm.coverage(noisy_test_images)                                     # doctest: +SKIP
0.998
>>> gmm.save('noise_model.npz'); gmm.plot('noise_model.png')            # doctest: +SKIP

:meth:`log_likelihood` is written with ``keras.ops``: it broadcasts, is differentiable in the
signal and runs inside a compiled training step, and it also accepts NumPy arrays. The rest
(fitting data checks, moments, plots, files) is NumPy; matplotlib is imported by ``plot`` only.

Both models are fitted on a signal range and say nothing reliable outside it; ``coverage(data)``
returns the fraction of ``data`` inside that range (check it for the images you will denoise).

References
----------
.. [1] Krull, Vicar, Prakash, Lalit, Jug, "Probabilistic Noise2Void: Unsupervised Content-Aware
   Denoising", Frontiers in Computer Science 2, 2020.
.. [2] Prakash, Lalit, Tomancak, Krull, Jug, "Fully Unsupervised Probabilistic Noise2Void",
   ISBI 2020.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from .io import save_npz_atomic, savefig_atomic

__all__ = ["DEFAULT_BINS", "GMM_TOL", "HIST_FLOOR", "NOISE_MODELS", "GaussianMixtureNoiseModel", "HistogramNoiseModel",
           "bootstrap_noise_model", "load_noise_model", "noise_model_file", "noise_model_kind", "save_noise_model"]

DEFAULT_BINS = 100      # histogram bins per axis (signal and observation)
HIST_FLOOR = 1e-10      # smallest probability mass of a histogram bin: log never sees 0
GMM_TOL = 1e-10         # added to the GMM density, as in ppn2v/CAREamics: log never sees 0
_MIN_SIGMA_FRACTION = 0.125     # fit: variance floor = (0.125 * smallest binned noise std)**2
_LOG_2PI = math.log(2 * math.pi)
_JIT_MIN_WORK = 2_000_000       # fit: steps * batch from which the XLA compile time pays off

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------------------------------
# argument checks (NumPy)
# ----------------------------------------------------------------------------------------------------------------------

def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_float(value, name: str, positive: bool = False, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            and not (isinstance(value, np.ndarray) and value.size == 1):
        raise TypeError(f"{name} must be a {'positive ' if positive else ''}finite number, "
                        f"got {type(value).__name__} {value!r}")
    value = float(np.asarray(value).reshape(()))
    if not np.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {value!r}")
    return value


def _finite_array(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN or Inf value(s) out of {a.size}")
    return a


def _pairs(signal, observation) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 (signal, observation) of equal shapes, finite."""
    s = _finite_array(signal, 'signal')
    x = _finite_array(observation, 'observation')
    if s.shape != x.shape:
        raise ValueError(f"signal and observation must have the same shape (one signal value per observed pixel), "
                         f"got {s.shape} and {x.shape}")
    if s.size < 2:
        raise ValueError(f"signal and observation must hold at least 2 pairs, got {s.size}")
    return s.ravel(), x.ravel()


def _calibration_pairs(stack, axis: int, correct_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """(signal, observation) of a calibration stack: its mean over ``axis`` paired with every frame."""
    stack = _finite_array(stack, 'stack')
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -stack.ndim <= axis < stack.ndim:
        raise ValueError(f"axis must be an int in [{-stack.ndim}, {stack.ndim - 1}] for a stack of shape "
                         f"{stack.shape}, got {axis!r}")
    n = stack.shape[axis]
    if n < 2:
        raise ValueError(f"stack must hold at least 2 noisy frames of the static sample along axis {axis} (their mean "
                         f"is the signal), got {n} in shape {stack.shape}")
    mean = stack.mean(axis=axis, keepdims=True)
    signal = np.broadcast_to(mean, stack.shape)
    observation = stack
    if correct_variance:
        observation = mean + (stack - mean) * math.sqrt(n / (n - 1))
    return signal.ravel(), observation.ravel()


# ----------------------------------------------------------------------------------------------------------------------
# keras.ops helpers
# ----------------------------------------------------------------------------------------------------------------------

def _as_tensors(observation, signal):
    """Both as tensors of one float dtype: the floats' common dtype, else ``keras.config.floatx()``."""
    floats = []
    for v in (observation, signal):
        dt = getattr(v, 'dtype', None)
        if dt is not None:
            dt = keras.backend.standardize_dtype(dt)
            if 'float' in dt:
                floats.append(dt)
    dtype = keras.backend.result_type(*floats) if floats else keras.config.floatx()
    return ops.cast(observation, dtype), ops.cast(signal, dtype), dtype


def _gmm_log_likelihood(weight, observation, signal, min_signal: float, max_signal: float, min_sigma: float,
                        tol: float = 0.0):
    """``log p(x|s)`` of the ppn2v Gaussian mixture with parameter array ``weight`` (keras.ops, broadcasting)."""
    mu, var, log_alpha = _gmm_components(weight, signal, min_signal, max_signal, min_sigma)
    x = ops.expand_dims(observation, -1)
    log_normal = -0.5 * (_LOG_2PI + ops.log(var)) - ops.square(x - mu) / (2.0 * var)
    ll = ops.logsumexp(log_alpha + log_normal, axis=-1)
    if tol > 0:
        ll = ops.logaddexp(ll, ops.cast(math.log(tol), ll.dtype))
    return ll


def _gmm_components(weight, signal, min_signal: float, max_signal: float, min_sigma: float):
    """Per-component means, variances and log-weights, each of shape ``signal.shape + (K,)``."""
    k = weight.shape[0] // 3
    n_coeff = weight.shape[1]
    coef = ops.concatenate([weight[:k], ops.exp(weight[k:2 * k]), weight[2 * k:]], axis=0)    # (3K, C)
    t = ops.expand_dims((signal - min_signal) / (max_signal - min_signal), -1)               # (..., 1)
    vals = coef[:, n_coeff - 1]
    for i in range(n_coeff - 2, -1, -1):                                                      # Horner
        vals = vals * t + coef[:, i]
    if n_coeff == 1:
        vals = vals + ops.zeros_like(t)
    offsets, var, logits = vals[..., :k], vals[..., k:2 * k], vals[..., 2 * k:]
    var = ops.maximum(var, ops.cast(min_sigma, var.dtype))
    log_alpha = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    centre = ops.sum(ops.exp(log_alpha) * offsets, axis=-1, keepdims=True)
    mu = offsets - centre + ops.expand_dims(signal, -1)
    return mu, var, log_alpha


# ----------------------------------------------------------------------------------------------------------------------
# shared base
# ----------------------------------------------------------------------------------------------------------------------

class _NoiseModel:
    """Common methods; subclasses define ``log_likelihood``, ``mean_and_variance``, ``signal_range``."""

    signal_range: tuple[float, float]

    def log_likelihood(self, observation, signal):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_likelihood_layers(self, observation, signal, name: str = "noise_model"):  # pragma: no cover
        """``log p(x|s)`` as a graph of built-in Keras layers (see :func:`n2v_tf.export_layers.log_likelihood_layers`
        for the parameters)."""
        raise NotImplementedError

    def likelihood(self, observation, signal):
        """``p(x|s)``: the exponential of :meth:`log_likelihood` (same broadcasting, keras.ops)."""
        return ops.exp(self.log_likelihood(observation, signal))

    def coverage(self, data) -> float:
        """Fraction of the values of ``data`` inside the model's signal range.

        Parameters
        ----------
        data : array_like
            Images to be denoised with this model (or their N2V prediction).

        Returns
        -------
        float
            Fraction in [0, 1] of the finite values of ``data`` within ``signal_range``
            (inclusive). Signals outside the range get extrapolated (GMM) or edge-clamped
            (histogram) likelihoods; a coverage well below 1 (say < 0.99) means the model
            should be refitted on data spanning the range of the images to denoise.
        """
        data = np.asarray(data, dtype=np.float64)
        finite = np.isfinite(data)
        if not finite.any():
            raise ValueError(f"data must hold finite values, got {data.size} values and none finite")
        lo, hi = self.signal_range
        d = data[finite]
        return float(np.mean((d >= lo) & (d <= hi)))

    def _observation_range(self) -> tuple[float, float]:  # pragma: no cover - overridden
        return self.signal_range

    def plot(self, path: PathLike | None = None, signals: Sequence[float] | None = None, observation=None,
             signal=None, title: str | None = None):
        """Figure of the noise model: ``p(x|s)`` over (s, x) and slices ``p(x|s)`` for a few signals.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Save the figure there (format from the suffix, e.g. ``.png``; 120 dpi).
        signals : sequence of float, optional
            Signals of the slices; default 10, 30, 50, 70 and 90 % of the signal range.
        observation, signal : array_like, optional
            (signal, observation) pairs, e.g. those the model was fitted on: the empirical
            histogram of the observations whose signal lies within 1 % of the signal range of
            each slice signal is drawn over the slice (dashed steps).
        title : str, optional
            Figure title.

        Returns
        -------
        matplotlib.figure.Figure
            Left: ``log10 p(x|s)`` with the signal along the horizontal axis, the observation
            along the vertical one, the line ``x = s`` dashed and the slice signals dotted.
            Right: the slices ``p(x|s)`` against ``x``.

        Notes
        -----
        Uses :class:`matplotlib.figure.Figure` directly (no pyplot), so it works headless.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as err:  # pragma: no cover - matplotlib is installed in the test environment
            raise ImportError("plot needs matplotlib: pip install matplotlib") from err
        if (observation is None) != (signal is None):
            raise ValueError("observation and signal must be given together (pairs for the empirical slices), got "
                             f"observation={'None' if observation is None else 'an array'} and "
                             f"signal={'None' if signal is None else 'an array'}")
        if observation is not None:
            signal, observation = _pairs(signal, observation)
        lo, hi = self.signal_range
        if signals is None:
            signals = lo + (hi - lo) * np.array([0.1, 0.3, 0.5, 0.7, 0.9])
        signals = _finite_array(signals, 'signals').ravel()
        x_lo, x_hi = self._observation_range()
        s_grid = np.linspace(lo, hi, 200)
        x_grid = np.linspace(x_lo, x_hi, 300)
        dens = np.asarray(self.likelihood(x_grid[:, None], s_grid[None, :]), dtype=np.float64)
        log_dens = np.log10(np.maximum(dens, 1e-300))
        top = float(log_dens.max())

        fig = Figure(figsize=(11, 4.5), layout='constrained')
        ax0, ax1 = fig.subplots(1, 2)
        im = ax0.imshow(log_dens, origin='lower', aspect='auto', extent=(lo, hi, x_lo, x_hi), cmap='magma',
                        vmin=top - 5, vmax=top, interpolation='nearest')
        fig.colorbar(im, ax=ax0, label="log10 p(x|s)")
        ax0.plot([max(lo, x_lo), min(hi, x_hi)], [max(lo, x_lo), min(hi, x_hi)], 'w--', lw=0.8, label="x = s")
        ax0.set_xlabel("signal s")
        ax0.set_ylabel("observation x")
        ax0.set_title(f"{type(self).__name__}")
        colours = [f"C{i % 10}" for i in range(len(signals))]
        half = 0.01 * (hi - lo)
        for s, c in zip(signals, colours):
            ax0.axvline(s, color=c, ls=':', lw=1)
            p = np.asarray(self.likelihood(x_grid, np.full_like(x_grid, s)), dtype=np.float64)
            ax1.plot(x_grid, p, color=c, label=f"s = {s:.4g}")
            if observation is not None:
                sel = observation[np.abs(signal - s) <= half]
                if sel.size:
                    ax1.hist(sel, bins=40, range=(x_lo, x_hi), density=True, histtype='step', color=c, ls='--')
        ax1.set_xlabel("observation x")
        ax1.set_ylabel("p(x|s)")
        ax1.set_title("slices" + (" (dashed: data)" if observation is not None else ""))
        ax1.legend(loc='upper right', fontsize='small')
        if title:
            fig.suptitle(title)
        if path is not None:
            savefig_atomic(fig, path, dpi=120)
        return fig


# ----------------------------------------------------------------------------------------------------------------------
# histogram noise model
# ----------------------------------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="n2v_tf")
class HistogramNoiseModel(_NoiseModel):
    """Noise model from a 2D histogram of (signal, observation) pairs, as in PN2V [1]_.

    Parameters
    ----------
    histogram : numpy.ndarray
        ``(B, B)`` array, ``B >= 2``: row ``i`` (signal bin) holds ``p(x|s)`` over the
        observation bins ``j``, as probabilities or raw counts; rows with a positive sum are
        normalised to sum 1, empty rows (sum <= 1e-20, like the padding of pn2v) are filled
        (see Notes).
    min_value, max_value : float
        Range covered by the ``B`` equal bins, the same for signal and observation.

    Attributes
    ----------
    histogram : numpy.ndarray
        ``(B, B)`` float64, rows sum to 1: the probability mass of each observation bin.
    bins : int
    min_value, max_value : float
    bin_width : float
        ``(max_value - min_value) / bins``.
    filled_rows : numpy.ndarray
        Indices of the rows that were empty and got the Gaussian fallback.
    signal_range : tuple of float
        ``(min_value, max_value)``.

    Notes
    -----
    **Evaluation.** ``p(x|s)`` is a density: the mass of the observation bin holding ``x``
    (nearest bin, piecewise constant in ``x``) divided by ``bin_width``. Along the signal it is
    linearly interpolated between the rows, placed at the bin centres, so that it is continuous
    and differentiable in ``s`` (the PN2V posterior needs gradients w.r.t. the network's
    samples). Signals below the first or above the last bin centre take the edge row (zero
    gradient there); observations outside ``[min_value, max_value]`` are clamped into the edge
    bins, which is consistent with :meth:`fit`, which also clamps the data into the range before
    counting: the edge bins hold the mass of the tails beyond the range.

    **Empty rows.** A signal bin without data gets a discretised Gaussian centred on its bin
    centre, with the noise standard deviation of the nearest non-empty row (the weighted std of
    that row around its mean, at least one bin width); with signal-dependent noise this is a
    better guess than a global std. Rows are listed in ``filled_rows``; prefer data that covers
    the range.

    **Floor.** Every row is mixed with the uniform distribution, ``(1 - B * floor) * p + floor``
    with ``floor = HIST_FLOOR = 1e-10``: every bin mass is at least 1e-10 and rows still sum
    to 1, so ``log_likelihood`` is finite everywhere and ``log(p)`` never sees 0. A histogram
    whose rows already sum to 1 and respect the floor is kept as given (e.g. on :meth:`load`).

    The default of 100 bins needs about 100 pairs per occupied cell for a smooth histogram,
    i.e. roughly 1e5-1e6 pairs; with fewer, use fewer bins or the Gaussian mixture model.

    pn2v's ``createHistogram`` arrays ``(3, B, B)`` (saved with ``np.save``) load with
    :meth:`load`. pn2v interpolates between bin lower edges; here between bin centres.

    References
    ----------
    .. [1] Krull et al., "Probabilistic Noise2Void: Unsupervised Content-Aware Denoising",
       Frontiers in Computer Science 2, 2020.
    """

    def __init__(self, histogram: np.ndarray, min_value: float, max_value: float):
        h = _finite_array(histogram, 'histogram')
        if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] < 2:
            raise ValueError(f"histogram must be a square (B, B) array with B >= 2 bins, got shape {h.shape}")
        if (h < 0).any():
            raise ValueError(f"histogram must be non-negative (counts or probabilities), got minimum {h.min()!r}")
        lo = _check_float(min_value, 'min_value')
        hi = _check_float(max_value, 'max_value')
        if not hi > lo:
            raise ValueError(f"max_value must be larger than min_value, got min_value={lo!r}, max_value={hi!r}")
        b = h.shape[0]
        self.bins = b
        self.min_value, self.max_value = lo, hi
        self.bin_width = (hi - lo) / b
        self.signal_range = (lo, hi)
        rows = h.sum(axis=1)
        if np.allclose(rows, 1.0, rtol=0, atol=1e-9) and h.min() >= HIST_FLOOR * (1 - 1e-9):
            self.histogram = h.copy()                                # already normalised and floored (load)
            self.filled_rows = np.zeros(0, dtype=np.int64)
            return
        full = rows > 1e-20
        if not full.any():
            raise ValueError("histogram must have at least one non-empty row (signal bin with data), got all rows "
                             "empty")
        h = np.where(full[:, None], h / np.where(full, rows, 1.0)[:, None], 0.0)
        self.filled_rows = np.flatnonzero(~full)
        if self.filled_rows.size:
            centres = lo + (np.arange(b) + 0.5) * self.bin_width
            edges = lo + np.arange(b + 1) * self.bin_width
            full_idx = np.flatnonzero(full)
            from scipy.special import ndtr
            for i in self.filled_rows:
                r = full_idx[np.argmin(np.abs(full_idx - i))]
                m = float(np.sum(h[r] * centres))
                sd = max(float(np.sqrt(np.sum(h[r] * (centres - m) ** 2))), self.bin_width)
                cdf = ndtr((edges - centres[i]) / sd)
                cdf[0], cdf[-1] = 0.0, 1.0                                   # edge bins take the tails
                h[i] = np.diff(cdf)
        self.histogram = h * (1 - b * HIST_FLOOR) + HIST_FLOOR           # rows still sum to 1

    def __repr__(self) -> str:
        return (f"HistogramNoiseModel(bins={self.bins}, min_value={self.min_value:.6g}, "
                f"max_value={self.max_value:.6g})")

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, signal, observation, bins: int = DEFAULT_BINS, min_value: float | None = None,
            max_value: float | None = None) -> HistogramNoiseModel:
        """Count (signal, observation) pairs into a ``bins x bins`` histogram.

        Parameters
        ----------
        signal : array_like
            Clean (or pseudo-clean, e.g. averaged or N2V-predicted) signal per pixel.
        observation : array_like
            Noisy value per pixel, same shape as ``signal``.
        bins : int
            Bins per axis (>= 2); default 100.
        min_value, max_value : float, optional
            Range of both axes; default the smallest and largest value of signal and
            observation together. Values outside are clamped into the edge bins.

        Returns
        -------
        HistogramNoiseModel

        Raises
        ------
        ValueError
            On non-finite values, different shapes, fewer than 2 pairs, or an empty range.

        Notes
        -----
        Call :meth:`coverage` on the images you will denoise: signals outside the fitted
        range take the edge rows.
        """
        s, x = _pairs(signal, observation)
        bins = _check_int(bins, 'bins', 2)
        lo = float(min(s.min(), x.min())) if min_value is None else _check_float(min_value, 'min_value')
        hi = float(max(s.max(), x.max())) if max_value is None else _check_float(max_value, 'max_value')
        if not hi > lo:
            raise ValueError(f"max_value must be larger than min_value (constant data?), got min_value={lo!r}, "
                             f"max_value={hi!r}")
        width = (hi - lo) / bins
        i = np.clip(np.floor((s - lo) / width), 0, bins - 1).astype(np.int64)
        j = np.clip(np.floor((x - lo) / width), 0, bins - 1).astype(np.int64)
        counts = np.bincount(i * bins + j, minlength=bins * bins).reshape(bins, bins).astype(np.float64)
        return cls(counts, lo, hi)

    @classmethod
    def from_calibration(cls, stack, bins: int = DEFAULT_BINS, axis: int = 0, correct_variance: bool = True,
                         **kw) -> HistogramNoiseModel:
        """Fit on a calibration stack: noisy frames of a static sample.

        Parameters
        ----------
        stack : array_like
            At least 2 frames along ``axis`` (typically 100 or more), each of any shape.
        bins : int
            Bins per axis; default 100.
        axis : int
            Frame axis; default 0.
        correct_variance : bool
            Rescale each frame's deviation from the mean by ``sqrt(n / (n - 1))`` (see Notes);
            False gives the plain pairs (mean, frame) of pn2v.
        **kw
            ``min_value``, ``max_value``: passed to :meth:`fit`.

        Returns
        -------
        HistogramNoiseModel

        Notes
        -----
        The signal is the mean of the ``n`` frames, paired with every frame. A frame deviates
        from the mean by less than from the true signal: for independent noise
        ``Var[x_i - mean] = (1 - 1/n) Var[x_i - s]``, so ``correct_variance`` scales the
        deviations back (2 % for 50 frames, a factor 2 in variance for 2 frames).
        """
        s, x = _calibration_pairs(stack, axis, correct_variance)
        return cls.fit(s, x, bins=bins, **kw)

    # -- evaluation ------------------------------------------------------------------------------------------------

    def log_likelihood(self, observation, signal):
        """``log p(x|s)`` (keras.ops, broadcasting ``observation`` against ``signal``).

        Parameters
        ----------
        observation : tensor or array_like
            Noisy values ``x``.
        signal : tensor or array_like
            Signal hypotheses ``s`` (e.g. the network's samples, with an extra sample axis).

        Returns
        -------
        tensor
            ``log p(x|s)`` of the broadcast shape, in the floats' common dtype (else
            ``keras.config.floatx()``). Differentiable in ``signal`` between the first and
            last bin centre (constant, zero gradient, beyond); piecewise constant in
            ``observation``.
        """
        x, s, dtype = _as_tensors(observation, signal)
        b = self.bins
        table = ops.convert_to_tensor(self.histogram.ravel() / self.bin_width, dtype=dtype)
        t = ops.clip((s - self.min_value) / self.bin_width - 0.5, 0.0, b - 1.0)
        i0 = ops.minimum(ops.cast(ops.floor(t), 'int32'), b - 2)
        f = t - ops.cast(i0, dtype)
        # times the reciprocal (not divided): bit-identical to the exported graph (log_likelihood_layers), so both
        # pick the same observation bin
        j = ops.cast(ops.clip(ops.floor((x - self.min_value) * (1.0 / self.bin_width)), 0.0, b - 1.0), 'int32')
        idx = i0 * b + j
        p = ops.take(table, idx) * (1.0 - f) + ops.take(table, idx + b) * f
        return ops.log(p)

    def log_likelihood_layers(self, observation, signal, name: str = "histogram"):
        """``log p(x|s)`` as built-in Keras layers (:func:`n2v_tf.export_layers.histogram_log_likelihood_layers`)."""
        from .export_layers import histogram_log_likelihood_layers
        return histogram_log_likelihood_layers(self, observation, signal, name)

    def mean_and_variance(self, signal) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``p(x|s)`` (NumPy), over the observation bin centres.

        Parameters
        ----------
        signal : array_like
            Signals ``s``.

        Returns
        -------
        mean, variance : numpy.ndarray
            Of the shape of ``signal``; the edge bins' tail mass counts at their centres.
        """
        s = _finite_array(signal, 'signal')
        b = self.bins
        centres = self.min_value + (np.arange(b) + 0.5) * self.bin_width
        t = np.clip((s - self.min_value) / self.bin_width - 0.5, 0.0, b - 1.0)
        i0 = np.minimum(np.floor(t).astype(np.int64), b - 2)
        f = (t - i0)[..., None]
        rows = self.histogram[i0] * (1 - f) + self.histogram[i0 + 1] * f
        mean = rows @ centres
        var = rows @ centres ** 2 - mean ** 2
        return mean, np.maximum(var, 0.0)

    def _observation_range(self) -> tuple[float, float]:
        return self.min_value, self.max_value

    # -- files -----------------------------------------------------------------------------------------------------

    def get_config(self) -> dict:
        """Constructor arguments (JSON-compatible), for Keras serialisation of a PN2V loss."""
        return {"histogram": self.histogram.tolist(), "min_value": self.min_value, "max_value": self.max_value}

    @classmethod
    def from_config(cls, config: dict) -> HistogramNoiseModel:
        return cls(np.asarray(config["histogram"]), config["min_value"], config["max_value"])

    def save(self, path: PathLike) -> None:
        """Save to ``.npz`` with keys ``histogram`` (B, B), ``min_value``, ``max_value``, ``filled_rows``, ``model``."""
        save_npz_atomic(path, histogram=self.histogram, min_value=np.float64(self.min_value),
                        max_value=np.float64(self.max_value), filled_rows=self.filled_rows,
                        model=np.str_(type(self).__name__))

    @classmethod
    def load(cls, path: PathLike) -> HistogramNoiseModel:
        """Load a model saved by :meth:`save`, or a pn2v ``createHistogram`` array (``.npy``, ``(3, B, B)``).

        For a pn2v array, ``[0]`` is the row-normalised histogram, ``[1]`` and ``[2]`` the lower
        and upper bin edges; the range is ``[min([1]), max([2])]``.
        """
        obj = np.load(path, allow_pickle=False)
        if isinstance(obj, np.ndarray):
            if obj.ndim != 3 or obj.shape[0] != 3:
                raise ValueError(f"{path}: a .npy noise model must be a pn2v createHistogram array of shape "
                                 f"(3, B, B), got shape {obj.shape}")
            return cls(obj[0], float(obj[1].min()), float(obj[2].max()))
        with obj as data:
            missing = {'histogram', 'min_value', 'max_value'} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a HistogramNoiseModel file, missing key(s) {sorted(missing)} "
                                 f"(has {sorted(data.files)})")
            model = cls(data['histogram'], float(data['min_value']), float(data['max_value']))
            if 'filled_rows' in data.files:
                model.filled_rows = np.asarray(data['filled_rows'], dtype=np.int64)
            return model


# ----------------------------------------------------------------------------------------------------------------------
# Gaussian mixture noise model
# ----------------------------------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="n2v_tf")
class GaussianMixtureNoiseModel(_NoiseModel):
    """Signal-dependent Gaussian mixture noise model of PPN2V [1]_ (ppn2v/CAREamics parametrisation).

    Parameters
    ----------
    weight : numpy.ndarray, optional
        ``(3 * K, n_coeff)`` parameter array, layout of ppn2v/CAREamics ``trained_weight`` (see
        Notes). Default: a data-free start (zero mean offsets, equal weights, variance
        ``f_k * (1 + (s - min_signal))`` with ``f_k`` spread over [0.5, 1.5]); use :meth:`fit`.
    n_gaussian : int, optional
        ``K``, the number of components; default 3, or read from ``weight``.
    n_coeff : int, optional
        Coefficients per polynomial (degree + 1); default 2 (linear), or read from ``weight``.
    min_signal, max_signal : float
        Signal range; the polynomials take ``t = (s - min_signal) / (max_signal - min_signal)``.
    min_sigma : float, optional
        Floor of each component's **variance** (squared data units). The name is that of the
        ppn2v/CAREamics argument and ``.npz`` key, whose code clamps the variance with it
        (their docstrings say "standard deviation"); it is kept so that their files evaluate
        identically. Default ``(1e-3 * (max_signal - min_signal))**2``; :meth:`fit` derives
        one from the data.
    tol : float
        Added to the mixture density before the log, as in ppn2v/CAREamics (1e-10): bounds
        ``log p`` from below for far outliers.

    Attributes
    ----------
    weight : numpy.ndarray
        ``(3K, n_coeff)`` float64.
    n_gaussian, n_coeff : int
    min_signal, max_signal, min_sigma, tol : float
    signal_range : tuple of float
        ``(min_signal, max_signal)``.
    history : numpy.ndarray or None
        After :meth:`fit`: mean negative log-likelihood (data units) per Adam step.

    Notes
    -----
    With ``t = (s - min_signal) / (max_signal - min_signal)`` and ``poly(c, t) = sum_i c_i t**i``,
    rows ``0..K-1`` of ``weight`` are the components' mean polynomials, rows ``K..2K-1`` the
    logarithms of the variance polynomials' coefficients, rows ``2K..3K-1`` the weight logits:

    * weights ``alpha_k(s) = softmax_k(poly(w[2K + k], t))``;
    * variances ``var_k(s) = max(poly(exp(w[K + k]), t), min_sigma)``: a polynomial with
      positive coefficients, so growing with the signal like shot noise ``g * s + r**2``
      (degree 1) on ``[min_signal, max_signal]``;
    * means ``mu_k(s) = s + m_k(s) - sum_j alpha_j(s) m_j(s)`` with ``m_k = poly(w[k], t)``:
      the mixture is centred on the signal, ``E[x|s] = s``, whatever the offsets; they shape
      skewed or heavy-tailed noise.

    ``log p(x|s) = log(sum_k alpha_k N(x; mu_k, var_k) + tol)`` is evaluated with log-sum-exp
    over the components, so it is finite and smooth even where every component underflows.
    Signals outside ``[min_signal, max_signal]`` extrapolate the polynomials (check
    :meth:`coverage`).

    Files (:meth:`save`) hold ppn2v/CAREamics' keys ``trained_weight``, ``min_signal``,
    ``max_signal`` (shape (1,)) and ``min_sigma``, plus ``tol``: files of either tool load here,
    and ours load there.

    References
    ----------
    .. [1] Prakash, Lalit, Tomancak, Krull, Jug, "Fully Unsupervised Probabilistic Noise2Void",
       ISBI 2020.
    .. [2] Krull et al., "Probabilistic Noise2Void: Unsupervised Content-Aware Denoising",
       Frontiers in Computer Science 2, 2020.
    """

    def __init__(self, weight: np.ndarray | None = None, n_gaussian: int | None = None, n_coeff: int | None = None,
                 min_signal: float = 0.0, max_signal: float = 1.0, min_sigma: float | None = None,
                 tol: float = GMM_TOL):
        lo = _check_float(min_signal, 'min_signal')
        hi = _check_float(max_signal, 'max_signal')
        if not hi > lo:
            raise ValueError(f"max_signal must be larger than min_signal, got min_signal={lo!r}, max_signal={hi!r}")
        if n_gaussian is not None:
            n_gaussian = _check_int(n_gaussian, 'n_gaussian', 1)
        if n_coeff is not None:
            n_coeff = _check_int(n_coeff, 'n_coeff', 1)
        if weight is None:
            k = 3 if n_gaussian is None else n_gaussian
            c = 2 if n_coeff is None else n_coeff
            w = np.zeros((3 * k, c))
            spread = np.linspace(0.5, 1.5, k) if k > 1 else np.ones(1)
            w[k:2 * k, 0] = np.log(spread)
            if c > 1:
                w[k:2 * k, 1] = np.log(spread * (hi - lo))
            w[k:2 * k, 2:] = np.log(1e-6)
        else:
            w = _finite_array(weight, 'weight')
            if w.ndim != 2 or w.shape[0] % 3 or w.shape[0] == 0:
                raise ValueError(f"weight must be a (3 * n_gaussian, n_coeff) array, got shape {w.shape}")
            if n_gaussian is not None and w.shape[0] != 3 * n_gaussian:
                raise ValueError(f"weight has {w.shape[0]} rows, so n_gaussian must be {w.shape[0] // 3} "
                                 f"(3 rows per component), got n_gaussian={n_gaussian}")
            if n_coeff is not None and w.shape[1] != n_coeff:
                raise ValueError(f"weight has {w.shape[1]} columns, so n_coeff must be {w.shape[1]}, "
                                 f"got n_coeff={n_coeff}")
            w = w.copy()
        self.weight = w
        self.n_gaussian = w.shape[0] // 3
        self.n_coeff = w.shape[1]
        self.min_signal, self.max_signal = lo, hi
        self.min_sigma = ((1e-3 * (hi - lo)) ** 2 if min_sigma is None
                          else _check_float(min_sigma, 'min_sigma', positive=True))
        self.tol = _check_float(tol, 'tol')
        if self.tol < 0:
            raise ValueError(f"tol must be >= 0, got {tol!r}")
        self.signal_range = (lo, hi)
        self.history: np.ndarray | None = None

    def __repr__(self) -> str:
        return (f"GaussianMixtureNoiseModel(n_gaussian={self.n_gaussian}, n_coeff={self.n_coeff}, "
                f"min_signal={self.min_signal:.6g}, max_signal={self.max_signal:.6g}, min_sigma={self.min_sigma:.4g})")

    # -- evaluation ------------------------------------------------------------------------------------------------

    def log_likelihood(self, observation, signal):
        """``log p(x|s)`` (keras.ops, broadcasting ``observation`` against ``signal``).

        Parameters
        ----------
        observation : tensor or array_like
            Noisy values ``x``.
        signal : tensor or array_like
            Signal hypotheses ``s`` (e.g. the network's samples, with an extra sample axis).

        Returns
        -------
        tensor
            ``log(sum_k alpha_k(s) N(x; mu_k(s), var_k(s)) + tol)`` of the broadcast shape, in
            the floats' common dtype (else ``keras.config.floatx()``); smooth in ``signal``
            (except where a variance touches ``min_sigma``) and finite for any finite input.
        """
        x, s, dtype = _as_tensors(observation, signal)
        w = ops.convert_to_tensor(self.weight, dtype=dtype)
        return _gmm_log_likelihood(w, x, s, self.min_signal, self.max_signal, self.min_sigma, self.tol)

    def log_likelihood_layers(self, observation, signal, name: str = "gmm"):
        """``log p(x|s)`` as built-in Keras layers (:func:`n2v_tf.export_layers.gmm_log_likelihood_layers`)."""
        from .export_layers import gmm_log_likelihood_layers
        return gmm_log_likelihood_layers(self, observation, signal, name)

    def components(self, signal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-component means, variances and weights at ``signal`` (NumPy, float64).

        Returns
        -------
        mean, variance, weight : numpy.ndarray
            Each of shape ``signal.shape + (n_gaussian,)``.
        """
        s = ops.convert_to_tensor(_finite_array(signal, 'signal'), dtype='float64')
        w = ops.convert_to_tensor(self.weight, dtype='float64')
        mu, var, log_alpha = _gmm_components(w, s, self.min_signal, self.max_signal, self.min_sigma)
        return (np.asarray(ops.convert_to_numpy(mu)), np.asarray(ops.convert_to_numpy(var)),
                np.exp(np.asarray(ops.convert_to_numpy(log_alpha))))

    def mean_and_variance(self, signal) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``p(x|s)`` (NumPy, float64), e.g. to check the variance law.

        Parameters
        ----------
        signal : array_like
            Signals ``s``.

        Returns
        -------
        mean, variance : numpy.ndarray
            ``E[x|s] = sum_k alpha_k mu_k`` (equal to ``s`` by construction) and
            ``Var[x|s] = sum_k alpha_k (var_k + mu_k**2) - E[x|s]**2``, shaped like ``signal``.
        """
        mu, var, alpha = self.components(signal)
        mean = np.sum(alpha * mu, axis=-1)
        return mean, np.sum(alpha * (var + (mu - mean[..., None]) ** 2), axis=-1)

    def _observation_range(self) -> tuple[float, float]:
        s = np.linspace(self.min_signal, self.max_signal, 64)
        _, var = self.mean_and_variance(s)
        sd = np.sqrt(var)
        return float(np.min(s - 4 * sd)), float(np.max(s + 4 * sd))

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, signal, observation, n_gaussian: int = 3, n_coeff: int = 2, steps: int = 1000,
            batch_size: int = 25_000, learning_rate: float = 0.1, seed: int = 0, lower_clip: float = 0.0,
            upper_clip: float = 100.0, min_signal: float | None = None, max_signal: float | None = None,
            min_sigma: float | None = None, tol: float = GMM_TOL) -> GaussianMixtureNoiseModel:
        """Maximum-likelihood fit on (signal, observation) pairs with Adam.

        Parameters
        ----------
        signal : array_like
            Clean or pseudo-clean signal per pixel: the mean of a calibration stack, or the
            prediction of a trained N2V model (bootstrapping, [1]_).
        observation : array_like
            Noisy value per pixel, same shape as ``signal``.
        n_gaussian : int
            Components ``K``; default 3.
        n_coeff : int
            Coefficients per polynomial; default 2 (linear in the signal).
        steps : int
            Adam steps (ppn2v's ``n_epochs`` are steps too); default 1000.
        batch_size : int
            Pairs drawn (with replacement) per step; all pairs when there are fewer.
        learning_rate : float
            Adam learning rate in normalised units (see Notes); default 0.1, as ppn2v.
        seed : int
            Seed of the initial jitter and the batch draws.
        lower_clip, upper_clip : float
            Percentiles of the signal: only pairs with the signal between them are used
            (default all: 0 and 100).
        min_signal, max_signal : float, optional
            Signal range of the polynomials; default the smallest and largest used signal.
        min_sigma : float, optional
            Variance floor (see the class); default ``(0.125 * sd_min)**2``, ``sd_min`` being
            the smallest noise std of 16 signal-quantile bins, so the floor binds only for
            components narrower than an eighth of the narrowest noise (degenerate spikes, e.g.
            on integer-valued data).
        tol : float
            See the class.

        Returns
        -------
        GaussianMixtureNoiseModel
            With ``history``, the loss per step.

        Raises
        ------
        ValueError
            On bad input (non-finite values, different shapes, too few pairs, a constant
            signal, no noise), or if the loss becomes non-finite: ``"GMM fit diverged ..."``
            with the last finite loss and its step.

        Notes
        -----
        The fit works on the data shifted by ``min_signal`` and divided by the overall noise
        std ``c = std(observation - signal)``, which leaves ``t`` unchanged; the result is
        mapped back exactly (mean rows times ``c``, log-variance rows plus ``2 log c``), so
        the learning rate means the same on any intensity scale. The variance polynomials
        start at a non-negative least-squares fit of the binned noise variance, spread by the
        factors ``0.5..1.5`` over the components; means and logits start at zero plus a seeded
        jitter of 0.01. The learning rate decays with a cosine to 1 % over the steps.

        The training step is compiled with XLA when ``steps * batch_size`` reaches 2e6 pair
        evaluations (the compilation takes a few seconds and makes each step several times
        faster); if XLA is unavailable it falls back to a plain ``tf.function`` with a warning.

        Fitting 1e5-1e6 pairs with the defaults takes a few seconds on a CPU. Check
        :meth:`coverage` of the images to denoise and :meth:`plot` against the data.

        References
        ----------
        .. [1] Prakash et al., "Fully Unsupervised Probabilistic Noise2Void", ISBI 2020.
        """
        s, x = _pairs(signal, observation)
        k = _check_int(n_gaussian, 'n_gaussian', 1)
        c = _check_int(n_coeff, 'n_coeff', 1)
        steps = _check_int(steps, 'steps', 1)
        batch_size = _check_int(batch_size, 'batch_size', 1)
        learning_rate = _check_float(learning_rate, 'learning_rate', positive=True)
        seed = _check_int(seed, 'seed', 0)
        s, x, lo, hi, scale = _gmm_fit_pairs(s, x, k, c, lower_clip, upper_clip, min_signal, max_signal)
        # normalised units: signal range [0, (hi - lo) / scale], noise std ~1
        su, xu = (s - lo) / scale, (x - lo) / scale
        hi_u = (hi - lo) / scale
        rng = np.random.default_rng(seed)
        w0, floor_u = _gmm_initial_weights(su, xu, hi_u, k, c, min_sigma, scale, rng)
        wu, history = _gmm_optimise(w0, su, xu, hi_u, floor_u, steps, batch_size, learning_rate, rng,
                                    loss_offset=math.log(scale))
        w = wu.copy()
        w[:k] *= scale
        w[k:2 * k] += 2 * math.log(scale)
        model = cls(w, min_signal=lo, max_signal=hi, min_sigma=floor_u * scale ** 2, tol=tol)
        model.history = history
        return model

    @classmethod
    def from_calibration(cls, stack, axis: int = 0, correct_variance: bool = True,
                         **kw) -> GaussianMixtureNoiseModel:
        """Fit on a calibration stack: noisy frames of a static sample.

        Parameters
        ----------
        stack : array_like
            At least 2 frames along ``axis`` (typically 100 or more), each of any shape.
        axis : int
            Frame axis; default 0.
        correct_variance : bool
            Rescale each frame's deviation from the mean by ``sqrt(n / (n - 1))``, undoing the
            ``(1 - 1/n)`` shrinkage of the variance around the mean of ``n`` frames (see
            :meth:`HistogramNoiseModel.from_calibration`); False gives ppn2v's plain pairs.
        **kw
            Passed to :meth:`fit` (``n_gaussian``, ``n_coeff``, ``steps``, ...).

        Returns
        -------
        GaussianMixtureNoiseModel
        """
        s, x = _calibration_pairs(stack, axis, correct_variance)
        return cls.fit(s, x, **kw)

    # -- files -----------------------------------------------------------------------------------------------------

    def get_config(self) -> dict:
        """Constructor arguments (JSON-compatible), for Keras serialisation of a PN2V loss."""
        return {"weight": self.weight.tolist(), "min_signal": self.min_signal, "max_signal": self.max_signal,
                "min_sigma": self.min_sigma, "tol": self.tol}

    @classmethod
    def from_config(cls, config: dict) -> GaussianMixtureNoiseModel:
        return cls(np.asarray(config.pop("weight")), **config)

    def save(self, path: PathLike) -> None:
        """Save to ``.npz`` with the ppn2v/CAREamics keys (``trained_weight``, ``min_signal``, ``max_signal``,
        ``min_sigma``) plus ``tol`` and ``model``."""
        save_npz_atomic(path, trained_weight=self.weight, min_signal=np.array([self.min_signal]),
                        max_signal=np.array([self.max_signal]), min_sigma=np.float64(self.min_sigma),
                        tol=np.float64(self.tol), model=np.str_(type(self).__name__))

    @classmethod
    def load(cls, path: PathLike) -> GaussianMixtureNoiseModel:
        """Load a ``.npz`` written by :meth:`save`, ppn2v or CAREamics (``tol`` defaults to 1e-10)."""
        with np.load(path, allow_pickle=False) as data:
            missing = {'trained_weight', 'min_signal', 'max_signal', 'min_sigma'} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a Gaussian mixture noise model file, missing key(s) {sorted(missing)} "
                                 f"(has {sorted(data.files)})")
            tol = float(data['tol']) if 'tol' in data.files else GMM_TOL
            return cls(data['trained_weight'], min_signal=float(np.ravel(data['min_signal'])[0]),
                       max_signal=float(np.ravel(data['max_signal'])[0]),
                       min_sigma=float(np.ravel(data['min_sigma'])[0]), tol=tol)


# ----------------------------------------------------------------------------------------------------------------------
# GaussianMixtureNoiseModel.fit, step by step
# ----------------------------------------------------------------------------------------------------------------------

def _gmm_fit_pairs(s, x, k: int, c: int, lower_clip, upper_clip, min_signal, max_signal):
    """Percentile-clipped (signal, observation) pairs, checked; with the signal range and the noise scale."""
    lower_clip = _check_float(lower_clip, 'lower_clip')
    upper_clip = _check_float(upper_clip, 'upper_clip')
    if not 0 <= lower_clip < upper_clip <= 100:
        raise ValueError(f"lower_clip and upper_clip must be percentiles with 0 <= lower_clip < upper_clip <= 100, "
                         f"got {lower_clip!r} and {upper_clip!r}")
    if lower_clip > 0 or upper_clip < 100:
        lb, ub = np.percentile(s, [lower_clip, upper_clip])
        keep = (s >= lb) & (s <= ub)
        s, x = s[keep], x[keep]
    need = max(100, 10 * 3 * k * c)
    if s.size < need:
        raise ValueError(f"fit needs at least {need} (signal, observation) pairs for n_gaussian={k}, n_coeff={c} "
                         f"(after percentile clipping), got {s.size}")
    lo = float(s.min()) if min_signal is None else _check_float(min_signal, 'min_signal')
    hi = float(s.max()) if max_signal is None else _check_float(max_signal, 'max_signal')
    if not hi > lo:
        raise ValueError(f"max_signal must be larger than min_signal (a constant signal cannot define a noise "
                         f"model), got min_signal={lo!r}, max_signal={hi!r}")
    scale = float(np.std(x - s))
    if not scale > 0:
        raise ValueError("observation must differ from signal (there is no noise to model), got "
                         "observation == signal everywhere")
    return s, x, lo, hi, scale


def _gmm_initial_weights(su, xu, hi_u: float, k: int, c: int, min_sigma, scale: float, rng):
    """Start values (normalised units): variance polynomial fitted to binned residual variances (non-negative least
    squares), ``k`` components spread around it; and the variance floor."""
    from scipy.optimize import nnls
    t = su / hi_u
    n_bins = 16
    edges = np.unique(np.quantile(t, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, t, side='right') - 1, 0, max(len(edges) - 2, 0))
    r = xu - su
    t_b, v_b, sd_b = [], [], []
    for b in range(max(len(edges) - 1, 1)):  # loop over 16 bins, not pixels
        sel = which == b
        if sel.sum() >= 2:
            t_b.append(t[sel].mean())
            v_b.append(r[sel].var())
            sd_b.append(r[sel].std())
    t_b, v_b = np.array(t_b), np.array(v_b)
    coeffs, _ = nnls(t_b[:, None] ** np.arange(c)[None, :], v_b)
    coeffs = np.maximum(coeffs, 1e-4 * max(float(v_b.mean()), 1e-12))
    sd_min = min(sd_b) if sd_b and min(sd_b) > 0 else 1e-3
    floor_u = ((_MIN_SIGMA_FRACTION * sd_min) ** 2 if min_sigma is None
               else _check_float(min_sigma, 'min_sigma', positive=True) / scale ** 2)
    spread = np.linspace(0.5, 1.5, k) if k > 1 else np.ones(1)
    w0 = rng.normal(0.0, 0.01, (3 * k, c))
    w0[k:2 * k] = np.log(spread[:, None] * coeffs[None, :])
    return w0, floor_u


def _gmm_optimise(w0, su, xu, hi_u: float, floor_u: float, steps: int, batch_size: int, learning_rate: float, rng,
                  loss_offset: float):
    """Adam with cosine decay on the mean negative log-likelihood of random batches; (weights, loss history).

    ``loss_offset`` (``log(scale)``) turns the losses of normalised units into data units."""
    import tensorflow as tf
    dtype = 'float32'
    weight = keras.Variable(w0.astype(dtype), dtype=dtype, name='gmm_weight')
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.01)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    optimizer.build([weight])                               # slots now: the step is traced once
    s_all = tf.constant(su, dtype=dtype)
    x_all = tf.constant(xu, dtype=dtype)

    def train_step(idx):
        sb = tf.gather(s_all, idx)
        xb = tf.gather(x_all, idx)
        with tf.GradientTape() as tape:
            loss = -ops.mean(_gmm_log_likelihood(weight.value, xb, sb, 0.0, hi_u, floor_u))
        grad = tape.gradient(loss, weight.value)
        optimizer.apply_gradients([(grad, weight)])
        return loss

    n = su.size
    # XLA fuses the ~30 element-wise ops (~7x faster per step) but compiles for seconds: worth it for long fits
    jit = steps * min(batch_size, n) >= _JIT_MIN_WORK
    step = tf.function(train_step, jit_compile=jit)
    full = np.arange(n, dtype=np.int32) if n <= batch_size else None
    history = np.empty(steps)
    last = None
    for i in range(steps):
        idx = tf.constant(full if full is not None else rng.integers(0, n, batch_size, dtype=np.int32))
        if i == 0 and jit:
            try:
                loss = float(step(idx))
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.NotFoundError) as err:  # pragma: no cover - XLA missing on this platform
                warnings.warn(f"GMM fit: XLA compilation failed ({type(err).__name__}), fitting without it "
                              "(slower)", stacklevel=3)
                step = tf.function(train_step)
                loss = float(step(idx))
        else:
            loss = float(step(idx))
        if not np.isfinite(loss):
            where = ("no finite loss before it" if last is None
                     else f"last finite loss {history[last]:.6g} at step {last}")
            raise ValueError(f"GMM fit diverged: the loss became {loss} at step {i}; {where} (losses are mean "
                             f"negative log-likelihoods in data units); lower learning_rate (got "
                             f"{learning_rate:g}) or check the data")
        history[i] = loss + loss_offset
        last = i
    wu = np.asarray(ops.convert_to_numpy(weight.value), dtype=np.float64)
    if not np.isfinite(wu).all():
        raise ValueError(f"GMM fit diverged: the parameters became non-finite; last finite loss "
                         f"{history[last]:.6g} at step {last}; lower learning_rate (got {learning_rate:g})")
    return wu, history


# ----------------------------------------------------------------------------------------------------------------------
# The registry: kinds, classes, files
# ----------------------------------------------------------------------------------------------------------------------

#: Noise-model kinds and their classes; a model folder or a package holds ``noise_model_<kind>.npz``.
NOISE_MODELS = {"gmm": GaussianMixtureNoiseModel, "histogram": HistogramNoiseModel}


def noise_model_file(kind: str) -> str:
    """File name of a noise model of ``kind`` in a model folder or package (``'noise_model_gmm.npz'``, ...)."""
    if kind not in NOISE_MODELS:
        raise ValueError(f"noise model kind must be one of {sorted(NOISE_MODELS)}, got {kind!r}")
    return f"noise_model_{kind}.npz"


def noise_model_kind(noise_model) -> str:
    """The kind (``'gmm'`` or ``'histogram'``) of an n2v_tf noise model; :class:`TypeError` for anything else."""
    for kind, cls in NOISE_MODELS.items():
        if type(noise_model) is cls:
            return kind
    raise TypeError(f"noise_model must be an n2v_tf GaussianMixtureNoiseModel or HistogramNoiseModel, got "
                    f"{type(noise_model).__name__}")


def save_noise_model(folder: PathLike, noise_model) -> str:
    """Write ``noise_model`` as ``folder/noise_model_<kind>.npz`` (replacing any other noise model file there).

    Returns
    -------
    str
        The file's path.
    """
    kind = noise_model_kind(noise_model)
    folder = os.fspath(folder)
    for other in NOISE_MODELS:
        if other != kind and os.path.exists(os.path.join(folder, noise_model_file(other))):
            os.remove(os.path.join(folder, noise_model_file(other)))
    path = os.path.join(folder, noise_model_file(kind))
    noise_model.save(path)
    return path


def _kind_of_file(path: str) -> str:
    """Which class wrote a noise model file: by its keys (n2v_tf, ppn2v, CAREamics ``.npz``; pn2v's ``.npy``)."""
    try:
        obj = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read noise model file '{path}': "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if isinstance(obj, np.ndarray):
        return "histogram"                                  # pn2v's createHistogram array (3, B, B)
    keys = set(obj.files)
    obj.close()
    for kind, key in (("gmm", "trained_weight"), ("histogram", "histogram")):
        if key in keys:
            return kind
    raise ValueError(f"'{path}' is not a noise model file: it holds {sorted(keys)}, expected those of a GMM "
                     "(trained_weight, min_signal, max_signal, ...) or a histogram (histogram, min_value, ...)")


def load_noise_model(folder_or_file: PathLike):
    """Load a noise model: a file (any name; kind from its contents) or a model folder's ``noise_model_<kind>.npz``.

    Returns
    -------
    GaussianMixtureNoiseModel or HistogramNoiseModel or None
        ``None`` if a folder holds no noise model file.

    Raises
    ------
    FileNotFoundError
        ``folder_or_file`` does not exist.
    ValueError
        The file is not a (readable) noise model file.
    """
    path = os.fspath(folder_or_file)
    if os.path.isdir(path):
        for kind, cls in NOISE_MODELS.items():
            candidate = os.path.join(path, noise_model_file(kind))
            if os.path.exists(candidate):
                return cls.load(candidate)
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"noise model '{path}' does not exist (no such file)")
    return NOISE_MODELS[_kind_of_file(path)].load(path)


# ----------------------------------------------------------------------------------------------------------------------
# Bootstrapping (fully unsupervised PN2V)
# ----------------------------------------------------------------------------------------------------------------------


def bootstrap_noise_model(n2v_model, images, axes: str, kind: str = "gmm", clip_percent: float = 0.5,
                          n_tiles: Sequence[int] | None = None, tta: bool = False, **fit_kwargs):
    """Fit a noise model to (N2V prediction, noisy image) pairs: the bootstrap of fully unsupervised PN2V.

    Parameters
    ----------
    n2v_model : n2v_tf.N2V
        A trained (non-probabilistic) N2V / N2V2 model.
    images : numpy.ndarray or sequence of numpy.ndarray
        Noisy images (one array with ``axes``, or a list of them).
    axes : str
        Axes of each image, e.g. ``'YX'``, ``'ZYX'``, ``'SYX'``.
    kind : {'gmm', 'histogram'}
        Noise model class.
    clip_percent : float
        Pairs whose pseudo-ground-truth lies in the lowest or highest ``clip_percent`` % of the predicted
        values are dropped (outliers of the prediction; default 0.5).
    n_tiles : sequence of int, optional
        Tiling of the prediction.
    tta : bool
        Take the test-time-augmented prediction (mean over the 8 YX flips/rotations, ``N2V.predict(tta=True)``) as
        the pseudo ground truth: closer to the signal than a single prediction, at 8 times the prediction time.
    **fit_kwargs
        Passed to ``GaussianMixtureNoiseModel.fit`` or ``HistogramNoiseModel.fit``.

    Returns
    -------
    GaussianMixtureNoiseModel or HistogramNoiseModel

    Notes
    -----
    N2V's prediction is used as pseudo ground truth ``s`` for every pixel, and the noise model
    ``p(x|s)`` is fitted to the pairs ``(s, x)`` of the same images. The N2V prediction is smoother
    than the truth, so the fitted noise is slightly broader than the true noise; Prakash et al. show
    that PN2V trained with such a bootstrapped GMM still improves on N2V.

    References
    ----------
    .. [1] M. Prakash, M. Lalit, P. Tomancak, A. Krull, F. Jug, "Fully Unsupervised Probabilistic Noise2Void",
       ISBI 2020.
    """
    if kind not in NOISE_MODELS:
        raise ValueError(f"kind must be one of {sorted(NOISE_MODELS)}, got {kind!r}")
    if getattr(n2v_model.config, "probabilistic", False):
        raise ValueError("n2v_model must be a plain N2V/N2V2 model (config.probabilistic=False) to bootstrap from")
    if not 0 <= clip_percent < 50:
        raise ValueError(f"clip_percent must be in [0, 50), got {clip_percent!r}")
    images = [images] if isinstance(images, np.ndarray) else list(images)
    if not images:
        raise ValueError("images: no images given")
    signal, observation = [], []
    for img in images:
        img = np.asarray(img, np.float32)
        signal.append(n2v_model.predict(img, axes, n_tiles=n_tiles, tta=tta).ravel())
        observation.append(img.ravel())
    signal, observation = np.concatenate(signal), np.concatenate(observation)
    lo, hi = np.percentile(signal, [clip_percent, 100 - clip_percent])
    keep = (signal >= lo) & (signal <= hi)
    return NOISE_MODELS[kind].fit(signal[keep], observation[keep], **fit_kwargs)
