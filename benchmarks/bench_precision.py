"""Mixed precision on this machine: PSNR and seconds per step of float32 vs ``mixed_bfloat16`` (and
``mixed_float16`` with ``--float16``) training on the *fluo* set of the quality protocol (quality_data.py).

The same initial weights and the same batches (seed) are used for every policy of a seed, so the PSNR
difference is the precision's, not the initialisation's. Short budget by default (300 steps).

Usage::

    nice -n 10 /work/venv/bin/python benchmarks/bench_precision.py [--steps 300] [--seeds 0 1] [--float16]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--float16", action="store_true", help="also mixed_float16 (slow on CPUs without float16 units)")
    ap.add_argument("--dataset", default="fluo")
    args = ap.parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    from n2v_tf import N2V, N2VConfig
    ds = qd.load(args.dataset)
    policies = [None, "mixed_bfloat16"] + (["mixed_float16"] if args.float16 else [])
    epochs = max(1, args.steps // args.steps_per_epoch)
    rows = []
    for seed in args.seeds:
        init = None
        for policy in policies:
            kw = qd.n2v_config_kwargs("uniform_withCP", epochs, args.steps_per_epoch)
            config = N2VConfig(ds["X_train"], **kw, train_mixed_precision=policy)
            keras.utils.set_random_seed(seed)
            model = N2V(config, f"precision_{policy}_{seed}", basedir=None)
            if init is None:
                init = model.keras_model.get_weights()
            model.keras_model.set_weights(init)
            stamps = []
            model.prepare_for_training()
            model.callbacks.append(keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter())))
            t0 = time.perf_counter()
            model.train(ds["X_train"], ds["X_val"], verbose=0, seed=seed)
            wall = time.perf_counter() - t0
            step = float(np.median(np.diff(stamps[args.steps_per_epoch:])))
            preds = [model.predict(img, "YX") for img in ds["test_noisy"]]
            ev = qd.evaluate(ds, preds)
            rows.append(dict(seed=seed, policy=policy or "float32", psnr=ev["psnr"], psnr_input=ev["psnr_input"],
                             s_per_step=step, wall_s=wall))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"# mixed precision, {args.dataset}, {args.steps} steps ({datetime.date.today()}, TF {tf.__version__}, "
          f"Keras {keras.__version__}, {os.cpu_count()} CPUs)")
    print()
    print("| policy | seed | PSNR (dB) | vs float32 (dB) | median s/step | speed-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ref = next(q for q in rows if q["seed"] == r["seed"] and q["policy"] == "float32")
        print(f"| {r['policy']} | {r['seed']} | {r['psnr']:.2f} | {r['psnr'] - ref['psnr']:+.2f} | "
              f"{r['s_per_step']:.3f} | {ref['s_per_step'] / r['s_per_step']:.2f}x |")
    out = Path(__file__).resolve().parent / "_runs" / "precision.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
