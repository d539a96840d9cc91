"""One-off experiment (issue 13, item 2): does the data format change the speed of the protocol's network on CPU?

A plain Keras U-Net with the speed protocol's shape (depth 2, 32 first filters, kernel 3, batch norm, ReLU, 2x2 max
pooling, nearest upsampling, concatenating skips, linear 1x1 output; no conv bias before batch norm) is built with
``data_format="channels_last"`` (NHWC, what n2v_tf uses) or ``"channels_first"`` (NCHW), one format per process::

    for f in channels_last channels_first channels_last channels_first; do
        /work/venv/bin/python benchmarks/experiment_data_format.py $f; done

Prints the seconds per ``train_on_batch`` step (batch 16 of 64x64 patches, MSE, Adam) and the seconds of one
``predict_on_batch`` of a 1x512x512 image, after warm-up. The inputs of both formats hold the same numbers.

Result (2026-12-03, 2 vCPU AMD EPYC, AVX2, TensorFlow 2.21.0, Keras 3.15.1): ``channels_last`` 1.05-1.15 s/step,
512x512 prediction 1.07-1.29 s; ``channels_first`` cannot train on CPU: TensorFlow's CPU kernel for the filter
gradient refuses it (``Conv2DCustomBackpropFilterOp only supports NHWC``). So NHWC stays the only layout.
"""
import argparse
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_worker import timed  # noqa: E402  (imports neither TensorFlow nor torch)


def conv_bn(x, n, fmt):
    axis = -1 if fmt == "channels_last" else 1
    x = layers.Conv2D(n, 3, padding="same", use_bias=False, data_format=fmt)(x)
    x = layers.BatchNormalization(axis=axis)(x)
    return layers.Activation("relu")(x)


def unet(fmt: str, depth: int = 2, n_first: int = 32) -> keras.Model:
    axis = -1 if fmt == "channels_last" else 1
    inp = keras.Input((None, None, 1) if fmt == "channels_last" else (1, None, None))
    x, skips = inp, []
    for d in range(depth):
        x = conv_bn(conv_bn(x, n_first * 2 ** d, fmt), n_first * 2 ** d, fmt)
        skips.append(x)
        x = layers.MaxPooling2D(2, data_format=fmt)(x)
    x = conv_bn(conv_bn(x, n_first * 2 ** depth, fmt), n_first * 2 ** (depth - 1), fmt)
    for d in reversed(range(depth)):
        x = layers.UpSampling2D(2, data_format=fmt)(x)
        x = layers.Concatenate(axis=axis)([x, skips[d]])
        x = conv_bn(conv_bn(x, n_first * 2 ** d, fmt), n_first * 2 ** max(0, d - 1), fmt)
    out = layers.Conv2D(1, 1, data_format=fmt)(x)
    return keras.Model(inp, out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("format", choices=("channels_last", "channels_first"))
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (16, 64, 64, 1)).astype("float32")
    img = rng.normal(0, 1, (1, 512, 512, 1)).astype("float32")
    if a.format == "channels_first":
        x, img = x.transpose(0, 3, 1, 2).copy(), img.transpose(0, 3, 1, 2).copy()
    keras.utils.set_random_seed(0)
    net = unet(a.format)
    net.compile(optimizer=keras.optimizers.Adam(4e-4), loss="mse")
    step = timed(lambda: net.train_on_batch(x, x), a.steps, warmup=3)
    pred = timed(lambda: net.predict_on_batch(img), 5, warmup=2)
    print(f"{a.format}: train_on_batch {step:.3f} s/step, predict 512x512 {pred:.3f} s ({net.count_params():,} params)")


if __name__ == "__main__":
    main()
