"""U-Nets for N2V and N2V2 in 2D and 3D, built from Keras built-in layers only.

One rank-agnostic builder serves 2D and 3D: the layer classes come from :data:`_LAYERS`.
Layer names follow n2v 0.3.3 (``channel_0down_level_0_no_0``, ``channel_0max_0``, ...), so that
weight files written by n2v load into these networks (:func:`load_weights_h5`).

Saved models (``model.save('m.keras')``) contain no custom layer: they load with
``keras.models.load_model`` in a process that never imports ``n2v_tf``.
"""
from __future__ import annotations

import re
import warnings

import h5py
import keras
import numpy as np
from keras import layers

from .config import INITIALIZERS, MIXED_PRECISION, UPSAMPLINGS

__all__ = [
    "blur_kernel",
    "build_n2v2_unet",
    "build_n2v_unet",
    "build_unet",
    "apply_curve",
    "apply_curves",
    "calibrate_output",
    "config_receptive_field",
    "fit_curve",
    "fold_batch_norm",
    "load_weights_h5",
    "receptive_field_radius",
    "recalibrate_batch_norm",
    "resolve_mixed_precision",
]

_LAYERS = {
    2: dict(conv=layers.Conv2D, max=layers.MaxPooling2D, up=layers.UpSampling2D),
    3: dict(conv=layers.Conv3D, max=layers.MaxPooling3D, up=layers.UpSampling3D),
}


def _cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 matrix/vector instructions (the ``amx_bf16`` or ``avx512_bf16`` flag)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"amx_bf16", "avx512_bf16"} & set(line.split(":", 1)[-1].split()))
    except OSError:  # not Linux: no flags to read, float32
        pass
    return False


def resolve_mixed_precision(policy: str | None, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The precision policy a network is built with: ``policy`` itself, or for ``'auto'`` the machine's fastest.

    Parameters
    ----------
    policy : {None, 'float32', 'mixed_float16', 'mixed_bfloat16', 'auto'}
        ``N2VConfig.train_mixed_precision``.
    cpuinfo : str
        Where the CPU flags are read (Linux' ``/proc/cpuinfo``; elsewhere the CPU counts as without bfloat16).

    Returns
    -------
    str or None
        ``policy`` unless it is ``'auto'``. For ``'auto'``: with a GPU visible to TensorFlow, ``'mixed_bfloat16'``
        from compute capability 8.0 (Ampere), ``'mixed_float16'`` from 7.0, else ``None``; without a GPU,
        ``'mixed_bfloat16'`` on CPUs with AMX-BF16 or AVX512-BF16 instructions, else ``None`` (float32: CPUs without
        them emulate bfloat16 and train slower).

    Notes
    -----
    bfloat16 keeps float32's exponent range, so it needs no loss scaling; its 8-bit mantissa changes the training
    numerics, not the saved float32 weights or the float32 prediction. Measured in ``benchmarks/README.md``
    ("Mixed precision").
    """
    if policy != "auto":
        return policy
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        return "mixed_bfloat16" if tuple(cc) >= (8, 0) else "mixed_float16" if tuple(cc) >= (7, 0) else None
    return "mixed_bfloat16" if _cpu_has_bfloat16(cpuinfo) else None


def blur_kernel(n_dim: int) -> np.ndarray:
    """Normalised binomial ``[1, 2, 1]`` blur kernel of rank ``n_dim`` (N2V2's max-blur-pool)."""
    k = np.array([1.0, 2.0, 1.0])
    out = k
    for _ in range(n_dim - 1):
        out = np.multiply.outer(out, k)
    return (out / out.sum()).astype(np.float32)


def _fixed_blur(x, n_dim: int, strides: int, name: str):
    """The fixed ``[1, 2, 1]`` blur of every channel (zero 'same' padding), from built-in layers.

    A non-trainable depthwise convolution: ``DepthwiseConv2D`` in 2D (kernel layout of n2v's
    ``MaxBlurPool2D``) and, as Keras has no 3D depthwise layer, a ``Conv3D`` whose kernel is the blur on
    the channel diagonal in 3D.
    """
    channels = x.shape[-1]
    if n_dim == 2:
        blur = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, trainable=False, name=name)
        x = blur(x)
        blur.set_weights([np.repeat(blur_kernel(2)[..., None, None], channels, axis=2)])
    else:
        blur = layers.Conv3D(channels, 3, strides=strides, padding="same", use_bias=False, trainable=False, name=name)
        x = blur(x)
        kernel = np.zeros((3, 3, 3, channels, channels), np.float32)
        kernel[..., np.arange(channels), np.arange(channels)] = blur_kernel(3)[..., None]
        blur.set_weights([kernel])
    return x


def _max_blur_pool(x, n_dim: int, name: str):
    """Max-blur-pool (Zhang, ICML 2019) with built-in layers: dense 2x2 max, then the fixed blur with stride 2."""
    x = _LAYERS[n_dim]["max"](pool_size=2, strides=1, padding="same", name=name + "_maxdense")(x)
    return _fixed_blur(x, n_dim, 2, name)


def _upsample(x, n_dim: int, upsampling: str, name: str):
    """2x upsampling: nearest neighbour (n2v's), or (bi/tri)linear from built-in layers.

    Linear upsampling is nearest-neighbour upsampling followed by the fixed ``[1, 2, 1] / 4`` blur per
    axis: output pixel ``2i`` becomes ``(x[i-1] + 3 x[i]) / 4`` and ``2i+1`` becomes ``(3 x[i] + x[i+1]) / 4``,
    which is half-pixel linear interpolation (``tf.image.resize(..., 'bilinear')``, PyTorch's
    ``Upsample(mode='bilinear', align_corners=False)``) everywhere except at the outermost output pixel of
    the image, where the zero padding weighs the missing neighbour with 0. Unlike
    ``UpSampling2D(interpolation='bilinear')`` it works with dynamic image sizes and in 3D.
    """
    x = _LAYERS[n_dim]["up"](2, name=name)(x)
    if upsampling == "linear":
        x = _fixed_blur(x, n_dim, 1, name + "_linear")
    return x


def _init_args(init: str, fan_in: int) -> dict:
    """Initializer arguments of a convolution: Keras' glorot-uniform weights and zero biases (n2v's), or
    ``'fan_in_uniform'``, weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's default for convolutions,
    ``kaiming_uniform_(a=sqrt(5))``, used by CAREamics)."""
    if init == "glorot_uniform":
        return dict(kernel_initializer="glorot_uniform")
    if init == "fan_in_uniform":
        bound = 1.0 / np.sqrt(fan_in)
        return dict(kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
                    bias_initializer=keras.initializers.RandomUniform(-bound, bound))
    raise ValueError(f"init must be one of {INITIALIZERS}, got {init!r}")


def _conv_block(x, n_dim: int, n_filter: int, kern_size: int, batch_norm: bool, name: str, activation: str = "relu",
                bn_momentum: float = 0.99, init: str = "glorot_uniform", conv_bias: bool = True):
    conv = _LAYERS[n_dim]["conv"]
    init_args = _init_args(init, kern_size ** n_dim * x.shape[-1])
    if batch_norm:
        x = conv(n_filter, kern_size, padding="same", name=name, use_bias=conv_bias, **init_args)(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=name + "_bn")(x)
        return layers.Activation(activation, name=name + "_act")(x)
    return conv(n_filter, kern_size, padding="same", activation=activation, name=name, **init_args)(x)


def _unet_block(x, n_dim: int, n_depth: int, n_first: int, kern_size: int, batch_norm: bool, blurpool: bool,
                skip_skipone: bool, prefix: str, n_conv_per_depth: int = 2, wide_decoder: bool = False,
                bn_momentum: float = 0.99, upsampling: str = "nearest", init: str = "glorot_uniform",
                conv_bias: bool = True):
    """The U-Net body of n2v 0.3.3 (same layers, filter counts and names), for 2D and 3D."""
    block = dict(n_dim=n_dim, kern_size=kern_size, batch_norm=batch_norm, bn_momentum=bn_momentum, init=init,
                 conv_bias=conv_bias)
    skips = []
    for n in range(n_depth):
        for i in range(n_conv_per_depth):
            x = _conv_block(x, n_filter=n_first * 2 ** n, name=f"{prefix}down_level_{n}_no_{i}", **block)
        if not skip_skipone or n > 0:
            skips.append(x)
        if blurpool:
            x = _max_blur_pool(x, n_dim, name=f"{prefix}max_{n}")
        else:
            x = _LAYERS[n_dim]["max"](2, name=f"{prefix}max_{n}")(x)
    for i in range(n_conv_per_depth - 1):
        x = _conv_block(x, n_filter=n_first * 2 ** n_depth, name=f"{prefix}middle_{i}", **block)
    x = _conv_block(x, n_filter=n_first * 2 ** max(0, n_depth - 1), name=f"{prefix}middle_{n_conv_per_depth}", **block)
    for n in reversed(range(n_depth)):
        x = _upsample(x, n_dim, upsampling, name=f"{prefix}up_{n}")
        if not skip_skipone:
            x = layers.Concatenate(axis=-1, name=f"{prefix}skip_{n}")([x, skips[n]])
        elif n > 0:
            x = layers.Concatenate(axis=-1, name=f"{prefix}skip_{n}")([x, skips[n - 1]])
        for i in range(n_conv_per_depth - 1):
            n_filter = n_first * 2 ** n if (wide_decoder or (skip_skipone and n > 0)) else n_first
            x = _conv_block(x, n_filter=n_filter, name=f"{prefix}up_level_{n}_no_{i}", **block)
        x = _conv_block(x, n_filter=n_first * 2 ** max(0, n - 1), name=f"{prefix}up_level_{n}_no_{n_conv_per_depth}",
                        **block)
    return x


def build_unet(n_dim: int = 2, n_channel_in: int = 1, n_depth: int = 2, kern_size: int = 3, n_first: int = 32,
               batch_norm: bool = True, last_activation: str = "linear", residual: bool = False,
               blurpool: bool = False, skip_skipone: bool = False, single_net_per_channel: bool = True,
               n_out_per_channel: int = 1, n_conv_per_depth: int = 2, wide_decoder: bool = False,
               batch_norm_momentum: float = 0.99, name: str = "n2v_unet", dtype_policy: str | None = None,
               upsampling: str = "nearest", init: str = "glorot_uniform", conv_bias: bool = True) -> keras.Model:
    """Build the N2V / N2V2 U-Net for 2D or 3D images (channels last).

    Parameters
    ----------
    n_dim : int
        Number of spatial dimensions, 2 or 3.
    n_channel_in : int
        Number of image channels.
    n_depth : int
        Number of resolution levels (the input size must be divisible by ``2**n_depth``).
    kern_size : int
        Convolution kernel size (odd).
    n_first : int
        Filters of the first level, doubled per level.
    batch_norm : bool
        Batch normalisation after every convolution.
    last_activation : {'linear', 'relu'}
        Activation of the output.
    residual : bool
        Add the input to the output (N2V default of CSBDeep; N2V2 is non-residual).
    blurpool : bool
        Max-blur-pool instead of max-pool (N2V2).
    skip_skipone : bool
        Drop the top-most skip connection (N2V2).
    single_net_per_channel : bool
        One independent U-Net per channel (n2v's default). Channels are split with fixed, non-trainable
        1x1 convolutions, so no ``Lambda`` layer is needed.
    n_out_per_channel : int
        Output channels per input channel (1 for N2V).
    n_conv_per_depth : int
        Convolutions per level.
    wide_decoder : bool
        Intermediate decoder convolutions of level ``n`` get ``n_first * 2**n`` filters (CSBDeep's U-Net,
        CAREamics, n2v's N2V2 network) instead of ``n_first`` (n2v 0.3.3's N2V network, the default).
    batch_norm_momentum : float
        Momentum of the batch-normalisation moving statistics (Keras' and n2v's 0.99 by default; PyTorch's and
        CAREamics' is 0.9). It changes training only, not the layers or weights.
    name : str
        Model name.
    dtype_policy : {None, 'float32', 'mixed_float16', 'mixed_bfloat16', 'auto'}
        Keras dtype policy of the layers (mixed precision: float16/bfloat16 computation, float32 weights; ``'auto'``:
        :func:`resolve_mixed_precision`). The input and the output layers are float32 whatever the policy.
    upsampling : {'nearest', 'linear'}
        Decoder upsampling: nearest neighbour (n2v's, the default) or bilinear/trilinear, built as nearest
        upsampling plus a fixed, non-trainable ``[1, 2, 1] / 4`` blur (CAREamics upsamples bilinearly).
    init : {'glorot_uniform', 'fan_in_uniform'}
        Initialisation of the convolutions: Keras' glorot-uniform weights and zero biases (n2v's, the default), or
        weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's and CAREamics').
    conv_bias : bool
        With ``batch_norm``: whether the convolutions before the batch normalisations have a bias (n2v's, the
        default). Batch normalisation subtracts the mean of its input, so such a bias has no effect on the output
        (its gradient is zero up to rounding); without it, the batch norm's offset ``beta`` is the bias, the network
        computes the same functions, and a training step saves the bias addition and its gradient (11-17 % of a CPU
        step, ``benchmarks/README.md``). Without ``batch_norm`` every convolution keeps its bias.

    Returns
    -------
    keras.Model
        Input ``(None,)*n_dim + (n_channel_in,)``, output ``(None,)*n_dim + (n_channel_in*n_out_per_channel,)``.

    Notes
    -----
    The body replicates n2v 0.3.3's ``unet_block`` (including its filter counts in the decoder) so that
    n2v weight files map one-to-one. With ``blurpool`` each pooling is a dense 2x2 max (stride 1,
    'same') followed by a fixed binomial blur with stride 2 (Zhang 2019); with ``skip_skipone`` the
    full-resolution skip connection is removed, which suppresses the checkerboard artefacts of N2V.

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net", MICCAI 2015.
    .. [2] E. Höck, T.-O. Buchholz et al., "N2V2 - Fixing Noise2Void checkerboard artifacts with modified
       sampling strategies and a tweaked network architecture", ECCV Workshops 2022.
    .. [3] R. Zhang, "Making convolutional networks shift-invariant again", ICML 2019.

    Examples
    --------
    >>> model = build_unet(n_dim=3, n_depth=1, n_first=4, blurpool=True, skip_skipone=True)
    >>> model.output_shape
    (None, None, None, None, 1)
    """
    if dtype_policy not in MIXED_PRECISION:
        raise ValueError(f"dtype_policy must be one of {MIXED_PRECISION}, got {dtype_policy!r}")
    dtype_policy = resolve_mixed_precision(dtype_policy)
    if dtype_policy not in (None, "float32"):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(dtype_policy)  # the layers take the policy when they are created
        try:
            return build_unet(n_dim, n_channel_in, n_depth, kern_size, n_first, batch_norm, last_activation,
                              residual, blurpool, skip_skipone, single_net_per_channel, n_out_per_channel,
                              n_conv_per_depth, wide_decoder, batch_norm_momentum, name, dtype_policy=None,
                              upsampling=upsampling, init=init, conv_bias=conv_bias)
        finally:
            keras.config.set_dtype_policy(previous)
    if n_dim not in _LAYERS:
        raise ValueError(f"n_dim must be 2 or 3, got {n_dim!r}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
    if init not in INITIALIZERS:
        raise ValueError(f"init must be one of {INITIALIZERS}, got {init!r}")
    if kern_size % 2 != 1:
        raise ValueError(f"kern_size must be odd, got {kern_size!r}")
    if last_activation not in ("linear", "relu"):
        raise ValueError(f"last_activation must be 'linear' or 'relu', got {last_activation!r}")
    conv = _LAYERS[n_dim]["conv"]
    inp = keras.Input((None,) * n_dim + (n_channel_in,), name="input")
    body = dict(n_dim=n_dim, n_depth=n_depth, n_first=n_first, kern_size=kern_size, batch_norm=batch_norm,
                blurpool=blurpool, skip_skipone=skip_skipone, n_conv_per_depth=n_conv_per_depth,
                wide_decoder=wide_decoder, bn_momentum=batch_norm_momentum, upsampling=upsampling, init=init,
                conv_bias=conv_bias)
    if single_net_per_channel:
        branches = []
        for c in range(n_channel_in):
            x = inp
            if n_channel_in > 1:
                select = conv(1, 1, use_bias=False, trainable=False, name=f"channel_{c}_select")
                x = select(inp)
                onehot = np.zeros((1,) * n_dim + (n_channel_in, 1), np.float32)
                onehot[..., c, 0] = 1
                select.set_weights([onehot])
            branches.append((f"channel_{c}", x, n_out_per_channel))
    else:
        branches = [("", inp, n_channel_in * n_out_per_channel)]
    outputs = []
    for prefix, x_in, n_out in branches:
        x = _unet_block(x_in, prefix=prefix, **body)
        x = conv(n_out, 1, activation="linear", name=f"{prefix}final", dtype="float32",
                 **_init_args(init, x.shape[-1]))(x)  # mixed precision: a float32 head
        if residual:
            x = layers.Add(name=f"{prefix}residual")([x, x_in])
        outputs.append(layers.Activation(last_activation, name=f"{prefix}last_activation", dtype="float32")(x))
    out = outputs[0] if len(outputs) == 1 else layers.Concatenate(axis=-1, name="channels", dtype="float32")(outputs)
    return keras.Model(inp, out, name=name)


def build_n2v_unet(n_dim: int = 2, n_channel_in: int = 1, n_depth: int = 2, kern_size: int = 3, n_first: int = 32,
                   **kwargs) -> keras.Model:
    """Classic N2V U-Net: max-pooling, all skip connections, residual output.

    Parameters
    ----------
    n_dim, n_channel_in, n_depth, kern_size, n_first
        See :func:`build_unet`.
    **kwargs
        Further arguments of :func:`build_unet`.

    Returns
    -------
    keras.Model
    """
    kwargs.setdefault("residual", n_channel_in == 1 or not kwargs.get("single_net_per_channel", True))
    return build_unet(n_dim, n_channel_in, n_depth, kern_size, n_first, blurpool=False, skip_skipone=False, **kwargs)


def build_n2v2_unet(n_dim: int = 2, n_channel_in: int = 1, n_depth: int = 2, kern_size: int = 3, n_first: int = 32,
                    **kwargs) -> keras.Model:
    """N2V2 U-Net: max-blur-pooling, no top-most skip connection, non-residual.

    Parameters
    ----------
    n_dim, n_channel_in, n_depth, kern_size, n_first
        See :func:`build_unet`.
    **kwargs
        Further arguments of :func:`build_unet`.

    Returns
    -------
    keras.Model
    """
    return build_unet(n_dim, n_channel_in, n_depth, kern_size, n_first, blurpool=True, skip_skipone=True,
                      residual=False, **kwargs)


def receptive_field_radius(n_depth: int, kern_size: int, blurpool: bool = False, n_conv_per_depth: int = 2,
                           upsampling: str = "nearest") -> int:
    """Upper bound (pixels, per side) of the U-Net's receptive field radius at full resolution.

    Used as the tile overlap, so that tiled prediction equals untiled prediction.

    Parameters
    ----------
    n_depth, kern_size, blurpool, n_conv_per_depth, upsampling
        Architecture, see :func:`build_unet`.

    Returns
    -------
    int
    """
    half = (kern_size - 1) // 2
    r = 0
    for level in range(n_depth):  # encoder convs, pooling, and decoder convs + upsampling slack
        scale = 2 ** level
        r += 2 * n_conv_per_depth * half * scale  # down and up convolutions of this level
        r += (2 if blurpool else 1) * scale       # pooling window (+ blur)
        r += scale                                # nearest-neighbour upsampling
        if upsampling == "linear":
            r += scale                            # its 3-tap blur at this level's resolution
    r += n_conv_per_depth * half * 2 ** n_depth    # bottleneck
    return int(r)


def config_receptive_field(config) -> int:
    """:func:`receptive_field_radius` of the network an :class:`~n2v_tf.config.N2VConfig` describes."""
    return receptive_field_radius(config.unet_n_depth, config.unet_kern_size, config.blurpool,
                                  upsampling=getattr(config, "unet_upsampling", "nearest"))


def _folded_pairs(model: keras.Model) -> dict[str, layers.Layer]:
    """``{batch-norm layer name: the convolution it follows}`` for every batch norm that can be folded: channel-last,
    directly after a convolution whose output nothing else uses."""
    users: dict[str, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                op = t._keras_history.operation
                users[op.name] = users.get(op.name, 0) + 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or layer.axis not in (-1, len(layer.input.shape) - 1):
            continue
        src = layer.input._keras_history.operation
        if isinstance(src, (layers.Conv2D, layers.Conv3D)) and users.get(src.name) == 1 and src.groups == 1:
            pairs[layer.name] = src
    return pairs


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """An inference copy of ``model`` with every batch normalisation folded into the convolution before it.

    Parameters
    ----------
    model : keras.Model
        A functional network (as :func:`build_unet` makes).

    Returns
    -------
    keras.Model
        The same graph in float32 (whatever the policy of ``model``), where each folded ``BatchNormalization`` is a
        ``keras.layers.Identity`` and its convolution has the scaled kernel and shifted bias. Its predictions equal
        ``model(x, training=False)`` up to float32 rounding (up to the rounding of a mixed-precision ``model``).

    Notes
    -----
    In inference, batch normalisation is the affine map ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per
    channel, so after a convolution with kernel ``W`` and bias ``b`` it can be merged into it:
    ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``. The network then runs one
    pass less over every feature map. The copy is for prediction only: training it would not train batch norm.
    """
    pairs = _folded_pairs(model)
    if not pairs:
        return float32_copy(model)
    convs = {conv.name: bn for bn_name, conv in pairs.items() for bn in [model.get_layer(bn_name)]}

    def clone(layer):
        if layer.name in pairs:
            return layers.Identity(name=layer.name)
        config = _float32_config(layer)
        if layer.name in convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return layer(args[0]) if layer.name in pairs else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        if layer.name in pairs or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name not in convs:
            target.set_weights(layer.get_weights())
            continue
        bn = convs[layer.name]
        w = layer.get_weights()
        kernel = w[0].astype(np.float64)
        bias = w[1].astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[-1])
        n = kernel.shape[-1]
        gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else np.ones(n)
        beta = bn.beta.numpy().astype(np.float64) if bn.center else np.zeros(n)
        scale = gamma / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
        target.set_weights([(kernel * scale).astype(np.float32),
                            ((bias - bn.moving_mean.numpy()) * scale + beta).astype(np.float32)])
    return folded


def _float32_config(layer: layers.Layer) -> dict:
    config = layer.get_config()
    if "dtype" in config:
        config["dtype"] = "float32"
    return config


def float32_copy(model: keras.Model, new_variables: bool = False) -> keras.Model:
    """A copy of ``model`` (same layers, weights and names) whose layers all compute in float32: a mixed-precision
    network as float32 for prediction and export (float32 inputs, outputs and arithmetic); ``model`` itself if it
    computes in float32 already, unless ``new_variables`` asks for a copy with variables of its own."""
    if not new_variables and all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=lambda layer: layer.__class__.from_config(
        _float32_config(layer)))
    copy.set_weights(model.get_weights())
    return copy


def _fused_call(layer: layers.BatchNormalization, n_dim: int):
    import tensorflow as tf
    plain = layer.call
    data_format = "NHWC" if n_dim == 2 else "NDHWC"

    def call(inputs, training=None, mask=None):
        if mask is not None:
            return plain(inputs, training=training, mask=mask)
        dtype = inputs.dtype
        x = inputs if dtype in (tf.float32, tf.float16, tf.bfloat16) else tf.cast(inputs, tf.float32)
        n_channel = x.shape[-1]
        gamma = tf.cast(layer.gamma, tf.float32) if layer.scale else tf.ones(n_channel)
        beta = tf.cast(layer.beta, tf.float32) if layer.center else tf.zeros(n_channel)
        if not training:  # the moving statistics, as Keras' own inference computes them, in one pass
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(layer.moving_mean, tf.float32),
                variance=tf.cast(layer.moving_variance, tf.float32), epsilon=layer.epsilon, data_format=data_format,
                is_training=False)
            return tf.cast(y, dtype)
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=layer.epsilon, data_format=data_format,
                                                        is_training=True)
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        var = var * (n - 1) / tf.maximum(n, 2)  # the op returns the unbiased variance; Keras keeps the biased one
        m = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * m + tf.cast(mean, layer.moving_mean.dtype) * (1 - m))
        layer.moving_variance.assign(layer.moving_variance * m + tf.cast(var, layer.moving_variance.dtype) * (1 - m))
        return tf.cast(y, dtype)
    return call


def use_fused_batch_norm(model: keras.Model) -> int:
    """Run ``model``'s channel-last batch normalisations with TensorFlow's fused kernel (training and inference).

    Parameters
    ----------
    model : keras.Model
        A network built with the TensorFlow backend.

    Returns
    -------
    int
        Number of layers switched.

    Notes
    -----
    Keras 3 computes batch normalisation in training from separate moment, subtraction and scaling ops (and their
    gradients); TensorFlow's ``FusedBatchNormV3`` (what Keras 2, and so n2v 0.3.x, used) does it in one pass. For the
    N2V U-Net it makes a CPU training step about 30 % faster (``benchmarks/bench_speed.py``). In inference (the
    validation at the end of each epoch, an eager prediction) the same kernel applies the moving statistics in one
    pass instead of Keras' four, which makes validation about 40 % faster. Only the computation of these layer
    *instances* changes: same weights, same moving-statistics update (momentum, biased variance), the same
    inference values up to float32 rounding, and the layers stay ``keras.layers.BatchNormalization`` in saved
    models, which therefore load without ``n2v_tf``.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in model.layers:
        if (not isinstance(layer, layers.BatchNormalization) or getattr(layer, "synchronized", False)
                or getattr(layer, "renorm", False)):
            continue
        rank = len(layer.input.shape)
        if rank in (4, 5) and layer.axis in (-1, rank - 1):
            layer.call = _fused_call(layer, rank - 2)
            count += 1
    return count


def recalibrate_batch_norm(model: keras.Model, batches) -> int:
    """Set the moving statistics of every batch normalisation of ``model`` to its average batch statistics.

    Parameters
    ----------
    model : keras.Model
        A network with ``keras.layers.BatchNormalization`` layers (any dtype policy).
    batches : iterable of numpy.ndarray
        Network inputs (normalised like the training data), e.g. training patches without masking.

    Returns
    -------
    int
        Number of batches used (0 if ``model`` has no batch normalisation or ``batches`` is empty; then nothing
        changes).

    Notes
    -----
    In training, batch normalisation normalises with the statistics of each batch; prediction uses the moving
    averages, which with momentum ``m`` average the last ~``1/(1-m)`` batches of a still-changing network. This
    sets them to what the network computes with its final weights: a float32 copy of ``model`` runs every batch in
    training mode (each layer normalises with its batch statistics, as in training), and each layer's moving mean
    and variance become the averages over the batches of its batch means and (biased) batch variances, the
    population statistics of [1]_ ("precise BN" in [2]_). The weights are not changed, and the layers stay Keras'
    ``BatchNormalization``.

    References
    ----------
    .. [1] S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
       Covariate Shift", ICML 2015 (Algorithm 2).
    .. [2] Y. Wu, J. Johnson, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576, 2021.
    """
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if not bns:
        return 0
    copy = float32_copy(model, new_variables=True)  # the model's moving statistics change only at the end
    probe = keras.Model(copy.input, [copy.get_layer(layer.name).input for layer in bns])

    def moments(x):
        outs = probe(x, training=True)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]  # a single output comes back as a tensor
        return [keras.ops.moments(o, axes=tuple(range(len(o.shape) - 1))) for o in outs]

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        moments = tf.function(moments, reduce_retracing=True)
    sums, n = None, 0
    for x in batches:
        stats = [(np.asarray(m, np.float64), np.asarray(v, np.float64)) for m, v in moments(np.asarray(x, np.float32))]
        sums = stats if sums is None else [(a + m, b + v) for (a, b), (m, v) in zip(sums, stats)]
        n += 1
    for layer, (mean, var) in zip(bns, sums or []):
        layer.moving_mean.assign((mean / n).astype(np.float32))
        layer.moving_variance.assign((var / n).astype(np.float32))
    return n


def _output_heads(model: keras.Model) -> list[layers.Layer]:
    """The output convolutions of a :func:`build_unet` network (``final``, ``channel_<c>final``), in channel order."""
    heads = [layer for layer in model.layers if re.fullmatch(r"(channel_\d+)?final", layer.name)]
    n_out = int(model.output.shape[-1])
    if not heads or sum(int(h.filters) for h in heads) != n_out or not all(h.use_bias for h in heads):
        raise ValueError(f"calibrate_output: {model.name!r} is not a network of build_unet (its output convolutions "
                         f"'final' / 'channel_<c>final' with biases and {n_out} filters in all were not found)")
    return heads


def fit_curve(f: np.ndarray, t: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares continuous piecewise-linear curve ``t ~ g(f)`` with knots at quantiles of ``f``.

    Parameters
    ----------
    f, t : numpy.ndarray
        Predictions and targets, one pair per pixel (any shape, flattened).
    n_bins : int
        Segments of the curve (>= 1): its ``n_bins + 1`` knots are the quantiles ``0, 1/n_bins, ..., 1`` of ``f``
        (fewer where quantiles coincide). One segment is the straight least-squares line.

    Returns
    -------
    knots, values : numpy.ndarray
        The curve passes through ``(knots[k], values[k])``; :func:`apply_curve` evaluates it.

    Raises
    ------
    ValueError
        Fewer than two pixels per segment, or a constant ``f``.

    Notes
    -----
    ``g`` is a sum of hat functions, one per knot, whose weights solve the (tridiagonal) normal equations; the
    sums run over whole arrays (``numpy.bincount``), and each segment holds ``1 / n_bins`` of the pixels, so every
    weight is determined. For a blind-spot prediction ``f`` (it has not seen the pixel's noise) and zero-mean noise
    that is independent between pixels, the curve fitted to the noisy pixels estimates ``E[clean | f]``
    (:func:`calibrate_output` fits the straight line; Batson & Royer 2019 for the argument).
    """
    f = np.asarray(f, np.float64).ravel()
    t = np.asarray(t, np.float64).ravel()
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    if f.size < 2 * int(n_bins) or not np.ptp(f) > 1e-12 * max(float(np.abs(f).max()), 1.0):
        raise ValueError(f"no curve of {n_bins} segment(s) can be fitted to {f.size} pixel(s) (at least two per "
                         "segment are needed, with a prediction that is not constant there)")
    knots = np.unique(np.quantile(f, np.linspace(0.0, 1.0, int(n_bins) + 1)))
    m = len(knots)
    j = np.clip(np.searchsorted(knots, f, side="right") - 1, 0, m - 2)
    w = (f - knots[j]) / (knots[j + 1] - knots[j])  # weight of the right knot; 1 - w of the left one
    a = np.diag(np.bincount(j, (1 - w) ** 2, m) + np.bincount(j + 1, w ** 2, m))
    off = np.bincount(j, (1 - w) * w, m - 1)
    a += np.diag(off, 1) + np.diag(off, -1)
    b = np.bincount(j, (1 - w) * t, m) + np.bincount(j + 1, w * t, m)
    return knots, np.linalg.lstsq(a, b, rcond=None)[0]


def apply_curve(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve of :func:`fit_curve` at ``x`` (same shape, float32), continued beyond the first and
    last knot along its end segments."""
    x = np.asarray(x)
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    slope = np.diff(values) / np.diff(knots)
    return (values[j] + (x - knots[j]) * slope[j]).astype(np.float32)


def apply_curves(pred: np.ndarray, curves) -> np.ndarray:
    """``pred`` (``(..., C)``) with channel ``c`` mapped through ``curves[c] = (knots, values)`` (:func:`apply_curve`),
    float32."""
    out = np.empty(pred.shape, np.float32)
    for ch, (knots, values) in enumerate(curves):
        out[..., ch] = apply_curve(pred[..., ch], knots, values)
    return out


def calibrate_output(model: keras.Model, batches, n_out_per_channel: int = 1, residual: bool = False,
                     min_pixels: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Fit a gain and an offset per channel of a blind-spot network's output on masked data and fold them in.

    Parameters
    ----------
    model : keras.Model
        A network of :func:`build_unet` with a linear last activation (any dtype policy); its output convolutions
        are changed in place.
    batches : iterable of tuple of numpy.ndarray
        ``(X_masked, Y)`` as :func:`n2v_tf.masking.mask_batch` makes them (normalised like the training data):
        ``Y`` holds the C noisy target channels, then the C mask channels.
    n_out_per_channel : int
        Output channels per input channel (PN2V's samples; their mean is fitted, all of them are corrected alike).
    residual : bool
        The network adds its input to the output (:func:`build_unet`'s ``residual``); the input's part is left as is.
    min_pixels : int
        Fewest masked pixels per channel for a fit; with fewer, or if the prediction is constant there, nothing
        changes and :class:`ValueError` says so.

    Returns
    -------
    gains, offsets : numpy.ndarray
        Per input channel, in normalised units: the output ``f`` has become ``gain * f + offset`` (for a residual
        network, its convolutional part).

    Notes
    -----
    At a masked pixel the network sees a replacement instead of the pixel, so its prediction ``f`` carries no
    information about that pixel's noise ``n``. For noise of zero mean that is independent between pixels,
    ``E[(noisy - a f - b)^2] = E[(clean - a f - b)^2] + E[n^2]``: the least-squares fit of the noisy pixels on ``f``
    gives the gain ``a`` and offset ``b`` that minimise the error against the clean signal, with no clean data.
    A trained network predicts with ``a = 1, b = 0`` only if its training converged; after a short training, or
    from an unlucky initialisation, its output is shrunk towards the mean or shifted (measured on the quality
    protocol's trained models: gains 0.98-1.07, ``benchmarks/README.md``). This is the self-supervised loss of [1]_
    (for a function that does not see the pixel, the loss against the noisy data equals the loss against the clean
    data plus the noise variance) minimised over two parameters per channel. The fit uses a float32 copy of ``model``
    in inference mode (the network that predicts) and float64 sums; ``gain`` and ``offset`` are folded into the kernel
    and bias of the output convolutions, which stay Keras' ``Conv2D``/``Conv3D``, so saved weights predict the
    calibrated values anywhere.

    References
    ----------
    .. [1] J. Batson, L. Royer, "Noise2Self: Blind Denoising by Self-Supervision", ICML 2019.
    """
    heads = _output_heads(model)
    net = fold_batch_norm(model)
    probe = keras.Model(net.input, [net.get_layer(h.name).output for h in heads])
    n_channel = int(model.input.shape[-1])
    k = int(n_out_per_channel)
    if k * n_channel != int(model.output.shape[-1]):
        raise ValueError(f"calibrate_output: n_out_per_channel={k} does not fit {n_channel} input and "
                         f"{int(model.output.shape[-1])} output channels")
    fs, ts = [[] for _ in range(n_channel)], [[] for _ in range(n_channel)]  # per channel, at the blind spots
    for x, y in batches:
        x = np.asarray(x, np.float32)
        z = probe(x, training=False)
        z = np.concatenate([np.asarray(v) for v in (z if isinstance(z, (list, tuple)) else [z])], axis=-1)
        f = z.reshape(z.shape[:-1] + (n_channel, k)).mean(-1)
        t = np.asarray(y[..., :n_channel], np.float64) - (x if residual else 0)
        m = np.asarray(y[..., n_channel:2 * n_channel]) > 0
        for c in range(n_channel):
            fs[c].append(f[..., c][m[..., c]])
            ts[c].append(t[..., c][m[..., c]])
    gains, offsets, bad = np.ones(n_channel), np.zeros(n_channel), []
    for c in range(n_channel):
        f, t = np.concatenate(fs[c]), np.concatenate(ts[c])
        try:
            if f.size < min_pixels:
                raise ValueError
            knots, values = fit_curve(f, t, 1)  # the least-squares line
        except ValueError:
            bad.append(f"channel {c}: {f.size} masked pixel(s)")
            continue
        gains[c] = (values[1] - values[0]) / (knots[1] - knots[0])
        offsets[c] = values[0] - gains[c] * knots[0]
    if bad:
        raise ValueError(f"calibrate_output: no gain and offset can be fitted ({'; '.join(bad)}; at least "
                         f"{min_pixels} needed, with a prediction that is not constant there)")
    start = 0
    for head in heads:
        kernel, bias = head.get_weights()
        channel = (start + np.arange(head.filters)) // k
        head.set_weights([(kernel * gains[channel]).astype(kernel.dtype),
                          (bias * gains[channel] + offsets[channel]).astype(bias.dtype)])
        start += head.filters
    return gains.astype(np.float32), offsets.astype(np.float32)


# --------------------------------------------------------------------------- legacy weights

_UNET_NAME = re.compile(r"^(channel_\d+)?(down_level_\d+_no_\d+|middle_\d+|up_level_\d+_no_\d+|max_\d+)$")


def _unet_prefix(name: str) -> str | None:
    """Channel-network prefix (``'channel_0'``, or ``''`` for one shared net) of a named U-Net layer, else None."""
    m = _UNET_NAME.match(name)
    return None if m is None else (m.group(1) or "")


def _suffix(name: str) -> int:
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def _prefixes(names) -> list[str]:
    """The distinct U-Net prefixes among layer ``names``, in channel order (``''`` first)."""
    found = {p for p in map(_unet_prefix, names) if p is not None}
    return sorted(found, key=lambda p: _suffix(p) if p else -1)


def _prefix_map(net_prefixes: list[str], file_prefixes: list[str], path: str) -> dict[str, str]:
    """Network prefix -> prefix of the same U-Net in the file.

    The names agree for per-channel networks (``channel_0``, ``channel_1``, ...). n2v 0.3.x's joint network
    (``single_net_per_channel=False``) is prefixed ``channel_0`` in the file, n2v_tf's is not prefixed.
    """
    if set(net_prefixes) <= set(file_prefixes):
        return {p: p for p in net_prefixes}
    if len(net_prefixes) != len(file_prefixes):
        raise ValueError(f"{path}: the file holds {len(file_prefixes)} U-Net(s) "
                         f"({', '.join(repr(p) for p in file_prefixes) or 'none'}), the network has "
                         f"{len(net_prefixes)} (different single_net_per_channel or channels in config.json?)")
    return dict(zip(net_prefixes, file_prefixes))


def _read_h5_layers(path: str) -> tuple[dict[str, list[np.ndarray]], list[str], str]:
    """Read a Keras 2 / legacy Keras 3 ``.h5`` file: (layer -> weights, all layer names, keras version)."""
    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs["layer_names"]]
        version = g.attrs.get("keras_version", f.attrs.get("keras_version", ""))
        version = version.decode() if isinstance(version, bytes) else str(version)
        for name in names:
            wn = [w.decode() if isinstance(w, bytes) else str(w) for w in g[name].attrs["weight_names"]]
            if wn:
                out[name] = [np.asarray(g[name][w]) for w in wn]
    return out, names, version


def load_weights_h5(model: keras.Model, path: str) -> None:
    """Load a legacy ``.h5`` weight file written by n2v 0.3.x (Keras 2) or by ``n2v_tf``.

    Weights are matched by layer name. For n2v files, whose batch-norm and output layers carry
    automatic names (``batch_normalization_12``, ``conv2d_3``), these are matched in creation order:
    per channel network, the k-th batch norm belongs to the k-th named convolution.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`build_unet`.
    path : str
        The ``.h5`` file.

    Raises
    ------
    ValueError
        If the file does not fit the network (layer missing or weight shapes differ).
    """
    saved, all_names, version = _read_h5_layers(str(path))
    targets = [lay for lay in model.layers if lay.weights]
    if all(lay.name in saved for lay in targets):
        mapping = {lay.name: saved[lay.name] for lay in targets}
    else:  # n2v 0.3.x naming
        bns = sorted((n for n in saved if re.match(r"^batch_normalization(_\d+)?$", n)), key=_suffix)
        finals = sorted((n for n in saved if re.match(r"^conv[23]d(_\d+)?$", n)), key=_suffix)
        mapping = {}
        by_name = {lay.name: lay for lay in targets}
        prefix_of = {lay.name: _unet_prefix(lay.name) for lay in targets}
        prefixes = list(dict.fromkeys(p for p in prefix_of.values() if p is not None))  # channel nets, in order
        file_prefix = _prefix_map(prefixes, _prefixes(saved), str(path))
        for prefix in prefixes:
            for lay in (lay for lay in targets if prefix_of[lay.name] == prefix):  # creation order
                saved_name = file_prefix[prefix] + lay.name[len(prefix):]
                if saved_name in saved:
                    mapping[lay.name] = saved[saved_name]
                if lay.name + "_bn" in by_name:
                    if not bns:
                        raise ValueError(f"{path}: fewer batch-norm layers than the network has")
                    mapping[lay.name + "_bn"] = saved[bns.pop(0)]
            if prefix + "final" in by_name:
                if not finals:
                    raise ValueError(f"{path}: no output convolution for '{prefix}final'")
                mapping[prefix + "final"] = saved[finals.pop(0)]
    selectors = [lay for lay in targets if lay.name.endswith("_select")]
    if selectors and all(lay.name not in mapping for lay in selectors):
        # n2v 0.3.x sliced channels with a lambda layer `x[..., i:i+1]` built inside a loop: Python's late
        # binding made every channel network see the LAST channel, in training and in prediction.
        # Reproduce that so the old model predicts what it predicted in n2v, and say so.
        if version.startswith("2") and any(n.startswith("lambda") for n in all_names):
            warnings.warn(f"{path}: this multi-channel model was trained by n2v 0.3.x, whose per-channel networks all "
                          "received the last input channel (a bug of n2v's Lambda slicing). It is loaded with the "
                          "same behaviour so that it predicts as before; retrain it with n2v_tf for independent "
                          "channels.", stacklevel=3)
            for lay in selectors:
                kernel = np.zeros(lay.weights[0].shape, np.float32)
                kernel[..., -1, 0] = 1
                mapping[lay.name] = [kernel]
        else:
            for lay in selectors:
                mapping[lay.name] = [np.asarray(w) for w in lay.get_weights()]
    for lay in targets:
        if lay.name not in mapping:
            raise ValueError(f"{path}: no weights for layer '{lay.name}' of the network")
        values = mapping[lay.name]
        expected = [tuple(w.shape) for w in lay.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(f"{path}: weights of layer '{lay.name}' have shapes {[v.shape for v in values]}, "
                             f"the network expects {expected} (different architecture in config.json?)")
        lay.set_weights(values)

