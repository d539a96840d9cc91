"""Masked losses of Noise2Void.

``y_true`` is ``concat([target, mask], axis=-1)`` as produced by :class:`n2v_tf.data.N2VSequence`:
the loss is evaluated only where ``mask == 1`` (the blind-spot pixels). The functions are registered
with Keras (package ``n2v_tf``), so compiled models reload with ``keras.models.load_model``.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import ops

__all__ = ["n2v_mse", "n2v_abs", "loss_mse", "loss_mae", "LOSSES"]


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
