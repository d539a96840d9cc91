"""Prediction-time options and checkerboard artefacts on the trained models of the quality protocol (issue 15).

For every n2v_tf model folder that ``bench_quality.py`` left in ``benchmarks/_runs/models`` (selected with
``--variants``/``--datasets``; N2V models, not PN2V), predicts the protocol's test images with

- ``plain``: the best-validation weights (``weights_best.h5``; the protocol scores them for configs with
  ``train_restore_best=True``, the last weights otherwise);
- ``tta``: ``model.predict(..., tta=True)`` (8 flips/90-degree rotations in 2D, averaged);
- ``last``: the last epoch's weights (``weights_last.h5``; what configs with ``train_restore_best=False`` predict);
- ``last, tta``: the same with ``tta=True``;
- ``last, mean`` / ``last, tta, mean``: the last weights with ``match_mean=True`` (each prediction shifted to the
  mean of its noisy input), without and with ``tta=True``;
- ``best+last``: the mean of the best and the last weights' predictions (a two-checkpoint ensemble);
- ``best+last, tta``: the same with ``tta=True`` for both;

and prints the PSNR of each, its prediction time, and the *checkerboard power* of the plain prediction: the
mean spectral power of the residual (noisy - denoised) on the Nyquist lines (period 2 pixels along any axis)
divided by its mean power over all frequencies.  A residual that is only the (white) noise gives about 1; the
2-pixel-period pattern that strided pooling/upsampling can leave in N2V predictions raises it (an error image
``denoised - clean`` of the same pattern is reported as well: its ratio grows with any periodic structure).

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_prediction.py --variants rec_n2v rec_n2v2 --datasets natural fluo
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def nyquist_power_ratio(x: np.ndarray) -> float:
    """Mean |FFT|^2 on the Nyquist lines (frequency 1/2 along any axis) over the mean |FFT|^2 of ``x``.

    ``x`` is cropped to even sizes and its mean removed.  About 1 for white noise; a 2-pixel periodic pattern
    (checkerboard, stripes of period 2) raises it.
    """
    x = np.asarray(x, np.float64)
    x = x[tuple(slice(0, s - s % 2) for s in x.shape)]
    p = np.abs(np.fft.fftn(x - x.mean())) ** 2
    on = np.zeros(p.shape, bool)
    for ax, s in enumerate(p.shape):
        idx = [slice(None)] * p.ndim
        idx[ax] = s // 2
        on[tuple(idx)] = True
    return float(p[on].mean() / p.mean())


def _predict_all(model, ds, axes, tta, match_mean=False):
    t0 = time.perf_counter()
    preds = [np.asarray(model.predict(img, axes, tta=tta, match_mean=match_mean), np.float32)
             for img in ds["test_noisy"]]
    return preds, time.perf_counter() - t0


def evaluate_folder(folder: Path, ds: dict) -> dict:
    from n2v_tf import N2V
    model = N2V(None, folder.name, basedir=str(folder.parent))
    if model.config.probabilistic:
        raise ValueError(f"{folder} is a PN2V model")
    model.load_weights("weights_best.h5")  # 'plain' is the best-validation checkpoint, whatever train_restore_best
    axes = qd.spatial_axes(ds)
    out = {}
    plain, out["plain_s"] = _predict_all(model, ds, axes, False)
    tta, out["tta_s"] = _predict_all(model, ds, axes, True)
    model.keras_model.load_weights(str(folder / "weights_last.h5"))
    last, _ = _predict_all(model, ds, axes, False)
    last_tta, _ = _predict_all(model, ds, axes, True)
    last_mm, _ = _predict_all(model, ds, axes, False, True)
    last_tta_mm, _ = _predict_all(model, ds, axes, True, True)
    for key, preds in (("plain", plain), ("tta", tta), ("last", last), ("last, tta", last_tta),
                       ("last, mean", last_mm), ("last, tta, mean", last_tta_mm),
                       ("best+last", [(a + b) / 2 for a, b in zip(plain, last)]),
                       ("best+last, tta", [(a + b) / 2 for a, b in zip(tta, last_tta)])):
        ev = qd.evaluate(ds, preds)
        out[key] = ev["psnr"]
        out[key + " per image"] = {r["image"]: r["psnr"] for r in ev["per_image"]}
    out["checker_residual"] = float(np.mean([nyquist_power_ratio(n - p) for n, p in zip(ds["test_noisy"], plain)]))
    out["checker_error"] = float(np.mean([nyquist_power_ratio(p - c) for p, c in zip(plain, ds["test_clean"])]))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["rec_n2v", "rec_n2v2"])
    ap.add_argument("--datasets", nargs="+", default=["natural", "fluo"], choices=list(qd.DATASETS))
    ap.add_argument("--models", type=Path, default=qd.RUNS_DIR / "models")
    ap.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    args = ap.parse_args(argv)
    rows = []
    print("| model | PSNR plain | tta | last | last, tta | best+last | best+last, tta | plain s | tta s "
          "| checker residual | checker error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dname in args.datasets:
        ds = qd.load(dname)
        for variant in args.variants:
            for folder in sorted(args.models.glob(f"n2v_tf_{variant}_{dname}_seed*")):
                if not (folder / "config.json").exists():
                    continue
                r = evaluate_folder(folder, ds)
                r.update(model=folder.name, variant=variant, dataset=dname)
                rows.append(r)
                print(f"| {folder.name} | {r['plain']:.2f} | {r['tta']:.2f} | {r['last']:.2f} | {r['last, tta']:.2f} "
                      f"| {r['best+last']:.2f} "
                      f"| {r['best+last, tta']:.2f} | {r['plain_s']:.1f} | {r['tta_s']:.1f} | "
                      f"{r['checker_residual']:.3f} | {r['checker_error']:.2f} |", flush=True)
    print()
    print("| variant | dataset | n | plain | tta - plain | last - plain | last (spread) | last, tta (spread) "
          "| last, mean (spread) | last, tta, mean (spread) | best+last - plain "
          "| best+last, tta - plain | tta time x | checker residual | checker error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dname in args.datasets:
        for variant in args.variants:
            g = [r for r in rows if r["variant"] == variant and r["dataset"] == dname]
            if not g:
                continue

            def m(key, g=g):
                return float(np.mean([r[key] for r in g]))

            def d(key, g=g):
                return float(np.mean([r[key] - r["plain"] for r in g]))

            def ms(key, g=g):
                v = [r[key] for r in g]
                return f"{np.mean(v):.2f} ± {max(v) - min(v):.2f}"

            print(f"| {variant} | {dname} | {len(g)} | {m('plain'):.2f} | {d('tta'):+.2f} | {d('last'):+.2f} | "
                  f"{ms('last')} | {ms('last, tta')} | {ms('last, mean')} | {ms('last, tta, mean')} | "
                  f"{d('best+last'):+.2f} | {d('best+last, tta'):+.2f} | {m('tta_s') / m('plain_s'):.1f} | "
                  f"{m('checker_residual'):.3f} | {m('checker_error'):.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
