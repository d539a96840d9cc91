"""Configuration of N2V / N2V2 models (n2v 0.3.3-compatible, no Keras import).

:class:`N2VConfig` keeps the data-first signature ``N2VConfig(X, **kwargs)``, the attribute
names and the defaults of the reference ``n2v`` package, so that notebooks and ``config.json``
files written by n2v 0.3.x keep working. Unlike n2v, a misspelt keyword is an error that names
the closest valid name, and validation reports every invalid field at once with its rule and value.
"""
from __future__ import annotations

import argparse
import difflib
import warnings
from typing import Any, Sequence

import numpy as np

from .io import block_slices, chunk_shape, is_lazy
from .masking import MANIPULATORS, STRUCT_REPLACEMENTS, box_size

__all__ = ["N2VConfig", "denormalize", "normalize"]


def normalize(x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """The network's input normalisation, per channel (last axis): ``(x - means) / stds``, returned as float32.

    The one formula of training batches, validation data, ``N2V.predict`` and the exported package (whose
    pre-processing is written so that bioimageio.core computes the same, see :mod:`n2v_tf.export`). With the
    float64 statistics of :meth:`N2VConfig.normalization` it is computed in float64, as bioimageio.core does, so
    that data with a tiny std (e.g. 1e-3) give the same network input in both.
    """
    return ((np.asarray(x) - means) / stds).astype(np.float32, copy=False)


def denormalize(y: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """The inverse of :func:`normalize`: ``y * stds + means``, returned as float32."""
    return (np.asarray(y) * stds + means).astype(np.float32, copy=False)


#: Accepted values of ``N2VConfig.train_mixed_precision`` (``None``: float32).
MIXED_PRECISION = (None, "float32", "mixed_float16", "mixed_bfloat16", "auto")
#: Decoder upsampling modes of the U-Net (``N2VConfig.unet_upsampling``; see :func:`n2v_tf.nets.build_unet`).
UPSAMPLINGS = ("nearest", "linear")
#: Weight initialisations of the U-Net's convolutions (``N2VConfig.unet_init``).
INITIALIZERS = ("glorot_uniform", "fan_in_uniform")


#: n2v 0.3.3's network and training (every field at n2v's value): what a ``config.json`` without the newer fields
#: was trained with, and the ``'n2v-0.3'`` preset.
N2V_033 = dict(batch_norm_momentum=0.99, unet_wide_decoder=False, unet_upsampling="nearest",
               unet_init="glorot_uniform", train_lr_schedule=None, train_mixed_precision=None,
               train_fused_batch_norm=False, unet_conv_bias=True, train_augment=False, train_restore_best=True,
               train_recalibrate_bn=False, n2v_struct_replacement="patch", train_calibrate_output=False)
#: The recommended network and training, shared by every method's preset (see ``benchmarks/README.md``, "Quality").
_RECOMMENDED = dict(batch_norm_momentum=0.9, unet_wide_decoder=True, unet_upsampling="linear",
                    unet_init="fan_in_uniform", train_lr_schedule="cosine", unet_kern_size=3, n2v_perc_pix=1.5,
                    train_loss="mse", train_restore_best=False, train_mixed_precision="auto")
#: Presets of :meth:`N2VConfig.preset` and ``n2v-tf train --preset``: field values on top of the defaults.
PRESETS = {
    "n2v": dict(_RECOMMENDED, n2v_manipulator="uniform_withCP", unet_residual=False, blurpool=False,
                skip_skipone=False),
    "n2v2": dict(_RECOMMENDED, n2v_manipulator="median", unet_residual=False, blurpool=True, skip_skipone=True),
    "structn2v": dict(_RECOMMENDED, n2v_manipulator="uniform_withCP", unet_residual=False, blurpool=False,
                      skip_skipone=False, n2v_perc_pix=0.198),
    "pn2v": dict(_RECOMMENDED, n2v_manipulator="uniform_withCP", unet_residual=False, blurpool=False,
                 skip_skipone=False, probabilistic=True, train_loss="mse", train_mixed_precision=None),
    "n2v-0.3": dict(N2V_033),
}


def _is_int(v: Any, low: int | None = None) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and (low is None or v >= low)


def _shape(a: Any) -> tuple[int, ...]:
    """The shape of an array, a lazy array (without reading it) or nested lists."""
    return tuple(int(s) for s in a.shape) if is_lazy(a) else np.shape(a)


def _lazy_sums(im: Any, n_channel: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Pixel count and per-channel sums of values and squares of a lazy array, read block by block (float64)."""
    chunks = list(chunk_shape(im) or (1,) * len(im.shape))
    chunks[-1] = int(im.shape[-1])  # whole channel axis in every block
    count, s1, s2 = 0, np.zeros(n_channel), np.zeros(n_channel)
    for block in block_slices(im.shape, chunks):
        flat = np.asarray(im[block], dtype=np.float64).reshape(-1, n_channel)
        count += len(flat)
        s1 += flat.sum(0)
        s2 += (flat ** 2).sum(0)
    return count, s1, s2


def _data_stats(X: np.ndarray | Sequence[np.ndarray]) -> tuple[int, int, list[float], list[float]]:
    """Return ``(n_dim, n_channel, means, stds)`` of an n2v patch array or a list of images.

    Lazy arrays (a lazy n2v array, or lazy images in the list) are read block by block (aligned to their chunks,
    :data:`n2v_tf.io.BLOCK_ELEMENTS` values at a time) with float64 sums; NaN/Inf values in them raise.
    """
    if is_lazy(X):
        shape = tuple(int(s) for s in X.shape)
        if len(shape) not in (4, 5):
            raise ValueError(
                f"X: expected an array with axes 'SYXC' or 'SZYXC' (4 or 5 dimensions), got shape {shape}")
        n_dim, n_channel = len(shape) - 2, shape[-1]
        count, s1, s2 = _lazy_sums(X, n_channel)
        if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
            raise ValueError("X: contains NaN or Inf values (found while computing the normalisation statistics); "
                             "remove or replace them before training")
        mean = s1 / max(count, 1)
        std = np.sqrt(np.maximum(s2 / max(count, 1) - mean ** 2, 0))
        return n_dim, n_channel, [float(m) for m in mean], [float(s) for s in std]
    if isinstance(X, np.ndarray):
        if X.ndim not in (4, 5):
            raise ValueError(
                f"X: expected an array with axes 'SYXC' or 'SZYXC' (4 or 5 dimensions), got shape {X.shape}")
        n_dim, n_channel = X.ndim - 2, X.shape[-1]
        flat = X.reshape(-1, n_channel)
        return n_dim, n_channel, [float(m) for m in flat.mean(0)], [float(s) for s in flat.std(0)]
    images = list(X)
    if len(images) == 0:
        raise ValueError("X: the list of training images is empty")
    ndims = {len(_shape(im)) for im in images}
    channels = {_shape(im)[-1] for im in images}
    if len(ndims) != 1 or ndims.pop() not in (3, 4) or len(channels) != 1:
        raise ValueError(
            "X: a list of images must hold arrays with axes 'YXC' or 'ZYXC' (channel last) of equal rank and "
            f"channel count, got shapes {[_shape(im) for im in images][:5]}")
    n_channel = channels.pop()
    n_dim = len(_shape(images[0])) - 1
    # streaming mean/var (no concatenation of possibly huge data)
    count, s1, s2 = 0, np.zeros(n_channel), np.zeros(n_channel)
    for i, im in enumerate(images):
        if is_lazy(im):
            n, t1, t2 = _lazy_sums(im, n_channel)
            if not (np.isfinite(t1).all() and np.isfinite(t2).all()):
                raise ValueError(f"X[{i}]: contains NaN or Inf values (found while computing the normalisation "
                                 "statistics); remove or replace them before training")
            count, s1, s2 = count + n, s1 + t1, s2 + t2
            continue
        flat = np.asarray(im, dtype=np.float64).reshape(-1, n_channel)
        count += len(flat)
        s1 += flat.sum(0)
        s2 += (flat ** 2).sum(0)
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean ** 2, 0))
    return n_dim, n_channel, [float(m) for m in mean], [float(s) for s in std]


class N2VConfig(argparse.Namespace):
    """Configuration of an :class:`n2v_tf.N2V` model.

    Parameters
    ----------
    X : numpy.ndarray or list of numpy.ndarray or lazy arrays, or None
        Training data, used to set ``n_dim``, the channel count and the per-channel normalisation
        (``means``/``stds``). Either an n2v patch array with axes ``SYXC`` / ``SZYXC`` or a list
        of images with axes ``YXC`` / ``ZYXC`` (sizes may differ). ``None`` or an empty array
        means that every attribute is given in ``kwargs`` (e.g. when loading ``config.json``).
        Lazy arrays (Zarr, Dask, :func:`n2v_tf.io.open_array`), as the n2v array or in the list, are read block
        by block for the statistics (float64 sums), never whole.
    **kwargs
        Overrides of the attributes below. Unknown names raise :class:`ValueError`.

    Attributes
    ----------
    means, stds : list of str
        Per-channel normalisation of the input (stored as strings, as n2v does).
    n_dim : int
        2 or 3 (set from ``X``).
    axes : str
        ``'YXC'`` or ``'ZYXC'``.
    n_channel_in, n_channel_out : int
        Channel counts (equal for N2V).
    unet_residual : bool
        Add the input to the output (default ``False``).
    unet_n_depth : int
        Number of resolution levels (default 2).
    unet_kern_size : int
        Convolution kernel size (default 5 in 2D, 3 in 3D).
    unet_n_first : int
        Filters of the first level, doubled per level (default 32).
    unet_last_activation : {'linear', 'relu'}
        Activation of the output (default ``'linear'``).
    unet_input_shape : tuple
        ``(None,) * n_dim + (n_channel_in,)``.
    train_loss : {'mse', 'mae'}
        Masked loss (default ``'mae'``, as in n2v 0.3.3).
    train_epochs, train_steps_per_epoch : int
        Defaults 100 and 400.
    train_learning_rate : float
        Adam learning rate (default 0.0004).
    train_batch_size : int
        Default 16.
    train_tensorboard : bool
        Write TensorBoard logs (default ``True``).
    train_checkpoint, train_checkpoint_last, train_checkpoint_epoch : str or None
        Weight files for the best, the last and the current epoch.
    train_reduce_lr : dict or None
        Arguments of ``keras.callbacks.ReduceLROnPlateau`` (default ``{'factor': 0.5, 'patience': 10}``), used when
        ``train_lr_schedule`` is ``None``.
    train_lr_schedule : {'cosine', None}
        ``'cosine'`` (default for new configs): the learning rate decays from ``train_learning_rate`` to 0 along a
        half cosine over the steps of each ``train`` call. ``None`` (n2v 0.3.3's, and that of every ``config.json``
        without the field): constant, reduced by ``train_reduce_lr`` on plateaus.
    batch_norm : bool
        Batch normalisation after each convolution (default ``True``).
    n2v_perc_pix : float
        Percentage of blind-spot pixels per patch (default 1.5, as in n2v; the papers use 0.198).
    n2v_patch_shape : tuple of int
        Training patch shape, divisible by ``2**unet_n_depth`` (default 64 per axis).
    n2v_manipulator : str
        Replacement strategy, one of :data:`n2v_tf.masking.MANIPULATORS` (default ``'uniform_withCP'``).
    n2v_neighborhood_radius : int
        Radius of the replacement neighbourhood (default 5).
    single_net_per_channel : bool
        One independent U-Net per channel (default ``True``).
    blurpool, skip_skipone : bool
        N2V2 architecture: max-blur-pool instead of max-pool, no top-most skip connection.
    unet_wide_decoder : bool
        Give the decoder's intermediate convolutions ``unet_n_first * 2**level`` filters, as CSBDeep's U-Net,
        CAREamics and n2v's own N2V2 network do (default ``False``: n2v 0.3.3's N2V network, whose
        intermediate decoder convolutions all have ``unet_n_first`` filters, so that its model folders load).
    batch_norm_momentum : float
        Momentum of the batch-normalisation moving statistics, in [0, 1) (default 0.99, Keras' and n2v's;
        PyTorch and CAREamics use 0.9). It changes training only: the weights load into any network.
    unet_upsampling : {'nearest', 'linear'}
        Decoder upsampling: nearest neighbour (n2v's, default) or bilinear (2D) / trilinear (3D), built from
        Keras built-in layers (see :func:`n2v_tf.nets.build_unet`).
    unet_init : {'glorot_uniform', 'fan_in_uniform'}
        Initialisation of the convolutions: Keras' glorot-uniform weights with zero biases (n2v's, default), or
        weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's and CAREamics'). Changes training only.
    train_mixed_precision : {None, 'mixed_float16', 'mixed_bfloat16', 'auto'}
        Train with mixed precision (float16/bfloat16 computation, float32 weights, loss and network output; float16
        with loss scaling); ``None``: float32. ``'auto'`` (default of new N2V configs) picks, when the network is
        built, what the machine runs fastest (:func:`n2v_tf.nets.resolve_mixed_precision`): ``'mixed_bfloat16'`` on
        GPUs of compute capability 8.0 or newer and on CPUs with bfloat16 instructions (AMX-BF16 or AVX512-BF16),
        ``'mixed_float16'`` on older GPUs from 7.0, float32 elsewhere (measured on the quality protocol: the same PSNR
        within seed noise, 2.2x faster training steps on an AMX CPU; ``benchmarks/README.md``). ``config.json`` files
        without the field and the ``'n2v-0.3'`` and ``'pn2v'`` presets (bfloat16 not measured for PN2V) keep
        ``None``. Prediction and exported models are float32 either way.
    train_fused_batch_norm : bool
        Run batch normalisation with TensorFlow's fused kernel in training and validation (same layers, weights and
        values up to rounding, see :func:`n2v_tf.nets.use_fused_batch_norm`; about 30 % faster CPU steps and 40 %
        faster validation). Default ``True`` for new configs; ``False`` in ``config.json`` files without the field
        (n2v 0.3.x, older n2v_tf) and in the ``'n2v-0.3'`` preset. Quality check over 3 seeds in
        ``benchmarks/README.md`` ("Speed").
    unet_conv_bias : bool
        With ``batch_norm``: give the convolutions before the batch normalisations a bias. Batch normalisation
        subtracts its input's mean, so that bias never changes the output; without it (default ``False`` for new
        configs) the network computes the same functions with one op and one gradient less per layer. ``True`` (n2v's
        network) in ``config.json`` files without the field and in the ``'n2v-0.3'`` preset, so old weight files
        load. Without batch norm every convolution has a bias either way.
    train_restore_best : bool
        After training, and when the folder is loaded, use the weights of the epoch with the lowest validation loss
        (``train_checkpoint``, n2v's behaviour, ``True``) or the final weights (``train_checkpoint_last``, ``False``,
        the default of new configs: with the cosine schedule the final weights are the converged ones, while the
        validation loss of a few hundred masked pixels is too noisy to pick an epoch; measured in
        ``benchmarks/README.md``). Both files are written either way. ``config.json`` files without the field (n2v
        0.3.x, older n2v_tf) and the ``'n2v-0.3'`` preset keep ``True``.
    train_recalibrate_bn : bool
        With ``batch_norm``: after training, set the moving statistics of the batch normalisations, which prediction
        uses, to the average batch statistics of the final network over up to
        :data:`n2v_tf.models.BN_RECALIBRATION_BATCHES` batches of unmasked training patches
        (:func:`n2v_tf.nets.recalibrate_batch_norm`), and save them with the weights. The moving averages of
        training follow the last few batches (momentum 0.9: about 10), and their noise shifts the whole prediction
        by a seed-dependent offset (measured on the quality protocol: +0.1 dB and less spread between seeds,
        ``benchmarks/README.md``). Costs a forward pass per batch. Default ``True`` for new configs; ``config.json``
        files without the field (n2v 0.3.x, older n2v_tf) and the ``'n2v-0.3'`` preset keep ``False``. Changes
        training only: saved weights predict as they were saved.
    train_calibrate_output : bool
        After training (and after ``train_recalibrate_bn``), fit a gain and an offset per channel of the network's
        output by least squares of the noisy validation pixels on the prediction at their blind spots (the validation
        patches masked anew until about :data:`n2v_tf.models.CALIBRATION_PIXELS` pixels are fitted), fold them into
        the output convolution and save them with the weights (:func:`n2v_tf.nets.calibrate_output`; PN2V: fitted on
        the mean of the samples, applied to every sample). The blind-spot prediction never sees its pixel's noise,
        so for pixel-wise independent, zero-mean noise this fit minimises the error against the *clean* signal: it
        undoes the shrinkage towards the mean and the offset that a short or unlucky training leaves (measured on
        the quality protocol's trained models: gains 0.98-1.07, from -0.07 to +0.37 dB per model, +0.01 to +0.13
        dB on average per method and dataset, the seed spreads of 3D N2V2 and PN2V halved or less;
        ``benchmarks/README.md``, issue 15, sixth session). Costs a few predictions of the validation patches (7-13 s
        on the protocol's data on a 2-core CPU). Needs ``unet_last_activation='linear'``. Default ``True`` for new
        configs; ``False`` in ``config.json`` files without the field (n2v 0.3.x, older n2v_tf) and in the
        ``'n2v-0.3'`` preset. Changes training only: saved weights predict as they were saved.
    train_augment : bool
        Draw every training patch in a random one of the 8 orientations of its YX plane (90-degree rotations and
        flips; patches with a non-square YX plane take the 4 that keep their shape), on the fly, so the data in
        memory are not copied 8 times as by ``N2V_DataGenerator.generate_patches(augment=True)``. Default ``False``
        (n2v 0.3.3's training; ``config.json`` files without the field are read as ``False``). Changes training only.
    structN2Vmask : list or None
        structN2V mask (odd-sided 0/1 array with ``n_dim`` dimensions), ``None`` for plain N2V.
    n2v_struct_replacement : {'local', 'patch'}
        With ``structN2Vmask``: the value a hidden pixel gets during training (:func:`n2v_tf.masking.mask_batch`).
        ``'local'``: a random pixel within ``n2v_neighborhood_radius`` outside every mask footprint, so a masked
        patch looks like an unmasked one; ``'patch'``: a random pixel of the whole patch, whose row of foreign values
        marks the blind spots, so the network can behave differently on the unmasked images it predicts
        (measured: a training whose prediction is offset by +15 grey levels, ``benchmarks/README.md``, issue 15,
        fourth session). Default ``'local'`` for new configs; ``config.json`` files without the field (n2v 0.3.x,
        older n2v_tf) and the ``'n2v-0.3'`` preset keep ``'patch'``. Changes training only.
    probabilistic : bool
        Probabilistic N2V (PN2V): the network predicts ``pn2v_samples`` samples of the signal per pixel and
        is trained with a noise model (default ``False``).
    pn2v_samples : int
        Samples per pixel of PN2V (default 800, as in the paper; fewer, e.g. 64-200, train faster on a CPU).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(8, 64, 64, 1)).astype('float32')
    >>> config = N2VConfig(X, unet_kern_size=3, train_steps_per_epoch=10)
    >>> config.n_dim, config.axes
    (2, 'YXC')
    """

    def __init__(self, X: np.ndarray | Sequence[np.ndarray] | None = None, **kwargs: Any) -> None:
        have_data = X is not None and not (isinstance(X, np.ndarray) and X.size == 0)
        if have_data:
            n_dim, n_channel, means, stds = _data_stats(X)
            kwargs.pop("n_dim", None)  # n2v ignores a user-given n_dim as well
        else:
            if "n_dim" not in kwargs:
                raise ValueError("N2VConfig: give training data X, or all attributes including 'n_dim' (as in config.json)")
            n_dim = kwargs["n_dim"]
            n_channel = kwargs.get("n_channel_in", 1)
            means, stds = ["0.0"] * n_channel, ["1.0"] * n_channel
        self.means = [str(m) for m in means]
        self.stds = [str(s) for s in stds]
        self.n_dim = n_dim
        self.axes = "ZYXC" if n_dim == 3 else "YXC"
        self.n_channel_in = int(n_channel)
        self.n_channel_out = int(n_channel)
        self.unet_residual = False
        self.unet_n_depth = 2
        self.unet_kern_size = 5 if n_dim == 2 else 3
        self.unet_n_first = 32
        self.unet_last_activation = "linear"
        self.unet_input_shape = (None,) * n_dim + (self.n_channel_in,)
        self.train_loss = "mae"
        self.train_epochs = 100
        self.train_steps_per_epoch = 400
        self.train_learning_rate = 0.0004
        self.train_batch_size = 16
        self.train_tensorboard = True
        self.train_checkpoint = "weights_best.h5"
        self.train_checkpoint_last = "weights_last.h5"
        self.train_checkpoint_epoch = "weights_now.h5"
        self.train_reduce_lr = {"factor": 0.5, "patience": 10}
        self.batch_norm = True
        self.n2v_perc_pix = 1.5
        self.n2v_patch_shape = (64,) * n_dim
        self.n2v_manipulator = "uniform_withCP"
        self.n2v_neighborhood_radius = 5
        self.single_net_per_channel = True
        self.blurpool = False
        self.skip_skipone = False
        # the recommended network for new configs (issue 15; benchmarks/README.md, "Quality"); configs loaded from
        # config.json files that lack these fields keep n2v 0.3.3's values (N2V_033, update_loaded_config)
        self.unet_wide_decoder = True
        self.batch_norm_momentum = 0.9
        self.unet_upsampling = "linear"
        self.unet_init = "fan_in_uniform"
        self.train_lr_schedule = "cosine"
        self.train_mixed_precision = "auto"
        self.train_fused_batch_norm = True
        self.unet_conv_bias = False
        self.train_augment = False
        self.train_restore_best = False
        self.train_recalibrate_bn = True
        self.train_calibrate_output = True
        self.structN2Vmask = None
        self.n2v_struct_replacement = "local"
        self.probabilistic = False
        self.pn2v_samples = 800

        unknown = [k for k in kwargs if k not in vars(self)]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, vars(self), n=1, cutoff=0.5)
                hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ValueError("N2VConfig: unknown parameter(s) " + ", ".join(hints))
        for k, v in kwargs.items():
            setattr(self, k, v)
        if isinstance(self.n2v_patch_shape, list):
            self.n2v_patch_shape = tuple(self.n2v_patch_shape)
        if isinstance(self.unet_input_shape, list):
            self.unet_input_shape = tuple(self.unet_input_shape)

    @classmethod
    def preset(cls, name: str, X: np.ndarray | Sequence[np.ndarray] | None = None, **kwargs: Any) -> "N2VConfig":
        """The recommended configuration of a method in one line.

        Parameters
        ----------
        name : {'n2v', 'n2v2', 'structn2v', 'pn2v', 'n2v-0.3'}
            ``'n2v'``, ``'n2v2'`` (median replacement, max-blur-pool, no top skip), ``'structn2v'`` (give
            ``structN2Vmask``, e.g. from :func:`n2v_tf.analysis.suggest_struct_mask`) and ``'pn2v'`` (train with a
            noise model) use the recommended network and training of :data:`PRESETS`; ``'n2v-0.3'`` is n2v 0.3.3's
            network and training.
        X : numpy.ndarray or list of numpy.ndarray or None
            Training data, as for :class:`N2VConfig`.
        **kwargs
            Further fields; they override the preset (e.g. ``train_epochs=50``).

        Returns
        -------
        N2VConfig

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype('float32')
        >>> config = N2VConfig.preset('n2v2', X, train_epochs=20)
        >>> config.blurpool, config.n2v_manipulator, config.unet_upsampling, config.train_epochs
        (True, 'median', 'linear', 20)
        """
        if name not in PRESETS:
            close = difflib.get_close_matches(str(name), PRESETS, n=1, cutoff=0.4)
            raise ValueError(f"N2VConfig.preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
                             + (f" (did you mean {close[0]!r}?)" if close else ""))
        if name == "structn2v" and kwargs.get("structN2Vmask") is None:
            raise ValueError("N2VConfig.preset('structn2v'): give structN2Vmask=..., e.g. the mask that "
                             "n2v_tf.analysis.suggest_struct_mask (or `n2v-tf analyze-noise`) finds for your noise")
        return cls(X, **{**PRESETS[name], **kwargs})

    # ------------------------------------------------------------------ validation
    def invalid_fields(self) -> dict[str, str]:
        """Return ``{field: 'rule, got value'}`` for every invalid attribute (empty if valid)."""
        bad: dict[str, str] = {}

        def check(name: str, ok: bool, rule: str) -> None:
            if not ok:
                bad[name] = f"{rule}, got {getattr(self, name)!r}"

        def floats(values: Any) -> list[float] | None:
            try:
                return [float(v) for v in values]
            except (TypeError, ValueError):
                return None

        n_dim_ok = self.n_dim in (2, 3)
        check("n_dim", n_dim_ok, "must be 2 or 3")
        nd = self.n_dim if n_dim_ok else 2
        m, s = floats(self.means), floats(self.stds)
        check("means", m is not None and len(m) == self.n_channel_in and all(np.isfinite(m)),
              "must hold one finite number per input channel")
        check("stds", s is not None and len(s) == self.n_channel_in and all(np.isfinite(v) and v > 0 for v in s),
              "must hold one positive finite number per input channel (constant data cannot be normalised)")
        check("axes", self.axes == ("ZYXC" if nd == 3 else "YXC"), "must be 'YXC' (2D) or 'ZYXC' (3D)")
        check("n_channel_in", _is_int(self.n_channel_in, 1), "must be an integer >= 1")
        check("n_channel_out", _is_int(self.n_channel_out, 1), "must be an integer >= 1")
        check("unet_residual", isinstance(self.unet_residual, bool)
              and (not self.unet_residual or self.n_channel_in == self.n_channel_out),
              "must be a bool (True needs n_channel_in == n_channel_out)")
        check("unet_n_depth", _is_int(self.unet_n_depth, 1), "must be an integer >= 1")
        check("unet_kern_size", _is_int(self.unet_kern_size, 1) and self.unet_kern_size % 2 == 1,
              "must be an odd integer >= 1")
        check("unet_n_first", _is_int(self.unet_n_first, 1), "must be an integer >= 1")
        check("unet_last_activation", self.unet_last_activation in ("linear", "relu"), "must be 'linear' or 'relu'")
        div = 2 ** self.unet_n_depth if _is_int(self.unet_n_depth, 1) else 1
        shp = self.unet_input_shape
        check("unet_input_shape", isinstance(shp, (list, tuple)) and len(shp) == nd + 1
              and shp[-1] == self.n_channel_in and all(d is None or (_is_int(d, 1) and d % div == 0) for d in shp[:-1]),
              f"must be (None,)*n_dim + (n_channel_in,) (sizes divisible by 2**unet_n_depth = {div})")
        check("train_loss", self.train_loss in ("mse", "mae"), "must be 'mse' or 'mae'")
        check("train_epochs", _is_int(self.train_epochs, 1), "must be an integer >= 1")
        check("train_steps_per_epoch", _is_int(self.train_steps_per_epoch, 1), "must be an integer >= 1")
        check("train_learning_rate", np.isscalar(self.train_learning_rate) and not isinstance(self.train_learning_rate, (str, bool))
              and float(self.train_learning_rate) > 0, "must be a number > 0")
        check("train_batch_size", _is_int(self.train_batch_size, 1), "must be an integer >= 1")
        check("train_tensorboard", isinstance(self.train_tensorboard, bool), "must be a bool")
        for name in ("train_checkpoint", "train_checkpoint_last", "train_checkpoint_epoch"):
            v = getattr(self, name)
            check(name, v is None or (isinstance(v, str) and v.endswith((".h5", ".hdf5"))),
                  "must be None or a file name ending in .h5")
        check("train_reduce_lr", self.train_reduce_lr is None or isinstance(self.train_reduce_lr, dict),
              "must be None or a dict of ReduceLROnPlateau arguments")
        check("batch_norm", isinstance(self.batch_norm, bool), "must be a bool")
        perc_ok = (np.isscalar(self.n2v_perc_pix) and not isinstance(self.n2v_perc_pix, (str, bool))
                   and 0 < float(self.n2v_perc_pix) <= 100)
        check("n2v_perc_pix", perc_ok, "must be a percentage in (0, 100]")
        ps = self.n2v_patch_shape
        ps_ok = isinstance(ps, (list, tuple)) and len(ps) == nd and all(_is_int(d, 1) and d % div == 0 for d in ps)
        check("n2v_patch_shape", ps_ok,
              f"must be {nd} positive integers divisible by 2**unet_n_depth = {div}")
        if perc_ok and ps_ok and np.prod(ps) / box_size(float(self.n2v_perc_pix), nd) ** nd < 1:
            bad["n2v_perc_pix"] = (f"is so small that no pixel of a {tuple(ps)} patch is masked "
                                   f"(box side {box_size(float(self.n2v_perc_pix), nd)}), got {self.n2v_perc_pix!r}")
        check("n2v_manipulator", self.n2v_manipulator in MANIPULATORS, f"must be one of {', '.join(MANIPULATORS)}")
        check("n2v_neighborhood_radius", _is_int(self.n2v_neighborhood_radius, 1),
              "must be an integer >= 1 (with 0 the only neighbour is the pixel itself, so a replacement would be "
              "the masked value and the network would learn the identity)")
        for name in ("single_net_per_channel", "blurpool", "skip_skipone", "unet_wide_decoder", "unet_conv_bias"):
            check(name, isinstance(getattr(self, name), bool), "must be a bool")
        check("train_fused_batch_norm", isinstance(self.train_fused_batch_norm, bool), "must be a bool")
        check("train_augment", isinstance(self.train_augment, bool), "must be a bool")
        check("train_restore_best", isinstance(self.train_restore_best, bool), "must be a bool")
        check("train_recalibrate_bn", isinstance(self.train_recalibrate_bn, bool), "must be a bool")
        check("train_calibrate_output", isinstance(self.train_calibrate_output, bool), "must be a bool")
        check("unet_upsampling", self.unet_upsampling in UPSAMPLINGS,
              "must be 'nearest' (n2v's) or 'linear' (bilinear in 2D, trilinear in 3D)")
        check("train_lr_schedule", self.train_lr_schedule in (None, "cosine"),
              "must be None (constant, with train_reduce_lr) or 'cosine' (decay to 0 over the training)")
        check("unet_init", self.unet_init in INITIALIZERS,
              "must be 'glorot_uniform' (Keras', n2v's) or 'fan_in_uniform' (PyTorch's, CAREamics')")
        check("train_mixed_precision", self.train_mixed_precision in MIXED_PRECISION,
              "must be None (float32), 'mixed_float16' (GPUs), 'mixed_bfloat16' (GPUs, TPUs and CPUs with "
              "bfloat16 instructions) or 'auto' (the fastest of these on the machine that trains)")
        m = self.batch_norm_momentum
        check("batch_norm_momentum", np.isscalar(m) and not isinstance(m, (str, bool)) and 0 <= float(m) < 1,
              "must be a number in [0, 1)")
        if self.structN2Vmask is not None:
            try:
                mask = np.asarray(self.structN2Vmask)
                ok = (mask.ndim == nd and all(x % 2 == 1 for x in mask.shape)
                      and np.isin(mask, (0, 1)).all() and (not ps_ok or all(a <= b for a, b in zip(mask.shape, ps))))
            except (TypeError, ValueError):
                ok = False
            check("structN2Vmask", ok, "must be None or a 0/1 array with n_dim dimensions, odd sides, "
                                        "not larger than n2v_patch_shape")
        check("n2v_struct_replacement", self.n2v_struct_replacement in STRUCT_REPLACEMENTS,
              f"must be one of {', '.join(repr(r) for r in STRUCT_REPLACEMENTS)}")
        check("probabilistic", isinstance(self.probabilistic, bool)
              and (not self.probabilistic or self.n_channel_in == 1),
              "must be a bool (PN2V needs a single channel)")
        check("pn2v_samples", _is_int(self.pn2v_samples, 2), "must be an integer >= 2")
        return bad

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel ``(means, stds)`` as float64 arrays (``config.json`` stores them as strings, as n2v),
        for :func:`normalize` / :func:`denormalize`."""
        return (np.array([float(m) for m in self.means], np.float64),
                np.array([float(s) for s in self.stds], np.float64))

    def is_valid(self, return_invalid: bool = False) -> bool | tuple[bool, tuple[str, ...]]:
        """n2v-compatible validity check.

        Parameters
        ----------
        return_invalid : bool
            Also return the names of the invalid attributes.

        Returns
        -------
        bool or tuple of (bool, tuple of str)
        """
        bad = self.invalid_fields()
        return (not bad, tuple(bad)) if return_invalid else not bad

    def validate(self) -> None:
        """Raise one :class:`ValueError` that lists every invalid attribute, its rule and its value."""
        bad = self.invalid_fields()
        if bad:
            raise ValueError("Invalid N2VConfig: " + "; ".join(f"{k} {v}" for k, v in bad.items()))
        if (self.blurpool or self.skip_skipone) and self.n2v_manipulator not in ("mean", "median"):
            warnings.warn("N2V2 (blurpool/skip_skipone) is meant to be used with n2v_manipulator='median' or 'mean' "
                          f"(got {self.n2v_manipulator!r})", stacklevel=2)

    def update_parameters(self, allow_new: bool = False, **kwargs: Any) -> None:
        """Set attributes; unknown names raise :class:`ValueError` unless ``allow_new``."""
        unknown = [k for k in kwargs if k not in vars(self)]
        if unknown and not allow_new:
            raise ValueError(f"N2VConfig: unknown parameter(s) {', '.join(unknown)}")
        for k, v in kwargs.items():
            setattr(self, k, v)

    @classmethod
    def update_loaded_config(cls, config: dict) -> dict:
        """Map a loaded ``config.json`` (n2v 0.3.x or ours) to constructor arguments (CSBDeep hook)."""
        config = dict(config)
        config.pop("allow_new_parameters", None)
        # folders written before this field existed (n2v 0.3.x included) were trained with this value
        for field, value in N2V_033.items():
            config.setdefault(field, value)
        return config
