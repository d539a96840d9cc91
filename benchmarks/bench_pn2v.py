"""PN2V benchmark (issue 4): noise models and PN2V vs N2V on a real fluorescence image with Poisson-Gaussian noise.

Data (seeded; the ``fluo`` dataset of ``quality_data.py``, so N2V is comparable with ``bench_quality.py``)
    Signal: the 512x512 nuclei image bundled with the stardist wheel (BBBC038, CC0), scaled to
    ``FLUO_PEAK`` = 30 photons at the maximum. Noise: Poisson shot noise plus Gaussian read noise of
    ``FLUO_READ_SIGMA`` = 0.9 photons (3 % of the range), so ``Var[x|s] = GAIN * s + READ**2`` with
    ``GAIN`` = 1 (photon units). Training: the dataset's 1800 + 200 noisy 64x64 patches of the left
    3/4 (columns 0-383); test: the right quarter (512x128), PSNR with data_range = clean max - min.
Calibration data
    ``N_CALIBRATION`` = 20 fresh noisy frames (own seed) of the clean left 3/4: a static sample recorded
    20 times. ``from_calibration`` pairs each frame with the frames' mean (variance-corrected).
Bootstrap data
    The noisy left 3/4 itself (the realisation the training patches were cut from, rebuilt with
    quality_data's seed and checked against the cached test quarter) and N2V's prediction of it:
    ``bootstrap_noise_model(n2v, noisy_left, 'YX', kind=...)`` (0.5 % clipping at both ends).

Experiments
(i)  The GMM fitted on the calibration data (3 Gaussians, linear, 1000 Adam steps of 25000 pairs)
     must recover the variance law ``Var[x|s] = s + 0.81`` within 10 % over the central 90 % of the
     signals (5th to 95th percentile of the clean calibration sample): reported as the largest
     relative error of ``mean_and_variance``. Shown for information: the calibration histogram
     (100 x 100 bins) and the bootstrapped GMM and histogram (broader: N2V's prediction is smoother
     than the signal).
(ii) PSNR of N2V and of PN2V with each of the four noise models, same network and steps for all
     (quality_data.PROTOCOL: U-Net depth 2, 32 first filters, kernel 3, batch norm, batch 16, 64x64
     patches, Adam 4e-4, 0.198 % blind spots with uniform_withCP, 1000 steps in 10 epochs, the
     best-validation weights); PN2V with ``--samples`` signal samples per pixel (default 800, the
     paper's). PN2V is scored by its MMSE estimate (its prior mean is reported too). Targets of the
     issue: calibration GMM >= N2V + 0.5 dB, bootstrapped GMM >= N2V + 0.3 dB.

Usage (from the repo root)::

    nice -n 15 .venv/bin/python benchmarks/bench_pn2v.py --quick          # smoke run (minutes on 2 cores)
    nice -n 15 .venv/bin/python benchmarks/bench_pn2v.py                  # full protocol (see below)
    .venv/bin/python benchmarks/bench_pn2v.py --steps 300 --samples 200   # shorter, fewer samples

Results: ``benchmarks/_runs/pn2v[_quick].json`` (git-ignored) and markdown tables on stdout.
Quick mode keeps the networks, batches, patches, the noise-model fits and the test image, and only
cuts the training to ``QUICK_STEPS`` steps (one epoch) and, unless ``--samples`` is given, the PN2V
samples to ``QUICK_SAMPLES``: its seconds per step and per validation pass extrapolate to a full
run with the same number of samples ("est. full"). The PSNRs of a quick run mean nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_data as qd  # noqa: E402

RUNS_DIR = Path(os.environ.get("N2V_BENCH_RUNS", HERE / "_runs"))

GAIN, READ = 1.0, qd.FLUO_READ_SIGMA          # the noise law of the fluo dataset, in photons
SPLIT = qd.FLUO_SPLIT_COL                      # training region: columns [0, SPLIT)
N_CALIBRATION = 20
CALIBRATION_SEED = 101                         # fresh noise for the calibration frames (quality_data uses 4, 5)
VARIANT = "uniform_withCP"
STEPS, EPOCHS = 1000, 10                       # full run: 10 epochs x 100 steps per model
QUICK_STEPS, QUICK_SAMPLES = 4, 64
DEFAULT_SAMPLES = 800
GMM_FIT = dict(n_gaussian=3, n_coeff=2, steps=1000, batch_size=25_000)
HIST_BINS = 100
VAR_TOLERANCE = 0.10
TARGETS = {("gmm", "calibration"): 0.5, ("gmm", "bootstrap"): 0.3}
NOISE_MODELS = (("gmm", "calibration"), ("histogram", "calibration"), ("gmm", "bootstrap"),
                ("histogram", "bootstrap"))


# --------------------------------------------------------------------------- data

def build_data() -> dict:
    """The fluo dataset, the clean and noisy left 3/4 (rebuilt exactly) and the calibration stack."""
    ds = qd.load("fluo")
    src, where = qd._find_stardist_image()
    clean = (src.astype(np.float64) / float(src.max()) * qd.FLUO_PEAK).astype(np.float32)
    rng = qd._rng(4)                           # the draws of quality_data._build_fluo, in the same order
    noisy = (rng.poisson(clean.astype(np.float64)) + rng.normal(0.0, READ, clean.shape)).astype(np.float32)
    if not np.array_equal(noisy[:, SPLIT:], ds["test_noisy"][0]):
        raise RuntimeError("the rebuilt noisy image differs from quality_data's cached test quarter: rebuild the "
                           "cache (python benchmarks/quality_data.py --rebuild --datasets fluo)")
    clean_left = clean[:, :SPLIT]
    rng = np.random.default_rng([qd.SEED, CALIBRATION_SEED])
    calibration = np.stack([(rng.poisson(clean_left.astype(np.float64)) + rng.normal(0.0, READ, clean_left.shape))
                            .astype(np.float32) for _ in range(N_CALIBRATION)])
    return dict(ds=ds, clean_left=clean_left, noisy_left=noisy[:, :SPLIT], calibration=calibration, source=where)


# --------------------------------------------------------------------------- noise models

def variance_error(nm, s: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest relative error of ``nm``'s variance against ``GAIN * s + READ**2`` on the signals ``s``."""
    _, var = nm.mean_and_variance(s)
    true = GAIN * s + READ ** 2
    rel = (var - true) / true
    return float(np.max(np.abs(rel))), rel


def fit_calibration(data: dict) -> dict:
    from n2v_tf import GaussianMixtureNoiseModel, HistogramNoiseModel
    out = {}
    t0 = time.perf_counter()
    out["gmm"] = GaussianMixtureNoiseModel.from_calibration(data["calibration"], **GMM_FIT)
    out["gmm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["histogram"] = HistogramNoiseModel.from_calibration(data["calibration"], bins=HIST_BINS)
    out["histogram_s"] = time.perf_counter() - t0
    return out


def fit_bootstrap(n2v, data: dict) -> dict:
    from n2v_tf import bootstrap_noise_model
    out = {}
    for kind, kw in (("gmm", GMM_FIT), ("histogram", dict(bins=HIST_BINS))):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # e.g. filled empty histogram rows
            out[kind] = bootstrap_noise_model(n2v, data["noisy_left"], "YX", kind=kind, **kw)
        out[f"{kind}_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- models

def _timer():
    import keras

    class Timer(keras.callbacks.Callback):
        """Seconds of every training step after the first of each epoch (which traces) and of each validation."""

        def __init__(self):
            super().__init__()
            self.intervals, self.validations, self._last, self._val0 = [], [], None, None

        def on_epoch_begin(self, epoch, logs=None):
            self._last = None

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self._last is not None:
                self.intervals.append(now - self._last)
            self._last = now

        def on_test_begin(self, logs=None):
            self._val0 = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validations.append(time.perf_counter() - self._val0)

    return Timer()


def _tiles(shape, samples: int) -> tuple[int, ...]:
    """Tiles along Y so that one tile holds at most ~2**23 (pixel, sample) pairs (the MMSE head's memory)."""
    n = max(1, math.ceil(shape[0] * shape[1] * max(samples, 1) / 2 ** 23))
    return (max(1, min(2 ** math.ceil(math.log2(n)), shape[0] // 32)), 1)


def train_and_predict(label: str, ds: dict, steps: int, epochs: int, samples: int, args, noise_model=None):
    """Train N2V (``noise_model=None``) or PN2V and predict the test image; returns (result dict, model)."""
    import keras

    from n2v_tf import N2V, N2VConfig
    keras.utils.set_random_seed(args.seed)
    kw = qd.n2v_config_kwargs(VARIANT, epochs, steps // epochs)
    if noise_model is not None:
        kw.update(probabilistic=True, pn2v_samples=samples)
    config = N2VConfig(ds["X_train"], **kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, label, basedir=str(models_dir(args)), overwrite=True, noise_model=noise_model)
    model.prepare_for_training()
    timer = _timer()
    model.callbacks.append(timer)
    t0 = time.perf_counter()
    hist = model.train(ds["X_train"], ds["X_val"], verbose=0, seed=args.seed)
    train_s = time.perf_counter() - t0
    noisy, clean, dr = ds["test_noisy"][0], ds["test_clean"][0], ds["data_range"][0]
    t0 = time.perf_counter()
    if noise_model is None:
        pred, prior = model.predict(noisy, "YX"), None
    else:
        tiles = _tiles(noisy.shape, samples)
        pred = model.predict(noisy, "YX", n_tiles=tiles)
        prior = model.predict(noisy, "YX", n_tiles=tiles, pn2v_output="prior_mean")
    predict_s = time.perf_counter() - t0
    n_steps = epochs * (steps // epochs)
    step_s = float(np.median(timer.intervals)) if timer.intervals else float("nan")
    val_s = float(np.median(timer.validations)) if timer.validations else 0.0
    overhead = train_s - n_steps * step_s - len(timer.validations) * val_s
    res = dict(label=label, pn2v=noise_model is not None, samples=samples if noise_model is not None else None,
               psnr=qd.psnr(clean, pred, dr), psnr_prior_mean=None if prior is None else qd.psnr(clean, prior, dr),
               psnr_input=qd.psnr(clean, noisy, dr), steps=n_steps, epochs=epochs, train_time_s=train_s,
               predict_time_s=predict_s, step_time_s=step_s, validation_time_s=val_s, overhead_s=overhead,
               est_full_train_s=overhead + STEPS * step_s + EPOCHS * val_s,
               n_params=int(model.keras_model.count_params()),
               history={k: [float(v) for v in vals] for k, vals in hist.history.items()})
    extra = "" if prior is None else f", prior mean {res['psnr_prior_mean']:.2f} dB"
    print(f"[{label}] PSNR {res['psnr']:.2f} dB{extra} (input {res['psnr_input']:.2f}); train {train_s:.1f} s "
          f"({n_steps} steps, {step_s:.3f} s/step, validation {val_s:.1f} s), predict {predict_s:.1f} s", flush=True)
    return res, model


# --------------------------------------------------------------------------- output

def runs_dir() -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return RUNS_DIR


def models_dir(args) -> Path:
    d = Path(args.workdir) if args.workdir else runs_dir() / ("models_pn2v_quick" if args.quick else "models_pn2v")
    d.mkdir(parents=True, exist_ok=True)
    return d


def tables(r: dict) -> str:
    lo, hi = r["signal_range_central_90"]
    out = [f"### (i) noise models vs the true law Var[x|s] = {GAIN:g} * s + {READ ** 2:.4g} "
           f"(signals {lo:.2f} to {hi:.2f} photons: 5th-95th percentile)\n",
           "| noise model | fitted on | max rel. variance error | target | fit (s) |", "|---|---|---|---|---|"]
    for key, v in r["noise_models"].items():
        kind, source = key.split("/")
        target = f"< {VAR_TOLERANCE:.0%}: {'pass' if v['max_rel_var_error'] < VAR_TOLERANCE else 'FAIL'}" \
            if key == "gmm/calibration" else "—"
        out.append(f"| {kind} | {v['fitted_on']} | {v['max_rel_var_error']:.1%} | {target} | {v['fit_s']:.1f} |")
    n2v = r["models"]["N2V"]["psnr"]
    out += ["", f"### (ii) PSNR on the test quarter (512x128), input {r['models']['N2V']['psnr_input']:.2f} dB; "
                f"same network and steps for all; PN2V: {r['samples']} samples per pixel\n",
            "| model | noise model | PSNR (dB) | vs N2V (dB) | target | prior mean (dB) | steps | train (s) | s/step | "
            "val. pass (s) | est. full train (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, m in r["models"].items():
        nm = m.get("noise_model", "—")
        delta = "—" if label == "N2V" else f"{m['psnr'] - n2v:+.2f}"
        key = tuple(nm.split("/")) if nm != "—" else None
        target = "—"
        if key in TARGETS:
            target = f">= +{TARGETS[key]:.1f}: {'pass' if m['psnr'] - n2v >= TARGETS[key] else 'FAIL'}"
        prior = "—" if m["psnr_prior_mean"] is None else f"{m['psnr_prior_mean']:.2f}"
        out.append(f"| {label} | {nm} | {m['psnr']:.2f} | {delta} | {target} | {prior} | {m['steps']} | "
                   f"{m['train_time_s']:.0f} | {m['step_time_s']:.3f} | {m['validation_time_s']:.1f} | "
                   f"{m['est_full_train_s']:.0f} |")
    est = r["est_full_total_s"]
    out.append(f"\nEstimated full run ({STEPS} steps per model, {r['samples']} samples): {est:.0f} s "
               f"({est / 3600:.1f} h) on this machine.")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK_STEPS} steps per model, {QUICK_SAMPLES} PN2V samples unless --samples")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"optimiser steps per model (in up to {EPOCHS} epochs)")
    ap.add_argument("--samples", type=int, default=None,
                    help=f"PN2V samples per pixel (default {DEFAULT_SAMPLES}; quick {QUICK_SAMPLES})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and training batches (data are fixed)")
    ap.add_argument("--workdir", default=None, help="model folders (default: benchmarks/_runs/models_pn2v*)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    samples = args.samples if args.samples is not None else (QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES)
    if samples < 2:
        ap.error("--samples must be >= 2")
    steps = QUICK_STEPS if args.quick else args.steps
    epochs = 1 if args.quick else max(1, min(EPOCHS, steps))

    t_start = time.perf_counter()
    data = build_data()
    ds = data["ds"]
    lo, hi = (float(v) for v in np.percentile(data["clean_left"], [5, 95]))
    s_grid = np.linspace(lo, hi, 200)
    print(f"fluo: train {ds['X_train'].shape}, val {ds['X_val'].shape}, test {ds['test_noisy'][0].shape}; "
          f"calibration {data['calibration'].shape}; central 90 % of the signals: {lo:.2f}-{hi:.2f} photons "
          f"({time.perf_counter() - t_start:.1f} s)", flush=True)

    # (i) calibration noise models
    cal = fit_calibration(data)
    noise_models, fitted = {}, {}
    for kind in ("gmm", "histogram"):
        err, rel = variance_error(cal[kind], s_grid)
        fitted[(kind, "calibration")] = cal[kind]
        noise_models[f"{kind}/calibration"] = dict(
            fitted_on=f"calibration ({N_CALIBRATION} frames of 512x{SPLIT})", max_rel_var_error=err,
            fit_s=cal[f"{kind}_s"], model=repr(cal[kind]), rel_error_profile=rel[::20].tolist())
        print(f"[{kind}/calibration] max relative variance error {err:.1%} ({cal[f'{kind}_s']:.1f} s)", flush=True)

    # (ii) N2V, then the bootstrapped noise models, then PN2V with each noise model
    models = {}
    models["N2V"], n2v = train_and_predict("N2V", ds, steps, epochs, samples, args)
    boot = fit_bootstrap(n2v, data)
    for kind in ("gmm", "histogram"):
        err, rel = variance_error(boot[kind], s_grid)
        fitted[(kind, "bootstrap")] = boot[kind]
        noise_models[f"{kind}/bootstrap"] = dict(
            fitted_on=f"bootstrap (N2V prediction of the noisy 512x{SPLIT})", max_rel_var_error=err,
            fit_s=boot[f"{kind}_s"], model=repr(boot[kind]), rel_error_profile=rel[::20].tolist(),
            coverage_of_test_clean=boot[kind].coverage(ds["test_clean"][0]))
        print(f"[{kind}/bootstrap] max relative variance error {err:.1%} ({boot[f'{kind}_s']:.1f} s)", flush=True)
    for kind, source in NOISE_MODELS:
        label = f"PN2V {kind} {source}"
        res, _ = train_and_predict(label.replace(" ", "_").lower(), ds, steps, epochs, samples, args,
                                   noise_model=fitted[(kind, source)])
        res["noise_model"] = f"{kind}/{source}"
        models[label] = res

    fit_s = sum(v["fit_s"] for v in noise_models.values())
    est_total = fit_s + sum(m["est_full_train_s"] + m["predict_time_s"] for m in models.values())
    from importlib import metadata
    versions = {}
    for pkg in ("n2v_tf", "tensorflow", "keras", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    results = dict(quick=args.quick, seed=args.seed, samples=samples, steps_per_model=steps, variant=VARIANT,
                   protocol=qd.PROTOCOL, noise=dict(peak_photons=qd.FLUO_PEAK, gain=GAIN, read_sigma=READ),
                   n_calibration=N_CALIBRATION, gmm_fit=GMM_FIT, histogram_bins=HIST_BINS,
                   signal_range_central_90=[lo, hi], source=str(data["source"]).replace(str(HERE), "benchmarks"),
                   data=dict(data_version=ds["meta"]["data_version"], sha256=ds["meta"]["sha256"]),
                   noise_models=noise_models, models=models, est_full_total_s=est_total,
                   total_s=time.perf_counter() - t_start, versions=versions,
                   host=dict(python=platform.python_version(), cpus=os.cpu_count(), loadavg=list(os.getloadavg()),
                             finished=time.strftime("%Y-%m-%d %H:%M:%S")))
    path = runs_dir() / ("pn2v_quick.json" if args.quick else "pn2v.json")
    path.write_text(json.dumps(results, indent=2))
    print()
    if args.quick:
        print("**QUICK smoke-run results (PSNRs not meaningful; s/step extrapolates to a full run)**\n")
    print(tables(results))
    print(f"Results written to {path} ({results['total_s']:.0f} s in all).")


if __name__ == "__main__":
    main()
