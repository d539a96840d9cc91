"""Bootstrapped PN2V with more signal samples per pixel (issue 15; paired with ``pn2v_boot_tta``, 200 samples).

Reuses the N2V stage of ``bench_quality.py --only pn2v_boot_tta/fluo`` (folders
``n2v_tf_pn2v_boot_tta_fluo_seed<k>_n2v`` in ``benchmarks/_runs/models``, not retrained), bootstraps the same GMM from
its TTA prediction (same fit seed), and trains PN2V with the protocol's budget and ``--samples`` samples per pixel
(the 'pn2v' preset's default is the paper's 800; the protocol's ``--pn2v-samples`` default is 200). Scores the *fluo*
test image: MMSE, MMSE with ``tta=True``, prior mean.

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_pn2v_samples.py --seeds 0 --samples 800
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402
from bench_quality import pn2v_bootstrap  # noqa: E402


def run(seed: int, samples: int, models: Path) -> dict:
    ds = qd.load("fluo")
    X, X_val, axes = ds["X_train"], ds["X_val"], qd.spatial_axes(ds)
    budget = qd.budget_kwargs(*qd.schedule(argparse.Namespace(quick=False, epochs=None, steps_per_epoch=None)),
                              "fluo")
    name = f"n2v_tf_pn2v_s{samples}_fluo_seed{seed}"
    out = pn2v_bootstrap(X, X_val, qd.train_images("fluo"), axes, budget, name=name, basedir=str(models), seed=seed,
                         samples=samples, bootstrap_tta=True, n2v_name=f"n2v_tf_pn2v_boot_tta_fluo_seed{seed}_n2v",
                         reuse_n2v=True, verbose=0)
    train_s = out["pn2v_train_s"]
    model = out["pn2v"]["model"]
    tiles = (1, 2) if samples > 400 else None
    res = dict(seed=seed, samples=samples, train_s=train_s, name=name)
    for key, kw in (("mmse", {}), ("mmse tta", dict(tta=True)), ("prior", dict(pn2v_output="prior_mean"))):
        preds = [model.predict(img, axes, n_tiles=tiles, **kw) for img in ds["test_noisy"]]
        res[key] = qd.evaluate(ds, preds)["psnr"]
    res["loss"] = out["pn2v"]["history"]["loss"]
    res["val_loss"] = out["pn2v"]["history"]["val_loss"]
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--models", type=Path, default=qd.RUNS_DIR / "models")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    print("| run | seed | MMSE | MMSE tta | prior mean | train s |\n|---|---|---|---|---|---|", flush=True)
    for seed in args.seeds:
        r = run(seed, args.samples, args.models)
        rows.append(r)
        print(f"| {r['name']} | {seed} | {r['mmse']:.2f} | {r['mmse tta']:.2f} | {r['prior']:.2f} | "
              f"{r['train_s']:.0f} |", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(f"| mean | | {np.mean([r['mmse'] for r in rows]):.2f} | {np.mean([r['mmse tta'] for r in rows]):.2f} | "
          f"{np.mean([r['prior'] for r in rows]):.2f} | |")


if __name__ == "__main__":
    main()
