"""Masked losses of Noise2Void.

``y_true`` is ``concat([target, mask], axis=-1)`` as produced by :class:`n2v_tf.data.N2VSequence`:
the loss is evaluated only where ``mask == 1`` (the blind-spot pixels). The functions are registered
with Keras (package ``n2v_tf``), so compiled models reload with ``keras.models.load_model``.
"""
from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

__all__ = ["LOSSES", "PN2VLoss", "loss_mae", "loss_mse", "n2v_abs", "n2v_mse", "pn2v_mmse", "pn2v_nll"]


def _split(y_true, y_pred):
    target, mask = ops.split(y_true, 2, axis=-1)
    target = ops.cast(target, y_pred.dtype)
    mask = ops.cast(mask, y_pred.dtype)
    return target, mask


@keras.saving.register_keras_serializable(package="n2v_tf")
def n2v_mse(y_true, y_pred):
    """Mean squared error over the masked (blind-spot) pixels of the batch.

    Parameters
    ----------
    y_true : tensor
        ``concat([target, mask], -1)``, shape ``(B, ..., 2*C)``.
    y_pred : tensor
        Network output, shape ``(B, ..., C)``.

    Returns
    -------
    tensor
        Scalar: ``sum(mask * (target - y_pred)**2) / sum(mask)``.

    Notes
    -----
    Because the blind-spot pixels were replaced in the input, the network cannot copy them; with
    pixel-wise independent zero-mean noise the minimiser of this loss is the expected clean signal
    (Krull et al., CVPR 2019).
    """
    target, mask = _split(y_true, y_pred)
    return ops.sum(mask * ops.square(target - y_pred)) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="n2v_tf")
def n2v_abs(y_true, y_pred):
    """Mean absolute error over the masked (blind-spot) pixels of the batch.

    Parameters
    ----------
    y_true : tensor
        ``concat([target, mask], -1)``.
    y_pred : tensor
        Network output.

    Returns
    -------
    tensor
        Scalar: ``sum(mask * |target - y_pred|) / sum(mask)``.
    """
    target, mask = _split(y_true, y_pred)
    return ops.sum(mask * ops.abs(target - y_pred)) / ops.maximum(ops.sum(mask), 1.0)


def loss_mse() -> Callable:
    """n2v-compatible factory returning :func:`n2v_mse`."""
    return n2v_mse


def loss_mae() -> Callable:
    """n2v-compatible factory returning :func:`n2v_abs`."""
    return n2v_abs


#: Loss and metric names (as in ``N2VConfig.train_loss`` and ``prepare_for_training(metrics=...)``).
LOSSES: dict[str, Callable] = {"mse": n2v_mse, "mae": n2v_abs, "abs": n2v_abs}


# --------------------------------------------------------------------------- PN2V


def pn2v_nll(y_true, y_pred, noise_model, mean: float = 0.0, std: float = 1.0, box: int | None = None):
    """PN2V loss: negative log of the sample-averaged noise-model likelihood at the masked pixels.

    Parameters
    ----------
    y_true : tensor
        ``concat([target, mask], -1)`` of normalised data, shape ``(B, ..., 2)``.
    y_pred : tensor
        ``K`` normalised signal samples per pixel, shape ``(B, ..., K)``.
    noise_model : object
        Has ``log_likelihood(observation, signal)`` in ``keras.ops`` (broadcasting), in raw intensity units.
    mean, std : float
        Normalisation of the data: samples and targets are de-normalised inside the loss.
    box : int, optional
        Side of the stratification box of the masking (:func:`n2v_tf.masking.box_size`). With it, the noise
        model is evaluated only at (a static upper bound of) the masked pixels, at most one per box, instead of
        at every pixel: K-fold less work per pixel, which makes PN2V with many samples affordable.

    Returns
    -------
    tensor
        Scalar ``-sum_i mask_i * log(1/K sum_k p(x_i | s_i^k)) / sum_i mask_i``.

    Notes
    -----
    The network's samples approximate the prior p(s) of the signal at a pixel given its
    neighbourhood (blind spot: not the pixel itself); the likelihood of the observed noisy value is
    then the Monte-Carlo average ``1/K sum_k p(x|s^k)``, computed with ``logsumexp`` for numerical
    stability (Krull et al. 2020). The masked pixels are selected with ``top_k`` on the mask, whose
    size is fixed by the tensor shape, so the loss also compiles with XLA.

    References
    ----------
    .. [1] A. Krull, T. Vičar, M. Prakash, M. Lalit, F. Jug, "Probabilistic Noise2Void: Unsupervised
       Content-Aware Denoising", Frontiers in Computer Science 2020.
    """
    target, mask = ops.split(y_true, 2, axis=-1)
    n_samples = ops.shape(y_pred)[-1]
    target = ops.reshape(ops.cast(target, y_pred.dtype), (-1,))
    mask = ops.reshape(ops.cast(mask, y_pred.dtype), (-1,))
    samples = ops.reshape(y_pred, (-1, n_samples))
    if box is not None:
        shape = ops.shape(y_true)
        n_max = shape[0]
        for side in shape[1:-1]:
            n_max = n_max * (side // box + 1)           # at most one blind spot per stratification box
        n_max = ops.minimum(n_max, ops.shape(mask)[0])
        mask, idx = ops.top_k(mask, n_max, sorted=False)
        target = ops.take(target, idx, axis=0)
        samples = ops.take(samples, idx, axis=0)
    log_p = noise_model.log_likelihood(target[:, None] * std + mean, samples * std + mean)
    log_mean_p = ops.logsumexp(log_p, axis=-1) - ops.log(ops.cast(n_samples, y_pred.dtype))
    return -ops.sum(mask * log_mean_p) / ops.maximum(ops.sum(mask), 1.0)


def pn2v_mmse(samples, observation, noise_model):
    """MMSE estimate of PN2V: the posterior mean of the signal.

    Parameters
    ----------
    samples : tensor or numpy.ndarray
        Prior samples ``(..., K)`` in raw intensity units.
    observation : tensor or numpy.ndarray
        Noisy values ``(..., 1)`` in raw units.
    noise_model : object
        Has ``log_likelihood(observation, signal)``.

    Returns
    -------
    tensor
        ``(..., 1)``: ``sum_k w_k s^k`` with ``w_k = p(x|s^k) / sum_j p(x|s^j)`` (softmax of the log-likelihoods).
    """
    weights = ops.softmax(noise_model.log_likelihood(observation, samples), axis=-1)
    return ops.sum(weights * samples, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="n2v_tf")
class PN2VLoss(keras.losses.Loss):
    """Keras loss wrapping :func:`pn2v_nll` with a noise model and the data normalisation.

    Parameters
    ----------
    noise_model : object
        Noise model with ``log_likelihood(observation, signal)``.
    mean, std : float
        Normalisation of the training data.
    box : int, optional
        Stratification box side of the masking: evaluate the noise model at the masked pixels only.
    name : str
        Loss name.
    """

    def __init__(self, noise_model, mean: float = 0.0, std: float = 1.0, box: int | None = None,
                 name: str = "pn2v_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.noise_model, self.mean, self.std = noise_model, float(mean), float(std)
        self.box = None if box is None else int(box)

    def call(self, y_true, y_pred):
        return pn2v_nll(y_true, y_pred, self.noise_model, self.mean, self.std, self.box)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "box": self.box,
                "noise_model": keras.saving.serialize_keras_object(self.noise_model)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["noise_model"] = keras.saving.deserialize_keras_object(config["noise_model"])
        return cls(**config)
