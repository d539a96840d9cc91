"""Why structN2V + N2V2 trails structN2V: one component at a time, several seeds (issue 15, item 3).

The 2D set and budget of ``bench_structn2v.py`` (horizontally correlated noise on camera, 1x9 mask along X, U-Net
depth 2 / 32 filters, batch 16, 64x64, 0.198 % masked, Adam 4e-4, 1000 steps in 10 epochs; ``--n-dim 3``: its 3D
set, 1x9x1 mask along Y, 16x32x32 patches). Each variant starts from a library preset and changes the fields listed
in ``VARIANTS``; every run reports the PSNR on camera, the global
offset ``mean(prediction - clean)`` and the PSNR after ``match_mean=True``.

Usage (from the repo root)::

    nice -n 15 .venv/bin/python benchmarks/experiment_struct_n2v2.py --seeds 0 1 2 --variants sn2v_n2v2 sn2v_n2v2_fp32

Results are appended to ``benchmarks/_runs/struct_n2v2.jsonl`` (one line per run, git-ignored); a table of every
run in that file is printed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_structn2v as bs  # noqa: E402
from experiment_prediction import nyquist_power_ratio  # noqa: E402

#: variant -> (preset, extra config fields on top of the benchmark's budget and the struct mask)
VARIANTS = {
    "sn2v": ("structn2v", {}),                                                   # the benchmark's structN2V
    "sn2v_fp32": ("structn2v", dict(train_mixed_precision=None)),
    "sn2v_norecal": ("structn2v", dict(train_recalibrate_bn=False)),             # moving batch-norm statistics
    "sn2v_n2v2": ("n2v2", {}),                                                   # the benchmark's structN2V + N2V2
    "sn2v_n2v2_fp32": ("n2v2", dict(train_mixed_precision=None)),
    "sn2v_n2v2_uwocp": ("n2v2", dict(n2v_manipulator="uniform_withoutCP")),      # N2V2's net, N2V's replacement
    "sn2v_n2v2_topskip": ("n2v2", dict(skip_skipone=False)),                     # N2V2 with the top skip back
    "sn2v_n2v2_noblur": ("n2v2", dict(blurpool=False)),                          # N2V2 with max pooling
    "sn2v_median": ("structn2v", dict(n2v_manipulator="median")),                # N2V's net, N2V2's replacement
    "sn2v_local": ("structn2v", dict(n2v_struct_replacement="local")),           # hidden pixels from nearby pixels
    "sn2v_n2v2_local": ("n2v2", dict(n2v_struct_replacement="local")),
    "sn2v_local_p15": ("structn2v", dict(n2v_struct_replacement="local", n2v_perc_pix=1.5)),  # N2V's 1.5 % masked
    "sn2v_n2v2_local_p15": ("n2v2", dict(n2v_struct_replacement="local", n2v_perc_pix=1.5)),
    # the presets as they are now: local replacement and the output calibration after training
    "sn2v_cal": ("structn2v", dict(n2v_struct_replacement="local", train_calibrate_output=True)),
    "sn2v_n2v2_cal": ("n2v2", dict(n2v_struct_replacement="local", train_calibrate_output=True)),
}
#: every variant hides with the whole-patch replacement and skips the output calibration unless it says otherwise
#: (the library's defaults until 2026-12-05, with which the rows above were measured)
BASE = dict(n2v_struct_replacement="patch", train_calibrate_output=False)
OUT = bs.RUNS_DIR / "struct_n2v2.jsonl"


def run(variant: str, seed: int, data: dict, workdir: Path, steps: int = bs.STEPS, n_dim: int = 2) -> dict:
    import keras

    from n2v_tf import N2V, N2VConfig, psnr
    preset, extra = VARIANTS[variant]
    extra = dict(BASE, **extra)
    keras.utils.set_random_seed(seed)
    kw = dict(bs.PROTOCOL, n2v_patch_shape=bs.PATCH[n_dim], train_epochs=bs.EPOCHS,
              train_steps_per_epoch=steps // bs.EPOCHS, **bs.variant_kwargs("structN2V", n_dim), **extra)
    label = (variant if steps == bs.STEPS else f"{variant}@{steps}") + ("" if n_dim == 2 else f"@{n_dim}d")
    config = N2VConfig.preset(preset, data["train"], **kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, f"{label.replace('@', '_')}_s{seed}", basedir=str(workdir), overwrite=True)
    t0 = time.perf_counter()
    hist = model.train(data["train"], data["val"], verbose=0, seed=seed)
    train_s = time.perf_counter() - t0
    clean, noisy = data["test_clean"], data["test_noisy"]
    axes = "YX" if n_dim == 2 else "ZYX"
    pred = model.predict(noisy, axes)
    pred_mm = model.predict(noisy, axes, match_mean=True)
    res = dict(variant=label, seed=seed, steps=steps, n_dim=n_dim, preset=preset, extra=extra,
               psnr=psnr(clean, pred, data_range=255.0),
               psnr_match_mean=psnr(clean, pred_mm, data_range=255.0), offset=float(np.mean(pred - clean)),
               residual_lag1=bs.lag1(noisy - pred, data["axis"]), train_s=train_s,
               checker_residual=nyquist_power_ratio(noisy - pred), checker_error=nyquist_power_ratio(pred - clean),
               history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
               finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"{label} seed {seed}: {res['psnr']:.2f} dB, offset {res['offset']:+.2f}, match_mean "
          f"{res['psnr_match_mean']:.2f} dB, train {train_s:.0f} s, loss per epoch "
          f"{[round(v, 4) for v in res['history'].get('loss', [])]}", flush=True)
    return res


def rescore(data: dict, workdir: Path, n_dim: int = 2) -> None:
    """Checkerboard power of every kept ``n_dim`` model folder and of the true noise."""
    from n2v_tf import N2V
    clean, noisy = data["test_clean"], data["test_noisy"]
    print(f"true noise: checker {nyquist_power_ratio(noisy - clean):.3f}")
    for folder in sorted(workdir.iterdir()):
        if not (folder / "config.json").exists():
            continue
        model = N2V(None, folder.name, basedir=str(workdir))
        if model.config.n_dim != n_dim:
            continue
        pred = model.predict(noisy, "YX" if n_dim == 2 else "ZYX")
        print(f"{folder.name}: checker residual {nyquist_power_ratio(noisy - pred):.3f}, "
              f"error {nyquist_power_ratio(pred - clean):.3f}", flush=True)


def table(path: Path) -> str:
    rows: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["variant"], []).append(r)
    out = ["| variant | seeds | PSNR mean ± spread | per seed | offset per seed | match_mean mean |",
           "|---|---|---|---|---|---|"]
    for v, rs in rows.items():
        rs = sorted({r["seed"]: r for r in rs}.values(), key=lambda r: r["seed"])   # the latest run of each seed
        p = np.array([r["psnr"] for r in rs])
        seeds = ", ".join(str(r["seed"]) for r in rs)
        per_seed = ", ".join(f"{x:.2f}" for x in p)
        offsets = ", ".join(f"{r['offset']:+.1f}" for r in rs)
        mm = np.mean([r["psnr_match_mean"] for r in rs])
        out.append(f"| {v} | {seeds} | {p.mean():.2f} ± {np.ptp(p):.2f} | {per_seed} | {offsets} | {mm:.2f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["sn2v", "sn2v_n2v2"])
    ap.add_argument("--steps", type=int, default=bs.STEPS, help="optimiser steps per model (10 epochs)")
    ap.add_argument("--n-dim", type=int, choices=(2, 3), default=2, help="the 2D or the 3D set of bench_structn2v")
    ap.add_argument("--table", action="store_true", help="only print the table of the results file")
    ap.add_argument("--rescore", action="store_true", help="checkerboard power of the kept model folders")
    args = ap.parse_args(argv)
    workdir = bs.runs_dir() / "models_struct_n2v2"
    if args.rescore:
        rescore(bs.build_data(args.n_dim, quick=False), workdir, args.n_dim)
    elif not args.table:
        data = bs.build_data(args.n_dim, quick=False)
        workdir.mkdir(parents=True, exist_ok=True)
        for variant in args.variants:
            for seed in args.seeds:
                res = run(variant, seed, data, workdir, args.steps, args.n_dim)
                with open(OUT, "a") as f:
                    f.write(json.dumps(res) + "\n")
    print(table(OUT))


if __name__ == "__main__":
    main()
