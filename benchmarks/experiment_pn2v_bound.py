"""How much can the centre pixel add to N2V on *fluo*? An oracle bound for PN2V's gain (issue 15, diagnostic).

N2V predicts ``E[s | neighbours]`` without looking at the pixel itself; PN2V's MMSE estimate adds the pixel through
the noise model. For a prior of N2V's quality, the best *linear* use of the pixel is ``p + w (x - p)`` with a weight
``w`` that may depend on the intensity (Poisson noise grows with the signal). This script fits that weight per
intensity bin of ``p`` **with the clean test image** (an oracle, unavailable to a user, and fitted on the scored
image itself, so slightly optimistic) and reports the PSNR it reaches next to N2V's and PN2V's, for the N2V stages
and PN2V models that ``bench_quality.py --only pn2v_boot_tta/fluo`` left in ``benchmarks/_runs/models``. Also the
Gaussian (Wiener) form with the *true* noise variance ``s + read_sigma**2`` and the prior error variance measured
per bin with the clean image.

Usage::

    nice -n 15 .venv/bin/python benchmarks/experiment_pn2v_bound.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402

N_BINS = 32


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of the quantile bin of ``p`` (``n_bins`` equally populated bins) of every pixel."""
    return np.searchsorted(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1]), p)


def oracle_linear(p: np.ndarray, x: np.ndarray, s: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """``p + w_b (x - p)`` with the least-squares ``w_b`` per quantile bin of ``p`` (fitted with the clean ``s``)."""
    b = _bins(p, n_bins).ravel()
    d, e = (x - p).ravel(), (s - p).ravel()
    num = np.bincount(b, d * e, n_bins)
    den = np.bincount(b, d * d, n_bins)
    w = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return p + w[b].reshape(p.shape) * (x - p), w


def wiener(p: np.ndarray, x: np.ndarray, s: np.ndarray, read_sigma: float, n_bins: int = N_BINS) -> np.ndarray:
    """``p + v_p / (v_p + v_n) (x - p)``: v_n = max(p, 0) + read_sigma**2 (the true noise law at the prior mean),
    v_p the prior's squared error per bin (with the clean image)."""
    b = _bins(p, n_bins)
    vp = np.bincount(b.ravel(), ((s - p) ** 2).ravel(), n_bins) / np.maximum(np.bincount(b.ravel(), None, n_bins), 1)
    vn = np.maximum(p, 0) + read_sigma ** 2
    return p + vp[b] / (vp[b] + vn) * (x - p)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", default="pn2v_boot_tta")
    args = ap.parse_args(argv)
    from n2v_tf import N2V
    ds = qd.load("fluo")
    axes = qd.spatial_axes(ds)
    x, s = (np.asarray(ds[k][0], np.float64) for k in ("test_noisy", "test_clean"))
    models = qd.RUNS_DIR / "models"
    rows = []
    for seed in args.seeds:
        name = f"n2v_tf_{args.variant}_fluo_seed{seed}"
        n2v = N2V(None, name + "_n2v", basedir=str(models))
        pn2v = N2V(None, name, basedir=str(models))
        row = {}
        for tta in (False, True):
            p = np.asarray(n2v.predict(ds["test_noisy"][0], axes, tta=tta), np.float64)
            m = np.asarray(pn2v.predict(ds["test_noisy"][0], axes, tta=tta), np.float64)
            lin, w = oracle_linear(p, x, s)
            t = " tta" if tta else ""
            row["n2v" + t] = qd.evaluate(ds, [p])["psnr"]
            row["pn2v mmse" + t] = qd.evaluate(ds, [m])["psnr"]
            row["oracle linear" + t] = qd.evaluate(ds, [lin])["psnr"]
            row["wiener" + t] = qd.evaluate(ds, [wiener(p, x, s, qd.FLUO_READ_SIGMA)])["psnr"]
            row["w range" + t] = f"{w.min():.3f}-{w.max():.3f}"
        rows.append((seed, row))
        print(seed, {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    keys = [k for k in rows[0][1]]
    print("\n| seed | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for seed, row in rows:
        cells = (f"{row[k]:.2f}" if isinstance(row[k], float) else row[k] for k in keys)
        print(f"| {seed} | " + " | ".join(cells) + " |")
    means = {k: np.mean([r[k] for _, r in rows]) for k in keys if isinstance(rows[0][1][k], float)}
    print("| mean | " + " | ".join(f"{means[k]:.2f}" if k in means else "" for k in keys) + " |")


if __name__ == "__main__":
    main()
