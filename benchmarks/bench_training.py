"""Training-step speed on this machine: seconds per optimiser step and the share of the input pipeline.

Setting of the core issue: batch 16, 64x64 patches (2D; 3D: 16x32x32... see --n-dim), U-Net depth 2,
32 first-level filters, kernel 3, uniform_withCP at 0.198 %. The step time is measured with
``train_on_batch`` on pre-built batches (network only); the Sequence time is ``seq[i]`` (crop,
normalise, mask). Their ratio is the input pipeline's share of a step.

Usage: python benchmarks/bench_training.py [--steps 30] [--n-dim 2] [--threads N]
"""
import argparse
import datetime
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--n-dim", type=int, default=2, choices=(2, 3))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--manipulator", default="uniform_withCP")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from n2v_tf import N2VSequence, build_unet, n2v_mse

    patch = (64, 64) if args.n_dim == 2 else (16, 32, 32)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64,) + tuple(2 * p for p in patch) + (1,)).astype(np.float32)
    seq = N2VSequence(X, patch, batch_size=args.batch, perc_pix=0.198, manipulator=args.manipulator,
                      steps_per_epoch=args.steps, seed=0)
    model = build_unet(args.n_dim, 1, n_depth=2, kern_size=3, n_first=32, batch_norm=True)
    model.compile(keras.optimizers.Adam(4e-4), n2v_mse)

    t = time.perf_counter()
    batches = [seq[i] for i in range(args.steps)]
    t_seq = (time.perf_counter() - t) / args.steps
    for x, y in batches[:3]:  # warm-up (tracing)
        model.train_on_batch(x, y)
    t = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
    t_step = (time.perf_counter() - t) / args.steps
    # end-to-end: fit() drawing from the Sequence (per-batch wall time, first 3 batches = tracing, dropped)
    stamps = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
    model.fit(seq, epochs=1, verbose=0, callbacks=[timer])
    t_fit = float(np.median(np.diff(stamps[2:])))

    print(f"# n2v_tf training speed ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__})")
    print()
    print("| setting | network step (s) | Sequence batch (s) | Sequence share | fit() per step (s) |")
    print("|---|---|---|---|---|")
    print(f"| {args.n_dim}D batch {args.batch} x {'x'.join(map(str, patch))}, depth 2, 32 filters, k3, "
          f"{args.manipulator} | {t_step:.3f} | {t_seq:.4f} | {100 * t_seq / t_step:.1f} % | {t_fit:.3f} |")


if __name__ == "__main__":
    main()
