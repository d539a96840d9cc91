"""Prediction-time options of bootstrapped PN2V on the protocol's trained models (issue 15, no retraining).

For every ``n2v_tf_<variant>_fluo_seed*`` PN2V folder that ``bench_quality.py`` left in ``benchmarks/_runs/models``
(``pn2v_boot``/``pn2v_boot_tta``, with their ``*_n2v`` stage), scores the *fluo* test image with

- ``n2v``, ``n2v tta``: the N2V stage, plain and with ``tta=True``;
- ``mmse``, ``mmse tta``: the PN2V MMSE estimate with the bootstrapped noise model, plain and with ``tta=True``;
- ``prior``: the mean of the PN2V prior samples;
- ``re-boot``: the MMSE estimate with a noise model re-fitted to (PN2V MMSE prediction, noisy) pairs of the
  training image (a second bootstrap round without retraining the network);
- ``oracle``: the MMSE estimate with a GMM fitted to pairs drawn from the true noise law (Poisson + Gaussian read
  noise of ``quality_data``) on the clean training region: how much the bootstrapped noise model costs
  (a diagnostic; unavailable to a user).

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_pn2v_predict.py --variants pn2v_boot_tta
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402
from bench_quality import BOOTSTRAP  # noqa: E402

KEYS = ("n2v", "n2v tta", "mmse", "mmse tta", "prior", "re-boot", "re-boot tta", "oracle", "oracle tta")


def _gmm_kwargs() -> dict:
    return {k: v for k, v in BOOTSTRAP.items() if k not in ("kind", "clip_percent")}


def evaluate(folder: Path, ds: dict, train_noisy: list, train_clean: np.ndarray) -> dict:
    from n2v_tf import N2V, GaussianMixtureNoiseModel
    pn2v = N2V(None, folder.name, basedir=str(folder.parent))
    n2v = N2V(None, folder.name + "_n2v", basedir=str(folder.parent))
    axes = qd.spatial_axes(ds)
    score = {}

    def psnr(preds):
        return qd.evaluate(ds, [np.asarray(p, np.float32) for p in preds])["psnr"]

    def run(model, key, tta=False, **kw):
        score[key] = psnr([model.predict(img, axes, tta=tta, **kw) for img in ds["test_noisy"]])

    run(n2v, "n2v")
    run(n2v, "n2v tta", tta=True)
    run(pn2v, "mmse")
    run(pn2v, "mmse tta", tta=True)
    run(pn2v, "prior", pn2v_output="prior_mean")
    # second bootstrap round: PN2V's own MMSE prediction of the training image as the pseudo ground truth
    sig = np.concatenate([np.asarray(pn2v.predict(im, axes, tta=True), np.float32).ravel() for im in train_noisy])
    obs = np.concatenate([np.asarray(im, np.float32).ravel() for im in train_noisy])
    lo, hi = np.percentile(sig, [BOOTSTRAP["clip_percent"], 100 - BOOTSTRAP["clip_percent"]])
    keep = (sig >= lo) & (sig <= hi)
    booted = pn2v.noise_model
    pn2v.noise_model = GaussianMixtureNoiseModel.fit(sig[keep], obs[keep], **_gmm_kwargs())
    run(pn2v, "re-boot")
    run(pn2v, "re-boot tta", tta=True)
    # oracle: pairs from the true noise law on the clean training region
    rng = np.random.default_rng(0)
    s = np.repeat(train_clean.ravel().astype(np.float64), 4)
    x = rng.poisson(s) + rng.normal(0.0, qd.FLUO_READ_SIGMA, s.shape)
    pn2v.noise_model = GaussianMixtureNoiseModel.fit(s.astype(np.float32), x.astype(np.float32), **_gmm_kwargs())
    run(pn2v, "oracle")
    run(pn2v, "oracle tta", tta=True)
    pn2v.noise_model = booted
    return score


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["pn2v_boot_tta"])
    ap.add_argument("--models", type=Path, default=qd.RUNS_DIR / "models")
    ap.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    args = ap.parse_args(argv)
    ds = qd.load("fluo")
    built = qd._BUILDERS["fluo"]()
    train_noisy = built["train_noisy"]
    src, _ = qd._find_stardist_image()
    clean = (src.astype(np.float64) / float(src.max()) * qd.FLUO_PEAK)
    train_clean = clean[:, :qd.FLUO_SPLIT_COL]
    rows = []
    print("| model | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for variant in args.variants:
        for folder in sorted(args.models.glob(f"n2v_tf_{variant}_fluo_seed[0-9]")):
            if not (folder / "config.json").exists():
                continue
            r = evaluate(folder, ds, train_noisy, train_clean)
            rows.append(dict(r, model=folder.name, variant=variant))
            print(f"| {folder.name} | " + " | ".join(f"{r[k]:.2f}" for k in KEYS) + " |", flush=True)
    for variant in args.variants:
        g = [r for r in rows if r["variant"] == variant]
        if g:
            print(f"| **{variant} mean (n={len(g)})** | "
                  + " | ".join(f"{np.mean([r[k] for r in g]):.2f}" for k in KEYS) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
