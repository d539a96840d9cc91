"""structN2V benchmark: noise correlated along one axis, N2V vs structN2V vs structN2V + N2V2 (2D and 3D).

Data (seeded, built in memory; scikit-image's *bundled* grayscale images, used only by the benchmarks):

``2d``
    Clean: train on brick, clock, coins, grass, gravel, page (the bottom 64 rows of each are held out
    for validation), test on camera (512x512); 0..255 float32. Noise: white noise convolved along X
    with a 1x9 box, scaled to std ``STRIPE_SIGMA`` = 20, plus pixel-wise Gaussian noise of std
    ``PIXEL_SIGMA`` = 10 (input PSNR about 21 dB). Not clipped.
``3d``
    Clean volumes: ``NZ`` = 32 slices, slice z a 128x128 crop (test: 256x256) shifted by z pixels
    along Y and X, then blurred along Z (Gaussian, sigma 1), so the structure is continuous in Z.
    One volume per training image (its bottom 32 rows held out for validation), test: camera.
    Noise: as in 2D, but the box (1x9x1) runs along Y.

Experiments:

(i)   noise analysis: ``suggest_struct_mask`` (default threshold 0.5, min_correlation 0.1) on a
      dark frame (a noise-only image of the same process), on the flattest crop of the noisy test
      image (a background region, found without clean data), and on the residuals
      ``noisy - prediction`` of the trained N2V and structN2V models -> the recovered spans.
(ii)  2D: the library's presets (``VARIANT_PRESET``): N2V (preset 'n2v'), structN2V (preset 'structn2v', 1x9 mask
      along X), structN2V + N2V2 (preset 'n2v2' with the same mask: blurpool, skip_skipone, median) with the same
      budget on top: U-Net depth 2, 32 first-level filters, kernel 3, batch 16, patch 64x64, n2v_perc_pix 0.198,
      Adam 4e-4, the same steps -> PSNR on camera (each preset's other defaults: final weights, cosine decay,
      mixed precision 'auto', ...).
(iii) 3D: the same three with a 1x9x1 mask along Y, patch 16x32x32 -> PSNR on the camera volume.

The residuals' correlation with the next pixel along the noise axis (``lag1``) is reported as well:
a model that removed the stripes leaves them in its residual.

Usage (from the repo root)::

    nice -n 15 .venv/bin/python benchmarks/bench_structn2v.py --quick      # smoke run (seconds per model)
    nice -n 15 .venv/bin/python benchmarks/bench_structn2v.py              # 1000 steps per model
    .venv/bin/python benchmarks/bench_structn2v.py --steps 300 --only 2d

Results: ``benchmarks/_runs/structn2v[_quick].json`` (git-ignored) and a markdown table on stdout.
Quick mode keeps the networks, batches and patches and only cuts the steps (and the test data),
so its seconds per step extrapolate to a full run (printed as "est. full").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter1d, uniform_filter1d  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS_DIR = Path(os.environ.get("N2V_BENCH_RUNS", HERE / "_runs"))

SEED = 20241122
TRAIN_IMAGES = ("brick", "clock", "coins", "grass", "gravel", "page")
TEST_IMAGE = "camera"
BOX, STRIPE_SIGMA, PIXEL_SIGMA = 9, 20.0, 10.0
NOISE_AXIS = {2: "X", 3: "Y"}
NZ, VAL_ROWS = 32, 64
PROTOCOL = dict(unet_n_depth=2, unet_n_first=32, unet_kern_size=3, batch_norm=True, train_batch_size=16,
                train_learning_rate=4e-4, n2v_perc_pix=0.198, n2v_neighborhood_radius=5, train_loss="mse",
                train_tensorboard=False)
PATCH = {2: (64, 64), 3: (16, 32, 32)}
STEPS, EPOCHS = 1000, 10            # full run: 10 epochs x 100 steps per model
QUICK_STEPS = 4                     # quick: 1 epoch x 4 steps (3 timed steps after the traced first one)
VARIANTS = ("N2V", "structN2V", "structN2V+N2V2")


# --------------------------------------------------------------------------- data

def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *keys])


def striped_noise(shape, axis: int, rng: np.random.Generator) -> np.ndarray:
    """White noise box-filtered over BOX pixels along ``axis`` (std STRIPE_SIGMA) + pixel-wise N(0, PIXEL_SIGMA)."""
    stripes = uniform_filter1d(rng.normal(size=shape), BOX, axis=axis, mode="wrap") * np.sqrt(BOX) * STRIPE_SIGMA
    return (stripes + rng.normal(0.0, PIXEL_SIGMA, shape)).astype(np.float32)


def _gray(name: str) -> np.ndarray:
    import skimage.data
    im = getattr(skimage.data, name)()
    if im.ndim != 2:
        raise ValueError(f"skimage.data.{name} is not grayscale: {im.shape}")
    return im.astype(np.float32)


def _volume(img: np.ndarray, nz: int, size: int) -> np.ndarray:
    """``nz`` crops of ``size`` x ``size`` from the centre of ``img``, shifted by 1 pixel per slice, blurred along Z."""
    y0 = max(0, (img.shape[0] - size - nz) // 2)
    x0 = max(0, (img.shape[1] - size - nz) // 2)
    vol = np.stack([img[y0 + z:y0 + z + size, x0 + z:x0 + z + size] for z in range(nz)])
    return gaussian_filter1d(vol.astype(np.float64), 1.0, axis=0, mode="nearest").astype(np.float32)


def build_data(n_dim: int, quick: bool) -> dict:
    """Training/validation lists (channel last), the test pair, and a dark frame, all seeded."""
    axis = 1                                        # the noise axis: X of (Y, X), Y of (Z, Y, X)
    nz, size = (NZ // 2, 64) if quick else (NZ, 128)
    val_rows = VAL_ROWS if n_dim == 2 else PATCH[3][1]
    train, val = [], []
    for i, name in enumerate(TRAIN_IMAGES):
        clean = _gray(name) if n_dim == 2 else _volume(_gray(name), nz, size)
        noisy = clean + striped_noise(clean.shape, axis, _rng(n_dim, 1, i))
        train.append(noisy[..., :-val_rows, :, None])          # hold out the bottom rows (Y) for validation
        val.append(noisy[..., -val_rows:, :, None])
    clean = _gray(TEST_IMAGE)
    if n_dim == 2:
        clean = clean[128:384, 128:384] if quick else clean
    else:
        clean = _volume(clean, nz, 2 * size)
    noisy = clean + striped_noise(clean.shape, axis, _rng(n_dim, 2))
    dark_shape = ((128, 128) if quick else (256, 256)) if n_dim == 2 else ((16, 64, 64) if quick else (32, 128, 128))
    dark = striped_noise(dark_shape, axis, _rng(n_dim, 3))
    return dict(train=train, val=val, test_clean=clean, test_noisy=noisy, dark=dark, axis=axis)


def flattest_crop(img: np.ndarray, window) -> tuple[slice, ...]:
    """The window (on a half-window grid) of ``img`` with the smallest standard deviation: a background region."""
    grids = [range(0, s - w + 1, max(1, w // 2)) for s, w in zip(img.shape, window)]
    best = min(np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(window), -1).T,
               key=lambda st: img[tuple(slice(a, a + w) for a, w in zip(st, window))].std())
    return tuple(slice(int(a), int(a) + w) for a, w in zip(best, window))


# --------------------------------------------------------------------------- models

def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall-clock time of every training step after the first of each epoch (which includes tracing)."""

        def __init__(self):
            super().__init__()
            self.intervals, self._last = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self._last = None

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self._last is not None:
                self.intervals.append(now - self._last)
            self._last = now

    return StepTimer()


#: the library preset each variant starts from (the protocol's budget and the struct mask go on top)
VARIANT_PRESET = {"N2V": "n2v", "structN2V": "structn2v", "structN2V+N2V2": "n2v2"}


def variant_kwargs(variant: str, n_dim: int) -> dict:
    from n2v_tf import struct_mask
    mask = struct_mask(NOISE_AXIS[n_dim], BOX, n_dim).tolist()
    return {"N2V": {}, "structN2V": dict(structN2Vmask=mask), "structN2V+N2V2": dict(structN2Vmask=mask)}[variant]


def lag1(x: np.ndarray, axis: int) -> float:
    """Autocorrelation at lag 1 along ``axis`` (1 at lag 0)."""
    from n2v_tf import autocorrelation
    a = autocorrelation(np.asarray(x, np.float64))
    c = [s // 2 for s in a.shape]
    c[axis] += 1
    return float(a[tuple(c)])


def run_model(variant: str, n_dim: int, data: dict, steps: int, epochs: int, args) -> tuple[dict, np.ndarray]:
    import keras

    from n2v_tf import N2V, N2VConfig, psnr
    keras.utils.set_random_seed(args.seed)
    kw = dict(PROTOCOL, n2v_patch_shape=PATCH[n_dim], train_epochs=epochs, train_steps_per_epoch=steps // epochs,
              **variant_kwargs(variant, n_dim))
    config = N2VConfig.preset(VARIANT_PRESET[variant], data["train"], **kw)
    name = f"structn2v_{n_dim}d_{variant.replace('+', '_').lower()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, name, basedir=str(models_dir(args)), overwrite=True)
    model.prepare_for_training()
    timer = _step_timer()
    model.callbacks.append(timer)
    t0 = time.perf_counter()
    hist = model.train(data["train"], data["val"], verbose=0, seed=args.seed)
    train_s = time.perf_counter() - t0
    axes = "YX" if n_dim == 2 else "ZYX"
    t0 = time.perf_counter()
    pred = model.predict(data["test_noisy"], axes)
    predict_s = time.perf_counter() - t0
    n_steps = epochs * (steps // epochs)
    step_s = float(np.median(timer.intervals)) if timer.intervals else float("nan")
    overhead = train_s - n_steps * step_s
    ax = data["axis"]
    res = dict(variant=variant, n_dim=n_dim, psnr=psnr(data["test_clean"], pred, data_range=255.0),
               psnr_input=psnr(data["test_clean"], data["test_noisy"], data_range=255.0),
               steps=n_steps, epochs=epochs, train_time_s=train_s, predict_time_s=predict_s, step_time_s=step_s,
               overhead_s=overhead, est_full_train_s=overhead + STEPS * step_s,
               residual_lag1=lag1(data["test_noisy"] - pred, ax), error_lag1=lag1(pred - data["test_clean"], ax),
               n_params=int(model.keras_model.count_params()),
               history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
               preset=VARIANT_PRESET[variant],
               config={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()
                       if isinstance(v, (int, float, str, bool, tuple, list, dict, type(None)))})
    print(f"[{n_dim}D {variant}] PSNR {res['psnr']:.2f} dB (input {res['psnr_input']:.2f}); train {train_s:.1f} s "
          f"({n_steps} steps, {step_s:.3f} s/step), predict {predict_s:.1f} s", flush=True)
    return res, pred


# --------------------------------------------------------------------------- noise analysis

def analyse(noise: np.ndarray, n_dim: int) -> dict:
    from n2v_tf import suggest_struct_mask
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask, acf = suggest_struct_mask(noise, n_dim=n_dim)
    names = "YX" if n_dim == 2 else "ZYX"
    return dict(shape=list(noise.shape), spans=dict(zip(names, (int(s) for s in mask.shape))),
                hidden=int(mask.sum()) - 1, mask=mask.tolist(), warnings=[str(w.message) for w in caught],
                notes=[_short(str(w.message)) for w in caught])


def _short(message: str) -> str:
    """A table-sized summary of a suggest_struct_mask warning."""
    m = re.search(r"reaches the search limit along (.*?) \(max_span", message)
    if m:
        return f"truncated at the search limit along {m.group(1)}"
    if "plain N2V" in message:
        return "no neighbour above min_correlation: plain N2V"
    return message[:80]


def run_suite(n_dim: int, args) -> dict:
    steps = QUICK_STEPS if args.quick else args.steps
    epochs = 1 if args.quick else max(1, min(EPOCHS, steps))
    t0 = time.perf_counter()
    data = build_data(n_dim, args.quick)
    print(f"{n_dim}D data: train {[im.shape[:-1] for im in data['train']]}, test {data['test_noisy'].shape}, "
          f"dark frame {data['dark'].shape} ({time.perf_counter() - t0:.1f} s)", flush=True)
    window = ((32, 64) if args.quick else (64, 128)) if n_dim == 2 else ((8, 32, 32) if args.quick else (16, 64, 64))
    crop = flattest_crop(data["test_noisy"], window)
    analysis = {"dark frame": analyse(data["dark"], n_dim),
                "background crop": dict(analyse(data["test_noisy"][crop], n_dim),
                                        crop=[[s.start, s.stop] for s in crop])}
    models, preds = {}, {}
    for variant in VARIANTS:
        models[variant], preds[variant] = run_model(variant, n_dim, data, steps, epochs, args)
    for variant in ("N2V", "structN2V"):
        analysis[f"{variant} residual"] = analyse(data["test_noisy"] - preds[variant], n_dim)
    return dict(n_dim=n_dim, noise_axis=NOISE_AXIS[n_dim], patch=list(PATCH[n_dim]), models=models,
                analysis=analysis, lag1_noise=lag1(data["test_noisy"] - data["test_clean"], data["axis"]))


# --------------------------------------------------------------------------- output

def runs_dir() -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return RUNS_DIR


def models_dir(args) -> Path:
    d = Path(args.workdir) if args.workdir else runs_dir() / ("models_structn2v_quick" if args.quick
                                                              else "models_structn2v")
    d.mkdir(parents=True, exist_ok=True)
    return d


def tables(results: dict) -> str:
    out = []
    for key, suite in results["suites"].items():
        ax = suite["noise_axis"]
        names = "YX" if suite["n_dim"] == 2 else "ZYX"
        out.append(f"### {key}: noise box 1x{BOX} along {ax}, patch {'x'.join(map(str, suite['patch']))}\n")
        out.append("| noise source | shape | suggested spans (" + " x ".join(names) + f") | span along {ax} | notes |")
        out.append("|---|---|---|---|---|")
        for src, a in suite["analysis"].items():
            spans = " x ".join(str(a["spans"][n]) for n in names)
            out.append(f"| {src} | {'x'.join(map(str, a['shape']))} | {spans} | {a['spans'][ax]} | "
                       f"{'; '.join(a['notes']) or '—'} |")
        out.append("")
        out.append(f"| model | PSNR (dB) | input PSNR | residual lag-1 along {ax} | error lag-1 along {ax} | steps | "
                   "train (s) | s/step | est. full train (s) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for v, r in suite["models"].items():
            out.append(f"| {v} | {r['psnr']:.2f} | {r['psnr_input']:.2f} | {r['residual_lag1']:.2f} | "
                       f"{r['error_lag1']:.2f} | {r['steps']} | {r['train_time_s']:.0f} | {r['step_time_s']:.3f} | "
                       f"{r['est_full_train_s']:.0f} |")
        out.append(f"\nlag-1 correlation of the true noise along {ax}: {suite['lag1_noise']:.2f} "
                   f"(box {BOX}: (8/9) x 20^2 / (20^2 + 10^2) = 0.71).\n")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_STEPS} steps per model, small test data")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"optimiser steps per model (in up to {EPOCHS} epochs)")
    ap.add_argument("--only", nargs="+", choices=("2d", "3d"), default=["2d", "3d"])
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and training batches (data are fixed)")
    ap.add_argument("--workdir", default=None, help="model folders (default: benchmarks/_runs/models_structn2v*)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        sys.exit("bench_structn2v needs scikit-image (its bundled images): pip install scikit-image")

    from importlib import metadata
    t0 = time.perf_counter()
    suites = {key: run_suite(int(key[0]), args) for key in args.only}
    versions = {}
    for pkg in ("n2v_tf", "tensorflow", "keras", "numpy", "scikit-image"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    results = dict(quick=args.quick, seed=args.seed, data_seed=SEED, noise=dict(box=BOX, stripe_sigma=STRIPE_SIGMA,
                   pixel_sigma=PIXEL_SIGMA), train_images=list(TRAIN_IMAGES), test_image=TEST_IMAGE,
                   protocol=PROTOCOL, suites=suites, total_s=time.perf_counter() - t0, versions=versions,
                   host=dict(python=platform.python_version(), cpus=os.cpu_count(), loadavg=list(os.getloadavg()),
                             finished=time.strftime("%Y-%m-%d %H:%M:%S")))
    suffix = "" if sorted(args.only) == ["2d", "3d"] else "_" + "_".join(sorted(args.only))
    path = runs_dir() / f"structn2v{suffix}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2))
    print()
    if args.quick:
        print("**QUICK smoke-run results (PSNRs not meaningful; s/step extrapolates to a full run)**\n")
    print(tables(results))
    print(f"Results written to {path} ({results['total_s']:.0f} s in all).")


if __name__ == "__main__":
    main()
