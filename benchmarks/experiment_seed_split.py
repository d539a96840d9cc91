"""Which part of a seed moves a training: the initial weights or the batches?

``bench_quality.py --seed K`` seeds everything with K (``keras.utils.set_random_seed``: the initial weights; NumPy's
global state, from which ``model.train`` draws the seed of its batches and masks).  This script trains a protocol
variant with the initial weights of one seed and the batches of another: ``--pairs 2:0 0:2`` trains with the weights
of seed 2 and the batches of seed 0, then the other way round (``K:K`` is the protocol's own run).  Each run appends
one JSON line (variant, dataset, seeds, PSNR, history, seconds) to ``--out`` and prints its PSNR; model folders go to
``--models`` (default: a temporary folder, deleted at the end).

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_seed_split.py --variant rec_n2v2 --dataset fluo3d \
        --pairs 2:0 0:2 2:3
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402
import quality_data as qd  # noqa: E402


def train_split(variant: str, ds: dict, init_seed: int, batch_seed: int, basedir: str, epochs: int,
                steps_per_epoch: int) -> dict:
    """Train ``variant`` with the weights of ``init_seed`` and the batches of ``batch_seed``; return its record."""
    X, X_val = ds["X_train"], ds["X_val"]
    config, _ = bq.make_config(variant, X, epochs, steps_per_epoch, ds["name"])
    rec = bq._train(config, f"split_{variant}_{ds['name']}_w{init_seed}_b{batch_seed}", basedir, X, X_val,
                    init_seed, batch_seed=batch_seed)
    axes = qd.spatial_axes(ds)
    res = qd.evaluate(ds, [rec["model"].predict(img, axes) for img in ds["test_noisy"]])
    return dict(variant=variant, dataset=ds["name"], init_seed=init_seed, batch_seed=batch_seed, psnr=res["psnr"],
                per_image=res["per_image"], train_time_s=rec["train_time"], history=rec["history"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="rec_n2v2", choices=sorted(bq.PRESET_VARIANTS))
    ap.add_argument("--dataset", default="fluo3d", choices=qd.DATASETS)
    ap.add_argument("--pairs", nargs="+", default=["2:0", "0:2"], help="INIT:BATCH seed pairs")
    ap.add_argument("--out", default=str(qd.RUNS_DIR / "seed_split.jsonl"))
    ap.add_argument("--models", default=None, help="keep the model folders here (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="the protocol's smoke-run schedule (quality_data.QUICK)")
    args = ap.parse_args()
    pairs = [tuple(int(v) for v in p.split(":")) for p in args.pairs]
    ds = qd.load(args.dataset)
    epochs, spe = qd.schedule(argparse.Namespace(quick=args.quick, epochs=None, steps_per_epoch=None))
    with tempfile.TemporaryDirectory() as tmp:
        for init_seed, batch_seed in pairs:
            rec = train_split(args.variant, ds, init_seed, batch_seed, args.models or tmp, epochs, spe)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{args.variant} {args.dataset}: weights of seed {init_seed}, batches of seed {batch_seed}: "
                  f"{rec['psnr']:.2f} dB ({rec['train_time_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
