"""One-off check (issue 13): does training batch norm with TensorFlow's fused kernel (``nets.use_fused_batch_norm``,
``N2VConfig(train_fused_batch_norm=True)``) change the quality? The *fluo* protocol (quality_data.py), N2V uniform_withCP, the
same initial weights and batches per seed, fused vs Keras' own batch-norm ops.

Usage: nice -n 10 /work/venv/bin/python benchmarks/experiment_fused_bn.py [--steps 300] [--seeds 0 1]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    import keras

    from n2v_tf import N2V, N2VConfig
    ds = qd.load("fluo")
    rows = []
    for seed in args.seeds:
        init = None
        for fused in (True, False):
            config = N2VConfig(ds["X_train"], **qd.n2v_config_kwargs("uniform_withCP", max(1, args.steps // 50), 50),
                               train_fused_batch_norm=fused)
            keras.utils.set_random_seed(seed)
            model = N2V(config, "fused_bn", basedir=None)
            init = model.keras_model.get_weights() if init is None else init
            model.keras_model.set_weights(init)
            model.train(ds["X_train"], ds["X_val"], verbose=0, seed=seed)
            ev = qd.evaluate(ds, [model.predict(img, "YX") for img in ds["test_noisy"]])
            rows.append(dict(seed=seed, fused=fused, psnr=ev["psnr"]))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| seed | fused BN (dB) | Keras BN ops (dB) | difference |\n|---|---|---|---|")
    for seed in args.seeds:
        a, b = (next(r["psnr"] for r in rows if r["seed"] == seed and r["fused"] is f) for f in (True, False))
        print(f"| {seed} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")


if __name__ == "__main__":
    main()
