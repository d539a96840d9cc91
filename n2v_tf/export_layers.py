"""Graphs of built-in Keras layers for networks that load without n2v_tf: the noise-model likelihoods and the
PN2V MMSE head.

Exported networks must load with ``keras.models.load_model`` in a process that never imports n2v_tf (``.keras``
and legacy ``.h5``) and convert to frozen TensorFlow graphs and ONNX, so nothing here is a ``Lambda`` or a custom
layer. :func:`pn2v_mmse_network` is the one MMSE head: ``N2V.predict`` of a PN2V model and the BioImage.IO package
run the same graph. The noise models (:mod:`n2v_tf.noise_models`) keep their ``log_likelihood_layers`` methods,
which call the functions here.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np

from .noise_models import _LOG_2PI

if TYPE_CHECKING:
    from .noise_models import GaussianMixtureNoiseModel, HistogramNoiseModel

__all__ = ["gmm_log_likelihood_layers", "histogram_log_likelihood_layers", "log_likelihood_layers",
           "pn2v_mmse_network", "sample_mean_layer"]

# ----------------------------------------------------------------------------------------------------------------------
# graphs of built-in Keras layers (for exported networks that load without n2v_tf)
# ----------------------------------------------------------------------------------------------------------------------

_HALLEY_TOL = 1e-7      # export: |y - log v| after the Halley iterations (float64 simulation)
_HALLEY_MAX_ITER = 40   # export: cap of the Halley iterations


class _LayerGraph:
    """Builds element-wise computations on symbolic Keras tensors from built-in layers only.

    Exported networks must load with ``keras.models.load_model`` in a process that never imports n2v_tf, in
    the ``.keras`` format and in the legacy ``.h5`` format. The latter only knows the classes of
    ``keras.layers`` (raw ``keras.ops`` nodes fail there), so everything here is a built-in layer with a
    fixed configuration or fixed, non-trainable weights: ``Rescaling`` (affine maps and constants), merge
    layers (``Add``, ``Subtract``, ``Multiply``, ``Maximum``, ``Minimum``, broadcasting size-1 axes),
    ``Activation`` (``exponential``, ``softplus``, ``softsign``, ``softmax``), ``ReLU`` (clipping),
    ``Embedding`` (table look-up at a float index, truncated to an integer) and ``Dot`` (drops the axis
    that ``Embedding`` appends). Layer names are ``<prefix>_<n>_<kind>``, unique within the prefix.

    Notes
    -----
    Keras has no logarithm layer; :meth:`neg_log` computes ``z = -log v`` for ``v > 0`` with Halley's
    iteration for ``exp(y) = v``, ``y <- y + 2 tanh((log v - y) / 2)``, written without the logarithm as
    ``z <- z - 4 softsign(q) + 2`` with ``z = -y`` and ``q = v exp(z)`` (for ``q >= 0``,
    ``2 softsign(q) - 1 = (q - 1) / (q + 1) = tanh((log v - y) / 2)``). Each step moves ``y`` by less than
    2 towards ``log v`` without overshooting, and the error ``e`` becomes about ``e**3 / 12`` once it is
    below 1, so a few steps from a rough start reach float32 precision; ``1 / v = exp(z)`` needs one layer
    more. The number of steps is chosen at export time by running the same iteration in float64 on the
    inputs the noise model can produce (:func:`_halley_iterations`).
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.count = 0
        self._ones = None

    def layer(self, cls, *args, **kwargs):
        self.count += 1
        return cls(*args, name=f"{self.prefix}_{self.count}_{cls.__name__.lower()}", **kwargs)

    def affine(self, x, scale: float, offset: float = 0.0):
        """``x * scale + offset`` (``Rescaling``)."""
        return self.layer(keras.layers.Rescaling, float(scale), float(offset))(x)

    def const(self, like, value: float):
        """A tensor of the shape of ``like`` filled with ``value``."""
        return self.affine(like, 0.0, value)

    def add(self, *xs):
        return xs[0] if len(xs) == 1 else self.layer(keras.layers.Add)(list(xs))

    def sub(self, a, b):
        return self.layer(keras.layers.Subtract)([a, b])

    def mul(self, a, b):
        return self.layer(keras.layers.Multiply)([a, b])

    def maximum(self, a, b):
        return self.layer(keras.layers.Maximum)([a, b])

    def minimum(self, a, b):
        return self.layer(keras.layers.Minimum)([a, b])

    def act(self, x, activation: str):
        return self.layer(keras.layers.Activation, activation)(x)

    def clip(self, x, high: float):
        """``clip(x, 0, high)`` (``ReLU`` with ``max_value``)."""
        return self.layer(keras.layers.ReLU, max_value=float(high))(x)

    def exp(self, x, scale: float = 1.0):
        """``exp(scale * x)``."""
        return self.act(x if scale == 1.0 else self.affine(x, scale), "exponential")

    def logaddexp(self, a, b):
        """``log(exp(a) + exp(b)) = max(a, b) + softplus(min(a, b) - max(a, b))``."""
        hi = self.maximum(a, b)
        return self.add(hi, self.act(self.sub(self.minimum(a, b), hi), "softplus"))

    def logsumexp(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = self.logaddexp(out, x)
        return out

    def neg_log(self, v, z0, n_iter: int):
        """``-log v`` (``v > 0``) by ``n_iter`` Halley steps from the guess ``z0`` (see the class Notes)."""
        z = z0
        for i in range(n_iter):
            q = self.mul(v, self.exp(z))
            if i == 0:  # only the first q can overflow (the error shrinks monotonically); softsign(inf) is NaN
                q = self.clip(q, 1e30)
            z = self.add(z, self.affine(self.act(q, "softsign"), -4.0, 2.0))
        return z

    def take(self, table: np.ndarray, index):
        """``table[floor(index)]`` for a float ``index`` in ``[0, len(table) - 1]`` (same shape as ``index``).

        ``Embedding`` truncates its float input to int32 (= floor for non-negative values) and gathers; its
        appended size-1 axis is contracted away with ``Dot`` against a ``(batch, 1)`` tensor of ones.
        """
        table = np.asarray(table, np.float32).reshape(-1, 1)
        emb = self.layer(keras.layers.Embedding, table.shape[0], 1, trainable=False)
        out = emb(index)
        emb.set_weights([table])
        if self._ones is None:
            rank = len(index.shape)
            pool = {3: keras.layers.GlobalMaxPooling1D, 4: keras.layers.GlobalMaxPooling2D,
                    5: keras.layers.GlobalMaxPooling3D}[rank]
            dense = self.layer(keras.layers.Dense, 1, kernel_initializer="zeros", bias_initializer="ones",
                               trainable=False)
            self._ones = dense(self.layer(pool)(index))
        return self.layer(keras.layers.Dot, axes=(len(out.shape) - 1, 1))([out, self._ones])


def _halley_iterations(v: np.ndarray, y0: np.ndarray, tol: float = _HALLEY_TOL,
                       max_iter: int = _HALLEY_MAX_ITER) -> int:
    """Steps of :meth:`_LayerGraph.neg_log` (float64 simulation, ``y = -z``) until ``|y - log v| <= tol`` for all
    inputs ``v`` with the start values ``y0``."""
    v = np.asarray(v, np.float64)
    target = np.log(v)
    y = np.asarray(y0, np.float64).copy()
    for n in range(max_iter + 1):
        if np.max(np.abs(y - target)) <= tol:
            return n
        q = np.minimum(v * np.exp(-y), 1e30)
        y = y + 4.0 * q / (1.0 + q) - 2.0
    return max_iter



def log_likelihood_layers(noise_model, observation, signal, name: str = "noise_model") -> keras.KerasTensor:
    """``log p(x|s)`` of an n2v_tf noise model as a graph of built-in Keras layers (symbolic tensors only).

    Computes what the noise model's ``log_likelihood`` computes, with layers that load in any Keras 3 process
    (``.keras`` and legacy ``.h5``) and convert to TensorFlow graphs and ONNX: no ``Lambda``, no n2v_tf classes.

    Parameters
    ----------
    noise_model : HistogramNoiseModel or GaussianMixtureNoiseModel
    observation : KerasTensor
        Noisy values ``x`` in raw units, shape ``(batch, ..., 1)``.
    signal : KerasTensor
        Signal samples ``s`` in raw units, shape ``(batch, ..., K)``.
    name : str
        Prefix of the layer names (unique within the model).

    Returns
    -------
    KerasTensor
        ``log p(x|s)``, shape ``(batch, ..., K)``.
    """
    return noise_model.log_likelihood_layers(observation, signal, name=name)


def histogram_log_likelihood_layers(nm: "HistogramNoiseModel", observation, signal, name: str) -> keras.KerasTensor:
    """``log p(x|s)`` as built-in Keras layers; parameters and return as :func:`log_likelihood_layers`.

    Notes
    -----
    The bin indices come from ``Embedding`` look-ups of ``floor`` tables (``Embedding`` truncates a
    float index), the densities of the two neighbouring signal rows from ``Embedding`` tables of the
    flattened ``(B, B)`` histogram (fixed, non-trainable weights). Keras has no logarithm layer, so the
    log of the interpolated density comes from Halley steps for ``exp(y) = p`` (see ``_LayerGraph``)
    started at the interpolation of the log densities, with as many steps as make the float64 iteration
    exact to 1e-7 for every pair of neighbouring rows, observation bin and 65 interpolation weights.
    """
    g = _LayerGraph(name)
    b, lo = nm.bins, nm.min_value
    dens = (nm.histogram / nm.bin_width).astype(np.float32).astype(np.float64)
    flat = dens.ravel()
    upper = np.concatenate([flat[b:], flat[-b:]])        # table[idx + b]; the padding is never read
    t = g.clip(g.affine(signal, 1.0 / nm.bin_width, -lo / nm.bin_width - 0.5), b - 1.0)
    i0 = g.take(np.minimum(np.arange(b), b - 2), t)
    f = g.sub(t, i0)
    one_minus_f = g.affine(f, -1.0, 1.0)
    u = g.clip(g.affine(g.affine(observation, 1.0, -lo), 1.0 / nm.bin_width), b - 1.0)
    j = g.take(np.arange(b), u)
    idx = g.add(g.affine(i0, b), j)
    p = g.add(g.mul(g.take(flat, idx), one_minus_f), g.mul(g.take(upper, idx), f))
    z0 = g.add(g.mul(g.take(-np.log(flat), idx), one_minus_f), g.mul(g.take(-np.log(upper), idx), f))

    fw = np.linspace(0.0, 1.0, 65)[:, None, None]
    p_np = dens[None, :-1] * (1 - fw) + dens[None, 1:] * fw
    y_np = np.log(dens[None, :-1]) * (1 - fw) + np.log(dens[None, 1:]) * fw
    return g.affine(g.neg_log(p, z0, _halley_iterations(p_np, y_np)), -1.0)


def gmm_log_likelihood_layers(nm: "GaussianMixtureNoiseModel", observation, signal, name: str) -> keras.KerasTensor:
    """``log p(x|s)`` as built-in Keras layers; parameters and return as :func:`log_likelihood_layers`.

    Notes
    -----
    The polynomials are sums of ``Rescaling`` layers of the powers of ``t``; the log-sum-exp over the
    components is folded from ``max(a, b) + softplus(min(a, b) - max(a, b))``. Keras has no logarithm
    layer, so ``log var_k(s)`` comes from Halley steps for ``exp(y) = var`` (see ``_LayerGraph``),
    started at the chord of ``log var_k`` over ``t`` in [0, 1] (``t`` clipped to [0, 1]), with as many
    steps as make the float64 iteration exact to 1e-7 for ``t`` in [-2, 3] (the signal range extended by
    twice its width below and above); ``1 / var`` is then ``exp(-y)``. The result agrees with
    :meth:`GaussianMixtureNoiseModel.log_likelihood` to float32 rounding.
    """
    g = _LayerGraph(name)
    k, c = nm.n_gaussian, nm.n_coeff
    lo, hi = nm.min_signal, nm.max_signal
    w = nm.weight
    t = g.affine(signal, 1.0 / (hi - lo), -lo / (hi - lo))
    powers = [None, t]
    for _ in range(2, c):
        powers.append(g.mul(powers[-1], t))

    def poly(coef):
        if c == 1:
            return g.const(t, coef[0])
        return g.add(g.affine(t, coef[1], coef[0]), *(g.affine(powers[i], coef[i]) for i in range(2, c)))

    offsets = [poly(w[i]) for i in range(k)]
    logits = [poly(w[2 * k + i]) for i in range(k)]
    lse = g.logsumexp(logits)
    log_alpha = [g.sub(lg, lse) for lg in logits]
    alpha = [g.exp(la) for la in log_alpha]
    centre = g.add(*(g.mul(a, m) for a, m in zip(alpha, offsets)))

    t_grid = np.linspace(-2.0, 3.0, 2001)
    terms = []
    for i in range(k):
        coef = np.exp(w[k + i])
        if c == 1:
            var = max(float(coef[0]), nm.min_sigma)
            neg_log_var, inv_var = g.const(t, -math.log(var)), g.const(t, 1.0 / var)
        else:
            var = g.maximum(poly(coef), g.const(t, nm.min_sigma))
            v_np = np.maximum(np.polynomial.polynomial.polyval(t_grid, coef), nm.min_sigma)
            y_lo, y_hi = (math.log(max(float(np.polynomial.polynomial.polyval(tt, coef)), nm.min_sigma))
                          for tt in (0.0, 1.0))
            n_iter = _halley_iterations(v_np, y_lo + (y_hi - y_lo) * np.clip(t_grid, 0.0, 1.0))
            neg_log_var = g.neg_log(var, g.affine(g.clip(t, 1.0), y_lo - y_hi, -y_lo), n_iter)
            inv_var = g.exp(neg_log_var)
        mu = g.add(g.sub(offsets[i], centre), signal)
        d = g.sub(observation, mu)
        log_normal = g.add(g.affine(neg_log_var, 0.5, -0.5 * _LOG_2PI),
                           g.affine(g.mul(g.mul(d, d), inv_var), -0.5))
        terms.append(g.add(log_alpha[i], log_normal))
    ll = g.logsumexp(terms)
    if nm.tol > 0:
        ll = g.logaddexp(ll, g.const(ll, math.log(nm.tol)))
    return ll


class _OpsLogLikelihood(keras.layers.Layer):
    """``log p(x|s)`` of a noise model that has only a ``keras.ops`` ``log_likelihood`` (prediction only, never
    saved)."""

    def __init__(self, noise_model, **kwargs):
        super().__init__(**kwargs)
        self.noise_model = noise_model

    def call(self, inputs):
        observation, signal = inputs
        return self.noise_model.log_likelihood(observation, signal)


def sample_mean_layer(n_samples: int, name: str | None = None) -> keras.layers.Dense:
    """A fixed ``Dense`` layer that averages the last axis of ``n_samples`` samples (the PN2V prior mean)."""
    return keras.layers.Dense(1, use_bias=False, trainable=False, name=name,
                              kernel_initializer=keras.initializers.Constant(1.0 / n_samples))


def pn2v_mmse_network(network, noise_model, mean: float, std: float, name: str = "pn2v_mmse",
                      with_prior: bool = False):
    """The PN2V network with its MMSE estimate inside: normalised image -> normalised MMSE estimate.

    Extends the trained PN2V U-Net (normalised input -> ``K`` normalised signal samples per pixel) with the
    noise-model likelihood of the input and the posterior mean of the samples, built from Keras built-in
    layers only, so the network loads with ``keras.models.load_model`` without n2v_tf (``.keras`` and
    legacy ``.h5``), and converts to a frozen TensorFlow graph and to ONNX.

    Parameters
    ----------
    network : keras.Model
        The PN2V U-Net (one input, one output with ``K`` channels). Its layers are reused, not copied.
    noise_model : GaussianMixtureNoiseModel or HistogramNoiseModel or object
        The noise model p(x|s) of the model (raw intensity units). Any other object with a ``keras.ops``
        ``log_likelihood(observation, signal)`` works for prediction (``N2V.predict`` runs this same network),
        through a layer that is not a built-in one: such a network cannot be exported.
    mean, std : float
        Normalisation of the model (``config.means[0]``, ``config.stds[0]``).
    name : str
        Model name and prefix of the added layers.
    with_prior : bool
        Add a second output channel: the mean of the samples (the prior mean), normalised (``N2V.predict`` uses
        both; the exported package only the MMSE estimate).

    Returns
    -------
    keras.Model
        Input as ``network``; output ``(batch, ..., 1)``: ``(mmse - mean) / std``, so the inverse
        normalisation gives the MMSE estimate in raw units, as ``N2V.predict(..., pn2v_output='mmse')``.

    Raises
    ------
    ValueError
        ``std`` is not a positive finite number (or ``mean`` not finite), or ``network`` has more than one input
        or output.

    Notes
    -----
    With samples ``s_k`` (raw units, ``s_k = std * z_k + mean``) and the noisy value ``x`` the MMSE estimate is
    ``sum_k w_k s_k`` with ``w_k = softmax_k(log p(x | s_k))``; since the weights sum to 1, its normalised
    value is ``sum_k w_k z_k``. ``log p`` is the noise model's ``log_likelihood_layers``; the softmax is an
    ``Activation`` over the sample axis and the weighted sum a fixed ``Dense`` layer of ones.

    References
    ----------
    .. [1] A. Krull, T. Vicar, M. Prakash, M. Lalit, F. Jug, "Probabilistic Noise2Void: Unsupervised
       Content-Aware Denoising", Frontiers in Computer Science 2, 2020.
    """
    mean, std = float(mean), float(std)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise ValueError(f"mean must be finite and std a positive finite number, got mean={mean!r}, std={std!r}")
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise ValueError(f"network must have one input and one output, got {len(network.inputs)} and "
                         f"{len(network.outputs)}")
    inp, samples = network.inputs[0], network.outputs[0]
    g = _LayerGraph(name)
    observation, signal = g.affine(inp, std, mean), g.affine(samples, std, mean)
    if hasattr(noise_model, "log_likelihood_layers"):
        log_p = noise_model.log_likelihood_layers(observation, signal, name=f"{name}_noise_model")
    else:
        log_p = _OpsLogLikelihood(noise_model, name=f"{name}_noise_model")([observation, signal])
    weights = g.act(log_p, "softmax")
    total = g.layer(keras.layers.Dense, 1, use_bias=False, kernel_initializer="ones", trainable=False)
    mmse = total(g.mul(weights, samples))
    if not with_prior:
        return keras.Model(inp, mmse, name=name)
    average = sample_mean_layer(samples.shape[-1], name=f"{name}_prior_mean")
    return keras.Model(inp, g.layer(keras.layers.Concatenate, axis=-1)([mmse, average(samples)]), name=name)
