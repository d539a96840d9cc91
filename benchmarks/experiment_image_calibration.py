"""Calibration on the image itself: a straight line or an intensity curve, fitted on the image's own blind spots?

``model.predict(img, axes, calibrate=K)`` masks the image ``K`` times with the model's own masking, predicts the
masked copies and fits the noisy pixels at the blind spots against the predictions there; since a blind-spot
prediction ``f`` has not seen its pixel's noise, for zero-mean noise independent between pixels the fit to the
noisy pixels is the fit to the clean image (``E[(noisy - g(f))^2] = E[(clean - g(f))^2] + var(noise)`` for any
``g``). ``calibrate_bins=1`` fits a gain and an offset; by default a continuous piecewise-linear curve with one
segment per 4000 blind spots (at most 16; ``n2v_tf.nets.fit_curve``), i.e. an estimate of ``E[clean | f]``.

For every model folder ``bench_quality.py`` left in ``benchmarks/_runs/models`` (``--variants``, ``--datasets``,
``--seeds``) this prints the test PSNR of: the plain prediction; ``calibrate=K, calibrate_bins=1`` (line);
``calibrate='auto'`` (curve, as many draws as give 30 000 blind spots, at most 16); the oracles, i.e. a line and a
32-segment curve fitted per test image against its *clean* image (the bounds of either calibration);
``tta=True`` and ``tta=True, calibrate='auto'``; and the seconds per test image of the plain and the curve
prediction (after a warm-up call).  Per-image PSNRs are in brackets.

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_image_calibration.py --variants rec_n2v rec_n2v2 \
        --datasets natural --seeds 0 1 2 3 4
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def _oracles(pred: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares line and 32-segment curve of ``clean`` on ``pred`` (fitted with the clean image)."""
    from n2v_tf.nets import apply_curve, fit_curve

    p, c = pred.ravel().astype(np.float64), clean.ravel().astype(np.float64)
    a, b = np.polyfit(p, c, 1)
    return (a * pred).astype(np.float32) + np.float32(b), apply_curve(pred, *fit_curve(p, c, 32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    qd.add_model_selection_args(ap, dataset="natural")
    ap.add_argument("--draws", type=int, default=8, help="K of the straight-line column (calibrate=K, bins=1)")
    ap.add_argument("--no-tta", action="store_true", help="skip the two tta columns (3D: 4 more predictions each)")
    args = ap.parse_args()

    cols = ["plain", f"line (K={args.draws})", "curve ('auto')", "oracle line", "oracle curve"]
    cols += [] if args.no_tta else ["tta", "tta + curve"]
    print("| dataset | variant | seed | " + " | ".join(cols) + " | s/image plain | s/image curve |")
    print("|---|---|---|" + "---|" * (len(cols) + 2))
    for ds, variant, seed, model in qd.trained_models(args.datasets, args.variants, args.seeds, args.models):
        axes = qd.spatial_axes(ds)
        model.predict(ds["test_noisy"][0], axes)  # warm-up: compile once, outside the timings
        runs = {c: [] for c in cols}
        t_plain = t_curve = 0.0
        for noisy, clean in zip(ds["test_noisy"], ds["test_clean"]):
            t0 = time.perf_counter()
            plain = model.predict(noisy, axes)
            t1 = time.perf_counter()
            curve = model.predict(noisy, axes, calibrate="auto")
            t_plain, t_curve = t_plain + t1 - t0, t_curve + time.perf_counter() - t1
            line = model.predict(noisy, axes, calibrate=args.draws, calibrate_bins=1)
            runs["plain"].append(plain)
            runs[cols[1]].append(line)
            runs[cols[2]].append(curve)
            o_line, o_curve = _oracles(plain, clean)
            runs["oracle line"].append(o_line)
            runs["oracle curve"].append(o_curve)
            if not args.no_tta:
                runs["tta"].append(model.predict(noisy, axes, tta=True))
                runs["tta + curve"].append(model.predict(noisy, axes, tta=True, calibrate="auto"))
        cells = []
        for c in cols:
            ev = qd.evaluate(ds, runs[c])
            per = "/".join(f"{p['psnr']:.2f}" for p in ev["per_image"])
            cells.append(f"{ev['psnr']:.2f}" + (f" ({per})" if len(ev["per_image"]) > 1 else ""))
        n = len(ds["test_noisy"])
        print(f"| {ds['name']} | {variant} | {seed} | " + " | ".join(cells)
              + f" | {t_plain / n:.2f} | {t_curve / n:.2f} |", flush=True)


if __name__ == "__main__":
    main()
