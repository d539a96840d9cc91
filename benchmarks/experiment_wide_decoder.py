"""Experiment (issue 2): does the decoder width explain the gap to CAREamics?

Same protocol as ``bench_quality.py`` (N2V uniform_withCP, 1000 steps, best-validation weights), but with
``unet_wide_decoder=True``: the intermediate decoder convolution of level n gets ``32 * 2**n`` filters
(CSBDeep's U-Net and CAREamics) instead of 32 (n2v 0.3.3's N2V network). Upsampling stays nearest-neighbour.

Usage (repo root)::

    nice -n 10 .venv/bin/python benchmarks/experiment_wide_decoder.py fluo [natural] [--seed 0]

Writes ``benchmarks/_runs/experiment_wide_decoder_<dataset>_seed<k>.json`` and prints one line per dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_data as qd  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", choices=qd.DATASETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--narrow", action="store_true", help="control run: n2v's narrow decoder with this seed")
    args = ap.parse_args(argv)
    import keras
    from n2v_tf import N2V, N2VConfig
    wide = not args.narrow
    for name in args.datasets:
        keras.utils.set_random_seed(args.seed)
        ds = qd.load(name)
        kw = qd.n2v_config_kwargs("uniform_withCP", 10, 100)
        config = N2VConfig(ds["X_train"], unet_wide_decoder=wide, **kw)
        tag = f"{'wide' if wide else 'narrow'}_decoder_{name}_seed{args.seed}"
        model = N2V(config, f"experiment_{tag}", basedir=str(HERE / "_runs" / "models"), overwrite=True)
        t0 = time.perf_counter()
        hist = model.train(ds["X_train"], ds["X_val"], verbose=2)
        train_time = time.perf_counter() - t0
        model.load_weights("weights_best.h5")
        preds, pred_time = qd.predict_timed(lambda im: model.predict(im, "YX"), ds)
        res = qd.run_record(ds, preds, train_time=train_time, pred_time=pred_time, epochs=10, steps_per_epoch=100,
                            batch_size=16, n_params=int(model.keras_model.count_params()), seed=args.seed,
                            wide_decoder=wide, val_loss=[float(v) for v in hist.history["val_loss"]])
        (HERE / "_runs" / f"experiment_{tag}.json").write_text(json.dumps(res, indent=2))
        print(tag, json.dumps({k: v for k, v in res.items() if "psnr" in k or k in ("n_params", "train_time_s")}))


if __name__ == "__main__":
    main()
