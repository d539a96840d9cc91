"""One-off experiment (issue 13): where a training step of the speed protocol's network goes inside n2v_tf.

The network of ``bench_speed.py`` (n2v 0.3.3's: depth 2, 32 filters, kernel 3, batch norm, batch 16, 64x64 patches;
n2v_tf's implementation defaults: fused batch norm, no bias before it), one mode per process::

    for m in raw tob fit_fixed fit_seq; do /work/venv/bin/python benchmarks/experiment_train_step.py $m; done
    /work/venv/bin/python benchmarks/experiment_train_step.py tob --jit          # XLA
    /work/venv/bin/python benchmarks/experiment_train_step.py tob --threads 2 1  # intra / inter op threads
    /work/venv/bin/python benchmarks/experiment_train_step.py tob --precision mixed_bfloat16
    TF_ENABLE_ONEDNN_OPTS=0 /work/venv/bin/python benchmarks/experiment_train_step.py tob

Modes: ``raw`` a bare ``tf.function`` (forward, masked MSE, backward, Adam); ``tob`` ``keras_model.train_on_batch``
on one fixed batch; ``fit_fixed`` ``fit`` on a ``tf.data`` stream of that one batch; ``fit_seq`` ``fit`` on
``N2VSequence.tf_dataset()`` (the stream ``N2V.train`` uses). Prints seconds per step (``fit``: median interval
between batches of the second epoch). ``--no-metrics`` compiles without the two masked metrics. Run the modes
alternately and repeat them: on a shared 2-vCPU host one process differs from the next by up to 40 %.
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from n2v_tf import N2V, N2VConfig, N2VSequence
from n2v_tf.losses import LOSSES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("raw", "tob", "fit_fixed", "fit_seq"))
    ap.add_argument("--jit", action="store_true")
    ap.add_argument("--no-metrics", action="store_true")
    ap.add_argument("--threads", nargs=2, type=int, metavar=("INTRA", "INTER"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"), default="float32",
                    help="train_mixed_precision of the network (float32 weights, loss and output either way)")
    a = ap.parse_args()
    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(a.threads[1])
    rng = np.random.default_rng(0)
    X = rng.normal(100, 30, (64, 64, 64, 1)).astype("float32")
    config = N2VConfig.preset("n2v-0.3", X, unet_kern_size=3, unet_n_first=32, unet_n_depth=2, train_batch_size=16,
                              n2v_patch_shape=(64, 64), n2v_perc_pix=0.198, train_loss="mse", train_tensorboard=False,
                              train_fused_batch_norm=True, unet_conv_bias=False,
                              train_mixed_precision=None if a.precision == "float32" else a.precision)
    seq = N2VSequence(X, (64, 64), batch_size=16, perc_pix=0.198, manipulator="uniform_withCP", radius=5,
                      steps_per_epoch=a.steps, means=np.array([100.0], np.float32),
                      stds=np.array([30.0], np.float32), seed=0)
    x, y = seq.batch(0, 0)
    net = N2V(config, None, None).keras_model
    metrics = [] if a.no_metrics else [LOSSES["mse"], LOSSES["mae"]]
    net.compile(optimizer=keras.optimizers.Adam(4e-4), loss=LOSSES["mse"], metrics=metrics, jit_compile=a.jit)
    if a.mode.startswith("fit"):
        stamps = []
        stamp = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
        data = seq.tf_dataset() if a.mode == "fit_seq" else tf.data.Dataset.from_tensors((x, y)).repeat()
        net.fit(data, steps_per_epoch=a.steps, epochs=2, verbose=0, callbacks=[stamp])
        s = float(np.median(np.diff(stamps[a.steps:])))
    elif a.mode == "tob":
        for _ in range(3):
            net.train_on_batch(x, y)
        t = time.perf_counter()
        for _ in range(a.steps):
            net.train_on_batch(x, y)
        s = (time.perf_counter() - t) / a.steps
    else:
        opt, loss_fn = net.optimizer, LOSSES["mse"]
        xt, yt = tf.constant(x), tf.constant(y)

        @tf.function(jit_compile=a.jit)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, net(x, training=True))
            grads = tape.gradient(loss, net.trainable_variables)
            opt.apply_gradients(zip(grads, net.trainable_variables))
            return loss

        for _ in range(3):
            step(xt, yt)
        t = time.perf_counter()
        for _ in range(a.steps):
            loss = step(xt, yt)
        loss.numpy()
        s = (time.perf_counter() - t) / a.steps
    print(f"{a.mode} {a.precision}{' jit' if a.jit else ''}{' no-metrics' if a.no_metrics else ''}"
          f"{' threads %d/%d' % tuple(a.threads) if a.threads else ''}: {s:.4f} s/step")


if __name__ == "__main__":
    main()
