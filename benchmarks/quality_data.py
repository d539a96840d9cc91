"""Benchmark datasets and shared helpers for the Noise2Void quality benchmark.

Pure numpy + scikit-image (+ tifffile, a scikit-image dependency).  This module
must NOT import n2v_tf, tensorflow or torch: it is imported by the runners of
three different environments (our package, n2v 0.3.3 on TF 2.15, CAREamics on
PyTorch), which must all see byte-identical data.

Datasets (built once, seeded, cached as ``benchmarks/_cache/<name>_v1.npz``):

``natural``
    scikit-image's *bundled* grayscale images (no pooch download needed).
    Train: brick, clock, coins, grass, gravel, page, text.  Test: camera, moon.
    Clean = the uint8 image as float32 (0..255); noisy = clean + N(0, 25^2),
    float32, NOT clipped.  PSNR uses data_range=255, averaged over the test
    images.

``fluo``
    A real fluorescence image: the 512x512 nuclei image (2018 Kaggle Data
    Science Bowl) that the ``stardist`` wheel bundles as
    ``stardist/data/images/img2d.tif`` (scikit-image's ``human_mitosis`` needs a
    pooch download, which is impossible offline).  Clean = image / max * 30
    (photons, so the maximum is 30 photons).  Noisy = Poisson(clean) +
    N(0, (0.03 * 30)^2), float32.  Train on the left 3/4 (columns 0..383),
    test on the disjoint right 1/4 (columns 384..511, 512x128).  PSNR uses
    data_range = clean_test.max() - clean_test.min().

Training data for both: 2000 random 64x64 patches (positions seeded) from the
noisy training images (one noise realisation per image); the first 1800 are
training patches, the last 200 validation patches (90/10).  No augmentation.
Each tool normalises the data itself (n2v: mean/std of the training patches).

Run ``python benchmarks/quality_data.py`` to build/verify the cache and print a
summary.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("N2V_BENCH_CACHE", HERE / "_cache"))
RUNS_DIR = Path(os.environ.get("N2V_BENCH_RUNS", HERE / "_runs"))

DATA_VERSION = "v1"
DATASETS = ("natural", "fluo")
SEED = 20240601  # master seed; every random draw below derives from it

PATCH = 64
N_PATCHES = 2000
VAL_FRACTION = 0.1

NATURAL_TRAIN = ("brick", "clock", "coins", "grass", "gravel", "page", "text")
NATURAL_TEST = ("camera", "moon")
NATURAL_SIGMA = 25.0

FLUO_PEAK = 30.0  # photons at the brightest pixel
FLUO_READ_SIGMA = 0.03 * FLUO_PEAK  # Gaussian read noise: 3 % of the photon range
FLUO_SPLIT_COL = 384  # train: [:, :384]  test: [:, 384:]
STARDIST_WHEEL_SPEC = "stardist==0.9.2"
STARDIST_MEMBER = "stardist/data/images/img2d.tif"
# sha256 of the decoded uint16 array (tobytes) of stardist's img2d.tif
FLUO_SOURCE_SHA256 = "8952cab7611450bd761f81e14b95bdd197d5b17487ed98f6814fd35720e65963"

# --------------------------------------------------------------------------
# Common training protocol (identical for every tool)
# --------------------------------------------------------------------------
PROTOCOL = dict(
    unet_n_depth=2,
    unet_n_first=32,
    unet_kern_size=3,
    batch_norm=True,
    train_learning_rate=4e-4,
    train_batch_size=16,
    patch=PATCH,
    epochs=10,
    steps_per_epoch=100,
    n2v_perc_pix=0.198,
    n2v_neighborhood_radius=5,
    train_loss="mse",
)
QUICK = dict(epochs=1, steps_per_epoch=3)

# Variants for the n2v-compatible APIs (n2v 0.3.3 and n2v_tf).
N2V_VARIANTS = {
    "uniform_withCP": dict(n2v_manipulator="uniform_withCP"),
    "uniform_withoutCP": dict(n2v_manipulator="uniform_withoutCP"),
    "n2v2": dict(blurpool=True, skip_skipone=True, unet_residual=False, n2v_manipulator="median"),
}


def n2v_config_kwargs(variant: str, epochs: int, steps_per_epoch: int) -> dict:
    """Keyword arguments for ``N2VConfig(X, **kw)`` (n2v 0.3.3 and n2v_tf alike).

    Anything not listed keeps n2v's default (train_checkpoint='weights_best.h5',
    train_reduce_lr={'factor': 0.5, 'patience': 10}, unet_residual=False,
    single_net_per_channel=True, structN2Vmask=None, ...).  train_loss is set
    to 'mse' explicitly (n2v 0.3.3's default is 'mae'; CAREamics' N2V loss is
    the masked MSE), train_tensorboard=False to avoid logging overhead.
    """
    kw = dict(
        unet_kern_size=PROTOCOL["unet_kern_size"],
        unet_n_depth=PROTOCOL["unet_n_depth"],
        unet_n_first=PROTOCOL["unet_n_first"],
        batch_norm=PROTOCOL["batch_norm"],
        train_learning_rate=PROTOCOL["train_learning_rate"],
        train_batch_size=PROTOCOL["train_batch_size"],
        train_epochs=int(epochs),
        train_steps_per_epoch=int(steps_per_epoch),
        train_loss=PROTOCOL["train_loss"],
        train_tensorboard=False,
        n2v_perc_pix=PROTOCOL["n2v_perc_pix"],
        n2v_patch_shape=(PATCH, PATCH),
        n2v_neighborhood_radius=PROTOCOL["n2v_neighborhood_radius"],
    )
    kw.update(N2V_VARIANTS[variant])
    return kw


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *keys])


def _sample_patches(images, n, patch, rng):
    """n random patch x patch crops; image chosen proportional to #positions."""
    npos = np.array([(im.shape[0] - patch + 1) * (im.shape[1] - patch + 1) for im in images], dtype=np.float64)
    which = rng.choice(len(images), size=n, p=npos / npos.sum())
    out = np.empty((n, patch, patch), dtype=np.float32)
    for k, i in enumerate(which):
        im = images[i]
        y = rng.integers(0, im.shape[0] - patch + 1)
        x = rng.integers(0, im.shape[1] - patch + 1)
        out[k] = im[y:y + patch, x:x + patch]
    return out, which


def psnr(clean: np.ndarray, img: np.ndarray, data_range: float) -> float:
    clean = np.asarray(clean, dtype=np.float64)
    img = np.asarray(img, dtype=np.float64)
    mse = np.mean((clean - img) ** 2)
    return float(10.0 * np.log10(data_range ** 2 / mse))


# --------------------------------------------------------------------------
# natural images
# --------------------------------------------------------------------------
def _load_skimage_gray(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    if im.ndim != 2:
        raise ValueError(f"skimage.data.{name} is not grayscale: {im.shape}")
    return im.astype(np.float32)


def _build_natural() -> dict:
    train_clean = [_load_skimage_gray(n) for n in NATURAL_TRAIN]
    test_clean = [_load_skimage_gray(n) for n in NATURAL_TEST]
    train_noisy = [
        (c + _rng(1, i).normal(0.0, NATURAL_SIGMA, c.shape)).astype(np.float32) for i, c in enumerate(train_clean)
    ]
    test_noisy = [
        (c + _rng(2, i).normal(0.0, NATURAL_SIGMA, c.shape)).astype(np.float32) for i, c in enumerate(test_clean)
    ]
    patches, which = _sample_patches(train_noisy, N_PATCHES, PATCH, _rng(3))
    meta = dict(
        description="scikit-image bundled grayscale images + Gaussian noise sigma=25 (0..255 scale, float32, unclipped)",
        train_images=list(NATURAL_TRAIN),
        train_image_shapes=[list(c.shape) for c in train_clean],
        patches_per_train_image=np.bincount(which, minlength=len(train_clean)).tolist(),
        test_images=list(NATURAL_TEST),
        sigma=NATURAL_SIGMA,
        data_range=[255.0] * len(test_clean),
        data_range_rule="255",
    )
    return dict(patches=patches, test_noisy=test_noisy, test_clean=test_clean, test_names=list(NATURAL_TEST), meta=meta)


# --------------------------------------------------------------------------
# fluorescence image
# --------------------------------------------------------------------------
def _read_tif_bytes(b: bytes) -> np.ndarray:
    import tifffile

    return tifffile.imread(io.BytesIO(b))


def _find_stardist_image() -> tuple[np.ndarray, str]:
    """Locate stardist's bundled img2d.tif without importing stardist (and TF)."""
    env = os.environ.get("N2V_BENCH_FLUO_TIF")
    if env:
        return _read_tif_bytes(Path(env).read_bytes()), env
    import importlib.util

    spec = importlib.util.find_spec("stardist")  # does not execute the package
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "data" / "images" / "img2d.tif"
            if p.exists():
                return _read_tif_bytes(p.read_bytes()), str(p)
    wheels = sorted(glob.glob(str(CACHE_DIR / "stardist-*.whl")))
    if not wheels:
        # Fetch ONLY the wheel (no dependencies) from PyPI with pip; the image is
        # read straight out of the zip, stardist is never installed or imported.
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"[quality_data] downloading {STARDIST_WHEEL_SPEC} wheel (no deps) into {CACHE_DIR} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", STARDIST_WHEEL_SPEC, "--no-deps", "--only-binary=:all:",
               "-d", str(CACHE_DIR), "-q"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(glob.glob(str(CACHE_DIR / "stardist-*.whl")))
        if not wheels:
            raise RuntimeError(
                "Could not find stardist's bundled img2d.tif. Install stardist, set N2V_BENCH_FLUO_TIF, or put a "
                f"stardist wheel into {CACHE_DIR} (pip download {STARDIST_WHEEL_SPEC} --no-deps -d {CACHE_DIR}).\n"
                f"pip said: {r.stdout}\n{r.stderr}"
            )
    with zipfile.ZipFile(wheels[-1]) as z:
        return _read_tif_bytes(z.read(STARDIST_MEMBER)), f"{wheels[-1]}!{STARDIST_MEMBER}"


def _build_fluo() -> dict:
    src, where = _find_stardist_image()
    if src.shape != (512, 512):
        raise ValueError(f"unexpected stardist img2d.tif shape {src.shape}")
    if _sha(src) != FLUO_SOURCE_SHA256:
        print(f"[quality_data] WARNING: {where} differs from the image this benchmark was defined with "
              f"(sha256 {_sha(src)} != {FLUO_SOURCE_SHA256}); results are not comparable.", flush=True)
    clean = (src.astype(np.float64) / float(src.max()) * FLUO_PEAK).astype(np.float32)
    rng = _rng(4)
    noisy = (rng.poisson(clean.astype(np.float64)) + rng.normal(0.0, FLUO_READ_SIGMA, clean.shape)).astype(np.float32)
    train_noisy = noisy[:, :FLUO_SPLIT_COL]
    test_noisy = noisy[:, FLUO_SPLIT_COL:].copy()
    test_clean = clean[:, FLUO_SPLIT_COL:].copy()
    patches, _ = _sample_patches([train_noisy], N_PATCHES, PATCH, _rng(5))
    dr = float(test_clean.max() - test_clean.min())
    meta = dict(
        description=(
            "stardist-bundled DSB2018 fluorescence nuclei image (img2d.tif) scaled to max 30 photons; "
            "Poisson shot noise + Gaussian read noise sigma=0.9 (3% of 30)"
        ),
        source=where.replace(str(HERE), "benchmarks"),
        source_sha256=_sha(src),
        source_dtype=str(src.dtype),
        source_max=float(src.max()),
        peak_photons=FLUO_PEAK,
        read_sigma=FLUO_READ_SIGMA,
        train_region="[:, 0:384] (512x384, left 3/4)",
        test_region="[:, 384:512] (512x128, right 1/4)",
        data_range=[dr],
        data_range_rule="clean_test.max() - clean_test.min()",
    )
    return dict(patches=patches, test_noisy=[test_noisy], test_clean=[test_clean], test_names=["fluo_right_quarter"],
                meta=meta)


_BUILDERS = {"natural": _build_natural, "fluo": _build_fluo}


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def cache_path(name: str) -> Path:
    return CACHE_DIR / f"{name}_{DATA_VERSION}.npz"


def _save(name: str, d: dict) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    n_val = int(round(VAL_FRACTION * N_PATCHES))
    arrays = {
        "X_train": d["patches"][: N_PATCHES - n_val, :, :, None],
        "X_val": d["patches"][N_PATCHES - n_val:, :, :, None],
    }
    for i, (nz, cl) in enumerate(zip(d["test_noisy"], d["test_clean"])):
        arrays[f"test_noisy_{i}"] = nz.astype(np.float32)
        arrays[f"test_clean_{i}"] = cl.astype(np.float32)
    meta = dict(d["meta"])
    meta.update(
        name=name,
        data_version=DATA_VERSION,
        seed=SEED,
        patch=PATCH,
        n_patches=N_PATCHES,
        n_train=int(arrays["X_train"].shape[0]),
        n_val=int(arrays["X_val"].shape[0]),
        test_names=d["test_names"],
        test_shapes=[list(a.shape) for a in d["test_noisy"]],
        built_with=dict(numpy=np.__version__, python=platform.python_version()),
    )
    meta["sha256"] = {k: _sha(v) for k, v in arrays.items()}
    arrays["meta_json"] = np.array(json.dumps(meta))
    tmp = cache_path(name).with_suffix(f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, cache_path(name))


def load(name: str, rebuild: bool = False) -> dict:
    """Return the dataset ``name`` (built and cached on first use).

    Keys: ``X_train`` (N,64,64,1) float32, ``X_val`` (M,64,64,1) float32,
    ``test_noisy`` / ``test_clean``: lists of 2-D float32 arrays,
    ``test_names``, ``data_range`` (list of floats, one per test image),
    ``meta`` (dict; ``meta['sha256']`` identifies the exact arrays).
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown dataset {name!r}; choose from {DATASETS}")
    p = cache_path(name)
    if rebuild or not p.exists():
        _save(name, _BUILDERS[name]())
    with np.load(p, allow_pickle=False) as z:
        meta = json.loads(str(z["meta_json"]))
        n = len(meta["test_names"])
        return dict(
            name=name,
            X_train=z["X_train"],
            X_val=z["X_val"],
            test_noisy=[z[f"test_noisy_{i}"] for i in range(n)],
            test_clean=[z[f"test_clean_{i}"] for i in range(n)],
            test_names=meta["test_names"],
            data_range=[float(v) for v in meta["data_range"]],
            meta=meta,
        )


def evaluate(ds: dict, preds) -> dict:
    """PSNR of predictions and of the noisy input, per test image and mean."""
    per = []
    for name, nz, cl, dr, pr in zip(ds["test_names"], ds["test_noisy"], ds["test_clean"], ds["data_range"], preds):
        pr = np.asarray(pr, dtype=np.float32).reshape(cl.shape)
        per.append(dict(image=name, psnr=psnr(cl, pr, dr), psnr_input=psnr(cl, nz, dr), data_range=dr))
    return dict(
        psnr=float(np.mean([p["psnr"] for p in per])),
        psnr_input=float(np.mean([p["psnr_input"] for p in per])),
        per_image=per,
    )


def predict_timed(predict, ds: dict) -> tuple[list, float]:
    """``predict(img)`` on every noisy test image; returns the predictions and the seconds taken."""
    t0 = time.perf_counter()
    preds = [predict(img) for img in ds["test_noisy"]]
    return preds, time.perf_counter() - t0


def run_record(ds: dict, preds, *, train_time: float, pred_time: float, epochs: int, steps_per_epoch: int,
               batch_size: int, **extra) -> dict:
    """The result record every runner writes: :func:`evaluate` plus timing and schedule, plus ``extra``."""
    res = evaluate(ds, preds)
    res.update(train_time_s=train_time, predict_time_s=pred_time, epochs=epochs, steps_per_epoch=steps_per_epoch,
               steps=epochs * steps_per_epoch, batch_size=batch_size, **extra)
    return res


# --------------------------------------------------------------------------
# CLI / result helpers shared by the runners
# --------------------------------------------------------------------------
def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--epochs", type=int, default=None, help=f"default {PROTOCOL['epochs']} (quick: {QUICK['epochs']})")
    ap.add_argument("--steps-per-epoch", type=int, default=None,
                    help=f"default {PROTOCOL['steps_per_epoch']} (quick: {QUICK['steps_per_epoch']})")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny number of steps; results go to _runs/quick/")
    ap.add_argument("--seed", type=int, default=0, help="seed for the training RNGs (data is fixed independently)")
    ap.add_argument("--workdir", default=None, help="where models are written (default: _runs/models[_quick])")


def schedule(args) -> tuple[int, int]:
    base = QUICK if args.quick else PROTOCOL
    epochs = args.epochs if args.epochs is not None else base["epochs"]
    spe = args.steps_per_epoch if args.steps_per_epoch is not None else base["steps_per_epoch"]
    return epochs, spe


def runs_dir(quick: bool) -> Path:
    d = RUNS_DIR / "quick" if quick else RUNS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def models_dir(args) -> Path:
    if args.workdir:
        d = Path(args.workdir)
    else:
        d = RUNS_DIR / ("models_quick" if args.quick else "models")
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_result(tool: str, variant: str, ds: dict, res: dict, quick: bool) -> Path:
    out = dict(tool=tool, variant=variant, dataset=ds["name"], quick=bool(quick))
    out.update(res)
    out.setdefault("data", dict(data_version=ds["meta"]["data_version"], sha256=ds["meta"]["sha256"],
                                n_train=ds["meta"]["n_train"], n_val=ds["meta"]["n_val"]))
    out.setdefault("host", dict(python=platform.python_version(), machine=platform.machine(),
                                cpus=os.cpu_count(), finished=time.strftime("%Y-%m-%d %H:%M:%S")))
    p = runs_dir(quick) / f"{tool}_{variant}_{ds['name']}.json"
    p.write_text(json.dumps(out, indent=2))
    print(f"[{tool}/{variant}/{ds['name']}] PSNR {res['psnr']:.2f} dB (input {res['psnr_input']:.2f} dB), "
          f"train {res.get('train_time_s', float('nan')):.0f} s -> {p}", flush=True)
    return p


def pkg_versions(*names: str) -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = ap.parse_args(argv)
    for name in args.datasets:
        t = time.time()
        ds = load(name, rebuild=args.rebuild)
        ev = evaluate(ds, ds["test_noisy"])
        print(f"{name}: X_train {ds['X_train'].shape} X_val {ds['X_val'].shape} "
              f"mean {ds['X_train'].mean():.3f} std {ds['X_train'].std():.3f}; "
              f"test {[a.shape for a in ds['test_noisy']]}; input PSNR "
              + ", ".join(f"{p['image']} {p['psnr_input']:.2f}" for p in ev["per_image"])
              + f" (mean {ev['psnr_input']:.2f} dB); data_range {ds['data_range']}; {time.time() - t:.1f}s; "
              f"{cache_path(name)}")


if __name__ == "__main__":
    main()
