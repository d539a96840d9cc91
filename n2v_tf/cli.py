"""Command-line interface of n2v_tf: ``n2v-tf train``, ``predict``, ``demo`` and ``analyze-noise``.

Also available as ``python -m n2v_tf``. :func:`main` takes an argument list and returns the exit
code (0: success, 2: a usage or data error, reported as one line on stderr, 130: interrupted).

Examples
--------
.. code-block:: console

    $ n2v-tf train data/noisy/ --axes YX --model-dir models --name my_n2v2 --preset n2v2 --epochs 50
    $ n2v-tf predict data/noisy/*.tif --model-dir models --name my_n2v2 --output denoised/
    $ n2v-tf demo --outdir n2v_demo
    $ n2v-tf analyze-noise dark_frame.tif --png dark_frame_acf.png
    $ n2v-tf analyze-noise data/noisy/img1.tif --model-dir models --name my_n2v --crop 0:256,0:256
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["main", "build_parser"]

PROG = "n2v-tf"
#: File name endings searched for in input folders.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
#: Default training patch shapes (clipped to the image size).
DEFAULT_PATCH = {2: (64, 64), 3: (32, 64, 64)}
#: Architecture and masking of the presets (on top of the N2VConfig defaults).
PRESETS = {
    "n2v": dict(n2v_manipulator="uniform_withCP", unet_residual=False, blurpool=False, skip_skipone=False),
    "n2v2": dict(n2v_manipulator="median", unet_residual=False, blurpool=True, skip_skipone=True),
}
#: Demo settings: the full run takes about 2 minutes on 2 CPU cores; --quick a few seconds.
DEMO_FULL = dict(epochs=15, steps=20, batch_size=16, patch=64, n_first=16, depth=2, learning_rate=1e-3)
DEMO_QUICK = dict(epochs=1, steps=2, batch_size=4, patch=32, n_first=8, depth=1, learning_rate=1e-3)
DEMO_FILES = ("nuclei_noisy.tif", "nuclei_clean.tif")


class CLIError(Exception):
    """A user error (bad file, axes, size): printed as one line, exit code 2, no traceback."""


# --------------------------------------------------------------------------- input files and axes

def collect_files(inputs: Sequence[str]) -> list[Path]:
    """Expand files and folders (their ``*.tif``, ``*.tiff``, ``*.png``, sorted) into a list of files."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"folder '{p}' contains no images (*.tif, *.tiff, *.png)")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise CLIError(f"input '{p}' does not exist (no such file or folder)")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def parse_axes(axes: str) -> str:
    """Check an axes string (letters S, T, Z, Y, X, C, each at most once, with Y and X); return it upper-case."""
    a = axes.strip().upper()
    bad = sorted(set(a) - set("STZYXC"))
    if bad or len(set(a)) != len(a) or not {"Y", "X"} <= set(a) or ("S" in a and "T" in a):
        raise CLIError(f"--axes {axes!r} is invalid: use the letters S (or T), Z, Y, X, C, each at most once, "
                       "including Y and X (e.g. YX, ZYX, YXC, TYX)")
    return a


def read_checked(path: Path, axes: str) -> np.ndarray:
    """Read an image and check that it has one dimension per letter of ``axes``."""
    from .data import read_image
    try:
        img = read_image(str(path))
    except FileNotFoundError:
        raise CLIError(f"cannot read '{path}': file not found") from None
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot read '{path}' as an image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                       ) from None
    if not np.issubdtype(img.dtype, np.number) or img.dtype == np.bool_:
        raise CLIError(f"'{path}': unsupported pixel type {img.dtype}")
    if img.ndim != len(axes):
        hint = ""
        if img.ndim == len(axes) + 1 and img.shape[-1] in (3, 4) and "C" not in axes:
            hint = f"; for colour channels add C, e.g. --axes {axes}C"
        elif img.ndim == len(axes) + 1:
            hint = "; for a stack use e.g. --axes ZYX (3D) or SYX (a series of 2D images)"
        raise CLIError(f"--axes {axes} does not fit '{path}': the image has {img.ndim} dimension(s), shape "
                       f"{img.shape}, but --axes has {len(axes)} letter(s){hint}")
    return img


def to_training_images(img: np.ndarray, axes: str) -> list[np.ndarray]:
    """Split S/T and move the channel last: a list of float32 ``(Y, X, C)`` or ``(Z, Y, X, C)`` images."""
    ax = axes.replace("T", "S")
    if "S" not in ax:
        img, ax = img[np.newaxis], "S" + ax
    if "C" not in ax:
        img, ax = img[..., np.newaxis], ax + "C"
    target = "S" + ("Z" if "Z" in ax else "") + "YXC"
    img = np.transpose(img, [ax.index(a) for a in target])
    return [np.ascontiguousarray(x, dtype=np.float32) for x in img]


def load_training_images(files: Sequence[Path], axes: str) -> list[tuple[str, np.ndarray]]:
    """Read all files; return ``(label, image)`` pairs of channel-last float32 images."""
    out: list[tuple[str, np.ndarray]] = []
    for f in files:
        imgs = to_training_images(read_checked(f, axes), axes)
        out += [(str(f) if len(imgs) == 1 else f"{f}[{i}]", im) for i, im in enumerate(imgs)]
    channels = {im.shape[-1] for _, im in out}
    if len(channels) > 1:
        raise CLIError(f"the images have different channel counts {sorted(channels)} (--axes {axes})")
    for label, im in out:
        if not np.isfinite(im).all():
            raise CLIError(f"'{label}' contains NaN or infinite values")
    return out


# --------------------------------------------------------------------------- patch shape and validation split

def _divisor(depth: int) -> int:
    """Patch sizes must be multiples of this (the U-Net halves the size ``depth`` times; at least 4)."""
    return max(4, 2 ** depth)


def choose_patch(requested: Sequence[int] | None, n_dim: int, images: Sequence[tuple[str, np.ndarray]],
                 div: int) -> tuple[int, ...]:
    """The training patch: ``requested`` (checked) or the default clipped to the smallest image and to ``div``."""
    if requested:
        req = tuple(int(p) for p in requested)
        if len(req) == 1:
            req = req * n_dim
        if len(req) != n_dim:
            raise CLIError(f"--patch needs 1 or {n_dim} sizes for {n_dim}D images, got {len(req)}")
        if any(p < div or p % div for p in req):
            raise CLIError(f"--patch sizes must be positive multiples of {div} (2**depth, at least 4), got {req}")
        for label, im in images:
            if any(s < p for s, p in zip(im.shape[:-1], req)):
                raise CLIError(f"image '{label}' (size {im.shape[:-1]}) is smaller than the patch {req}: "
                               "use a smaller --patch")
        return req
    smallest = np.min([im.shape[:-1] for _, im in images], axis=0)
    patch = tuple(int(min(d, s) // div * div) for d, s in zip(DEFAULT_PATCH[n_dim], smallest))
    if min(patch) < div:
        label, im = min(images, key=lambda li: min(li[1].shape[:-1]))
        raise CLIError(f"image '{label}' (size {im.shape[:-1]}) is too small for training: every spatial size must "
                       f"be at least {div} pixels")
    return patch


def split_validation(images: list[tuple[str, np.ndarray]], patch: tuple[int, ...], fraction: float, div: int,
                     patch_given: bool) -> tuple[list[np.ndarray], list[np.ndarray], tuple[int, ...], str]:
    """Hold out validation data: the last ``fraction`` of the images, or of a single image's rows.

    Returns ``(train, val, patch, description)``; the patch height may shrink so that both parts of a
    single image hold a patch.
    """
    if len(images) >= 2:
        n_val = min(len(images) - 1, max(1, round(fraction * len(images))))
        train = [im for _, im in images[:-n_val]]
        val = [im for _, im in images[-n_val:]]
        return train, val, patch, f"{len(train)} training image(s), {n_val} validation image(s)"
    label, im = images[0]
    H = im.shape[-3]                     # Y is the third-last axis of (..., Y, X, C)
    py = patch[-2]
    val_rows = max(math.ceil(fraction * H), py)
    if H - val_rows < py:
        if patch_given:
            raise CLIError(f"image '{label}' has {H} rows: too few for a training and a validation region of at "
                           f"least {py} rows (the patch height) each; use a smaller --patch or more images")
        py = (H // 2) // div * div
        if py < div:
            raise CLIError(f"image '{label}' (size {im.shape[:-1]}) is too small to hold out a validation region")
        patch = patch[:-2] + (py,) + patch[-1:]
        val_rows = max(math.ceil(fraction * H), py)
    train = [im[..., :H - val_rows, :, :]]
    val = [im[..., H - val_rows:, :, :]]
    return train, val, patch, (f"1 image: rows 0-{H - val_rows - 1} for training, the bottom {val_rows} rows "
                               "for validation")


# --------------------------------------------------------------------------- training (shared by train and demo)

def _parse_struct_mask(text: str | None, n_dim: int) -> list | None:
    """``--struct-mask``: the literal printed by analyze-noise (``[[1, 1, 1]]``) or ``AXIS:SPAN`` (``X:9``)."""
    import json
    from .analysis import struct_mask
    if text is None:
        return None
    if ":" in text and not text.lstrip().startswith("["):
        axis, _, span = text.partition(":")
        try:
            return struct_mask(axis.strip(), int(span), n_dim).tolist()
        except ValueError as e:
            raise CLIError(f"--struct-mask {text!r}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise CLIError(f"--struct-mask {text!r}: expected AXIS:SPAN (e.g. X:9) or the literal printed by "
                       "'n2v-tf analyze-noise' (e.g. [[1, 1, 1, 1, 1]])") from None


def _make_config(train: list[np.ndarray], patch: tuple[int, ...], preset: str, *, epochs: int, steps: int,
                 batch_size: int, depth: int, kernel_size: int, n_first: int, perc_pix: float, learning_rate: float,
                 tensorboard: bool, struct_mask: str | None = None):
    from .config import N2VConfig
    from .masking import box_size
    n_dim = len(patch)
    box = box_size(perc_pix, n_dim)
    if np.prod(patch) < box ** n_dim:
        raise CLIError(f"the patch {patch} is too small for --perc-pix {perc_pix}: a patch needs at least "
                       f"{box ** n_dim} pixels (one blind spot per {box}^{n_dim} box); use larger images or a larger "
                       "--perc-pix")
    try:
        config = N2VConfig(train, unet_kern_size=kernel_size, unet_n_depth=depth, unet_n_first=n_first,
                           n2v_perc_pix=perc_pix, n2v_patch_shape=tuple(patch), train_epochs=epochs,
                           train_steps_per_epoch=steps, train_batch_size=batch_size, train_learning_rate=learning_rate,
                           train_tensorboard=tensorboard, structN2Vmask=_parse_struct_mask(struct_mask, n_dim),
                           **PRESETS[preset])
        config.validate()
    except ValueError as e:
        raise CLIError(str(e)) from None
    return config


def _train_model(train: list[np.ndarray], val: list[np.ndarray], config, model_dir: Path, name: str,
                 overwrite: bool, verbose: int, seed: int | None):
    """Create the model folder and train; returns ``(model, history, seconds)``."""
    import keras
    from .models import N2V
    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="output path for model already exists")
            model = N2V(config, name, basedir=str(model_dir), overwrite=overwrite)
    except (FileExistsError, ValueError) as e:
        raise CLIError(str(e)) from None
    t0 = time.perf_counter()
    history = model.train(train, val, verbose=verbose, seed=seed)
    return model, history, time.perf_counter() - t0


def cmd_train(args: argparse.Namespace) -> int:
    axes = parse_axes(args.axes)
    if not 0 < args.val_fraction <= 0.5:
        raise CLIError(f"--val-fraction must be in (0, 0.5], got {args.val_fraction}")
    for flag in ("epochs", "steps", "batch_size", "n_first", "depth"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    folder = Path(args.model_dir) / args.name
    if (folder / "config.json").exists() and not args.overwrite:
        raise CLIError(f"model folder '{folder}' already exists: choose another --name or pass --overwrite")
    files = collect_files(args.inputs)
    images = load_training_images(files, axes)
    n_dim = 3 if "Z" in axes else 2
    div = _divisor(args.depth)
    patch = choose_patch(args.patch, n_dim, images, div)
    train, val, patch, split = split_validation(images, patch, args.val_fraction, div, bool(args.patch))
    config = _make_config(train, patch, args.preset, epochs=args.epochs, steps=args.steps,
                          batch_size=args.batch_size, depth=args.depth, kernel_size=args.kernel_size,
                          n_first=args.n_first, perc_pix=args.perc_pix, learning_rate=args.learning_rate,
                          tensorboard=args.tensorboard, struct_mask=args.struct_mask)
    print(f"{len(files)} file(s), {len(images)} image(s) with axes {axes}; {split}")
    print(f"{args.preset.upper()}: {n_dim}D patches {patch}, batch {args.batch_size}, {args.epochs} epoch(s) x "
          f"{args.steps} step(s), U-Net depth {args.depth}, kernel {args.kernel_size}, n_first {args.n_first}")
    model, history, seconds = _train_model(train, val, config, Path(args.model_dir), args.name, args.overwrite,
                                           args.verbose, args.seed)
    val_loss = history.history.get("val_loss", [float("nan")])
    print(f"Training took {seconds:.0f} s (best val_loss {np.nanmin(val_loss):.4g}). Model saved in '{folder}'.")
    print(f"Denoise with: {PROG} predict IMAGES --model-dir {args.model_dir} --name {args.name} --axes {axes} "
          "--output OUTDIR")
    return 0


# --------------------------------------------------------------------------- prediction

def load_model(model_dir: str, name: str):
    """Load a trained model folder (n2v_tf or n2v 0.3.x) or raise :class:`CLIError`."""
    from .models import N2V
    folder = Path(model_dir) / name
    if not (folder / "config.json").is_file():
        raise CLIError(f"no model '{name}' in '{model_dir}': '{folder / 'config.json'}' not found")
    if not any(folder.glob("*.h5")) and not any(folder.glob("*.hdf5")):
        raise CLIError(f"model folder '{folder}' contains no weight file (*.h5): was the training finished?")
    try:
        return N2V(None, name, basedir=str(model_dir))
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot load model '{folder}': {e}") from None


def _output_path(outdir: Path, f: Path) -> Path:
    return outdir / (f.stem + "_n2v.tif")


def cmd_predict(args: argparse.Namespace) -> int:
    import tifffile
    from tqdm.auto import tqdm
    files = collect_files(args.inputs)
    model = load_model(args.model_dir, args.name)
    c = model.config
    spatial = "ZYX" if c.n_dim == 3 else "YX"
    axes = parse_axes(args.axes) if args.axes else spatial + ("C" if c.n_channel_in > 1 else "")
    if set(axes) - set("CST") != set(spatial):
        raise CLIError(f"--axes {axes} does not fit the {c.n_dim}D model '{args.name}': it needs the axes {spatial}, "
                       "optionally C and one of S/T")
    if args.n_tiles is not None and min(args.n_tiles) < 1:
        raise CLIError(f"--n-tiles must be positive integers, got {args.n_tiles}")
    outdir = Path(args.output)
    outputs = [_output_path(outdir, f) for f in files]
    if len(set(outputs)) != len(outputs):
        dup = next(o for o in outputs if outputs.count(o) > 1)
        raise CLIError(f"several inputs would be written to '{dup}': give files with different names")
    outdir.mkdir(parents=True, exist_ok=True)
    for f, out in zip(tqdm(files, desc="Denoising", unit="file", file=sys.stderr), outputs):
        img = read_checked(f, axes)
        if args.n_tiles is not None and len(args.n_tiles) != img.ndim:
            raise CLIError(f"--n-tiles needs one number per axis of '{f}' ({axes}: {img.ndim}), "
                           f"got {len(args.n_tiles)}")
        try:
            pred = model.predict(img, axes, n_tiles=args.n_tiles, tta=args.tta)
        except ValueError as e:
            raise CLIError(f"'{f}': {e}") from None
        tifffile.imwrite(out, pred.astype(np.float32, copy=False), metadata={"axes": axes})
    print(f"Wrote {len(files)} denoised image(s) to '{outdir}'.")
    return 0


# --------------------------------------------------------------------------- demo

def load_demo_data() -> tuple[np.ndarray, np.ndarray]:
    """The shipped demo: ``(noisy float32, clean uint8)`` 256x256 fluorescence nuclei (see demo_data/README.md)."""
    from importlib.resources import as_file, files
    import tifffile
    arrays = []
    for fname in DEMO_FILES:
        with as_file(files("n2v_tf") / "demo_data" / fname) as p:
            if not Path(p).is_file():
                raise CLIError(f"demo image '{fname}' is missing from the installed package ({p})")
            arrays.append(tifffile.imread(p))
    return arrays[0], arrays[1]


def to_uint8(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Scale ``[lo, hi]`` to ``[0, 255]`` (clipped)."""
    return (np.clip((np.asarray(img, np.float64) - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def save_side_by_side(path: Path, images: Sequence[np.ndarray], reference: np.ndarray, gap: int = 4) -> None:
    """Save images next to each other as an 8-bit PNG, all with the contrast limits of ``reference``."""
    from PIL import Image
    lo, hi = np.percentile(reference, [0.5, 99.8])
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(np.full((im.shape[0], gap), 255, np.uint8))
        parts.append(to_uint8(im, lo, hi))
    Image.fromarray(np.concatenate(parts, axis=1)).save(path)


def cmd_demo(args: argparse.Namespace) -> int:
    import tifffile
    from .qc import psnr
    s = dict(DEMO_QUICK if args.quick else DEMO_FULL)
    for key in ("epochs", "steps"):
        if getattr(args, key) is not None:
            if getattr(args, key) < 1:
                raise CLIError(f"--{key} must be >= 1, got {getattr(args, key)}")
            s[key] = getattr(args, key)
    noisy, clean = load_demo_data()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    div = _divisor(s["depth"])
    images = [("demo", noisy[..., np.newaxis].astype(np.float32))]
    patch = choose_patch([s["patch"]], 2, images, div)
    train, val, patch, split = split_validation(images, patch, 0.1, div, True)
    config = _make_config(train, patch, "n2v2", epochs=s["epochs"], steps=s["steps"], batch_size=s["batch_size"],
                          depth=s["depth"], kernel_size=3, n_first=s["n_first"], perc_pix=0.198,
                          learning_rate=s["learning_rate"], tensorboard=False)
    print(f"N2V2 demo: noisy fluorescence nuclei {noisy.shape} (~30 photons at the brightest pixel); {split}")
    print(f"Training {s['epochs']} epoch(s) x {s['steps']} step(s), batch {s['batch_size']}, patches {patch}"
          + (" (quick mode)" if args.quick else ""))
    model, _, seconds = _train_model(train, val, config, outdir / "models", "n2v2_demo", True, args.verbose,
                                     seed=0)
    denoised = model.predict(noisy, "YX")
    p_in, p_out = psnr(clean, noisy), psnr(clean, denoised)
    tif, png = outdir / "nuclei_n2v2.tif", outdir / "nuclei_noisy_denoised_clean.png"
    tifffile.imwrite(tif, denoised.astype(np.float32))
    save_side_by_side(png, [noisy, denoised, clean], clean)
    print(f"Training took {seconds:.0f} s.")
    print(f"PSNR input (noisy):     {p_in:.2f} dB")
    print(f"PSNR output (denoised): {p_out:.2f} dB")
    print(f"Wrote '{tif}' and '{png}' (noisy | denoised | clean); model in '{outdir / 'models' / 'n2v2_demo'}'.")
    return 0


# --------------------------------------------------------------------------- noise analysis (structN2V mask)

def parse_crop(text: str, names: str, shape: Sequence[int]) -> tuple[slice, ...]:
    """Parse ``--crop`` (``START:STOP`` per spatial axis, comma-separated, e.g. ``0:128,64:``) into slices.

    Bounds may be left out (``:``, ``10:``) or negative (counted from the end, as in Python); the
    resolved range must satisfy ``0 <= start < stop <= size`` for every axis.
    """
    parts = [p.strip() for p in text.split(",")]
    example = ",".join(f"{a}0:{a}1" for a in names)
    if len(parts) != len(names):
        raise CLIError(f"--crop {text!r} needs one START:STOP range per spatial axis ({names}: {example}), "
                       f"got {len(parts)}")
    slices = []
    for part, axis, size in zip(parts, names, shape):
        bounds = part.split(":")
        try:
            if len(bounds) != 2:
                raise ValueError
            lo, hi = (int(b) if b.strip() else None for b in bounds)
        except ValueError:
            raise CLIError(f"--crop {text!r}: '{part}' is not a START:STOP range of integers (e.g. {example})"
                           ) from None
        lo_r = 0 if lo is None else (lo + size if lo < 0 else lo)
        hi_r = size if hi is None else (hi + size if hi < 0 else hi)
        if not 0 <= lo_r < hi_r <= size:
            raise CLIError(f"--crop {text!r}: the range '{part}' along {axis} is empty or outside the image "
                           f"(size {size} along {axis})")
        slices.append(slice(lo_r, hi_r))
    return tuple(slices)


def cmd_analyze_noise(args: argparse.Namespace) -> int:
    from .analysis import mask_literal, plot_autocorrelation, suggest_struct_mask
    src = Path(args.input)
    if src.is_dir():
        raise CLIError(f"INPUT '{src}' is a folder: give one noise image (a stack of images: --axes SYX)")
    if not src.is_file():
        raise CLIError(f"input '{src}' does not exist (no such file)")
    if (args.model_dir is None) != (args.name is None):
        raise CLIError("--model-dir and --name go together: give both to analyse the residual of that model, "
                       "or neither to analyse INPUT itself")
    model = load_model(args.model_dir, args.name) if args.model_dir is not None else None
    if args.axes is not None:
        axes = parse_axes(args.axes)
    elif model is not None:
        axes = "ZYX" if model.config.n_dim == 3 else "YX"
    else:
        axes = "YX"
    if "C" in axes:
        raise CLIError(f"--axes {axes}: analyze-noise works on one channel; save the channel to analyse as its own "
                       "image (use --axes YX, ZYX, or SYX/SZYX for a stack)")
    img = read_checked(src, axes)
    if model is not None:
        try:
            img = np.asarray(img, dtype=np.float64) - model.predict(img, axes)
        except ValueError as e:
            raise CLIError(f"cannot predict '{src}' with model '{args.name}': {e}") from None
    canon = ("S" if ("S" in axes or "T" in axes) else "") + ("Z" if "Z" in axes else "") + "YX"
    order = [axes.replace("T", "S").index(a) for a in canon]
    noise = np.transpose(np.asarray(img, dtype=np.float64), order)
    spatial = canon.replace("S", "")
    n_dim = len(spatial)
    if args.crop:
        crop = parse_crop(args.crop, spatial, noise.shape[-n_dim:])
        noise = noise[(Ellipsis,) + crop]
    if not np.isfinite(noise).all():
        raise CLIError(f"'{src}' contains NaN or infinite values")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mask, acf = suggest_struct_mask(noise, threshold=args.threshold, max_span=args.max_span, n_dim=n_dim,
                                            min_correlation=args.min_correlation)
        except ValueError as e:
            raise CLIError(str(e)) from None
    what = f"the residual of model '{args.name}' (input - prediction) on '{src}'" if model is not None else f"'{src}'"
    size = "x".join(str(s) for s in noise.shape[-n_dim:])
    stack = f", {noise.shape[0]} images" if noise.ndim > n_dim else ""
    print(f"Noise autocorrelation of {what}: {spatial} {size} pixels{stack}"
          + (f" (crop {args.crop})" if args.crop else ""))
    centre = tuple(s // 2 for s in acf.shape)
    lag1 = ", ".join(f"{a} {acf[centre[:i] + (centre[i] + 1,) + centre[i + 1:]]:.3f}" for i, a in enumerate(spatial))
    print(f"Correlation with the next pixel along {lag1} (threshold {args.threshold:g} x the strongest "
          f"neighbour; floor {args.min_correlation:g})")
    for w in caught:
        if mask.size == 1 and "plain N2V" in str(w.message):
            continue                                   # said below, on stdout
        print(f"{PROG} {args.command}: warning: {w.message}", file=sys.stderr)
    spans = ", ".join(f"{a} {s}" for a, s in zip(spatial, mask.shape))
    if mask.size == 1:
        print(f"Suggested mask spans: {spans} -- the noise looks pixel-wise independent: plain N2V "
              "(structN2Vmask=None) suffices.")
    else:
        print(f"Suggested mask spans: {spans} ({int(mask.sum()) - 1} hidden pixel(s) around each blind spot)")
    print(f"structN2Vmask={mask_literal(mask)}")
    if not args.no_png:
        png = Path(args.png) if args.png else Path.cwd() / f"{src.stem}_acf.png"
        try:
            plot_autocorrelation(acf, mask, path=str(png), threshold=args.threshold,
                                 title=f"noise autocorrelation: {src.name}"
                                       + (f" (residual of {args.name})" if model is not None else ""))
        except ImportError:
            if args.png:
                raise CLIError("--png needs matplotlib: pip install matplotlib") from None
            print(f"{PROG} {args.command}: note: matplotlib is not installed, no plot written "
                  "(pip install matplotlib)", file=sys.stderr)
        except (OSError, ValueError) as e:
            raise CLIError(f"cannot write '{png}': {e}") from None
        else:
            print(f"Wrote the autocorrelation plot '{png}'.")
    return 0


# --------------------------------------------------------------------------- argument parsing

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for required options, flags and options without a default."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``n2v-tf`` (subcommands train, predict, demo, analyze-noise)."""
    from . import __version__
    from .analysis import DEFAULT_MIN_CORRELATION, DEFAULT_THRESHOLD
    parser = argparse.ArgumentParser(
        prog=PROG, description="Noise2Void / N2V2 self-supervised denoising (TensorFlow / Keras 3).",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = _HelpFormatter

    t = sub.add_parser("train", formatter_class=fmt, help="train a model on noisy images",
                       description="Train an N2V or N2V2 model on noisy images (no clean data needed). Images of "
                                   "different sizes are fine: random patches are cropped on the fly.")
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF/PNG files or folders (all *.tif, *.tiff, *.png)")
    t.add_argument("--axes", default="YX", help="axes of the images, e.g. YX, YXC, ZYX, SYX/TYX (S/T: stack of 2D "
                                                "images, split into separate images)")
    t.add_argument("--model-dir", required=True, help="folder that holds the model folder")
    t.add_argument("--name", required=True, help="model name (folder DIR/NAME)")
    t.add_argument("--preset", choices=sorted(PRESETS), default="n2v2",
                   help="n2v: classic N2V (uniform_withCP replacement); n2v2: blur-pool, no top skip connection, "
                        "median replacement")
    t.add_argument("--epochs", type=int, default=100, help="training epochs")
    t.add_argument("--steps", type=int, default=400, help="steps (batches) per epoch")
    t.add_argument("--batch-size", type=int, default=16, help="patches per batch")
    t.add_argument("--patch", type=int, nargs="+", metavar="N",
                   help="patch size: one number or one per spatial axis, multiples of 4 (default: 64x64 in 2D, "
                        "32x64x64 in 3D, clipped to the image size)")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the images (or, for a single image, of its rows) held out for validation")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model folder DIR/NAME")
    t.add_argument("--seed", type=int, default=None, help="random seed (weights and batches) for a reproducible run")
    t.add_argument("--depth", type=int, default=2, help="U-Net depth")
    t.add_argument("--kernel-size", type=int, default=3, help="convolution kernel size (odd)")
    t.add_argument("--n-first", type=int, default=32, help="filters of the first U-Net level")
    t.add_argument("--perc-pix", type=float, default=0.198, help="percentage of blind-spot pixels per patch")
    t.add_argument("--learning-rate", type=float, default=0.0004, help="Adam learning rate")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to DIR/NAME/logs")
    t.add_argument("--struct-mask", default=None, metavar="MASK",
                   help="structN2V mask: AXIS:SPAN (e.g. X:9) or the literal printed by 'n2v-tf analyze-noise'")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", formatter_class=fmt, help="denoise images with a trained model",
                       description="Denoise images with a trained model; writes one float32 TIFF per input "
                                   "(OUTDIR/<name>_n2v.tif).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF/PNG files or folders")
    p.add_argument("--model-dir", required=True, help="folder that holds the model folder")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--axes", default=None, help="axes of the images, e.g. YX, ZYX, YXC, TYX (default: the model's "
                                                "spatial axes, plus C for multi-channel models)")
    p.add_argument("--output", required=True, metavar="OUTDIR", help="output folder (created if needed)")
    p.add_argument("--n-tiles", type=int, nargs="+", metavar="N", default=None,
                   help="tiles per image axis (one number per letter of --axes, 1 for C/S/T), for large images")
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (test-time augmentation)")
    p.set_defaults(func=cmd_predict)

    d = sub.add_parser("demo", formatter_class=fmt, help="train N2V2 on the shipped demo image and report PSNR",
                       description="Train a small N2V2 model on a noisy fluorescence image shipped with the package "
                                   "(about 2 minutes on 2 CPU cores), then report the PSNR of input and output "
                                   "against the clean reference and save the result.")
    d.add_argument("--outdir", default="n2v_demo", help="output folder")
    d.add_argument("--epochs", type=int, default=None, help=f"epochs (default {DEMO_FULL['epochs']}, quick "
                                                            f"{DEMO_QUICK['epochs']})")
    d.add_argument("--steps", type=int, default=None, help=f"steps per epoch (default {DEMO_FULL['steps']}, quick "
                                                           f"{DEMO_QUICK['steps']})")
    d.add_argument("--quick", action="store_true", help="a tiny network and a few steps (seconds; for testing)")
    d.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress output")
    d.set_defaults(func=cmd_demo)

    a = sub.add_parser("analyze-noise", formatter_class=fmt,
                       help="suggest a structN2V mask from the autocorrelation of noise",
                       description="Measure the autocorrelation of a noise-only image (a dark frame, a background "
                                   "crop, a 'noisy - denoised' residual, or with --model-dir/--name the residual of "
                                   "an N2V model on INPUT), print the suggested structN2V mask as the literal to "
                                   "paste into N2VConfig(..., structN2Vmask=...) and plot the autocorrelation.")
    a.add_argument("input", metavar="INPUT", help="noise image (TIFF/PNG), or a noisy image with --model-dir/--name")
    a.add_argument("--axes", default=None, help="axes of INPUT: YX, ZYX, or SYX/SZYX for a stack of noise images "
                                                "(autocorrelations averaged) (default: YX, or the model's axes)")
    a.add_argument("--crop", default=None, metavar="RANGES",
                   help="analyse only this region: START:STOP per spatial axis, comma-separated, e.g. "
                        "0:128,64:192 (YX) or :,0:100,: (ZYX); bounds may be omitted")
    a.add_argument("--model-dir", default=None, help="with --name: analyse INPUT - prediction of this N2V model")
    a.add_argument("--name", default=None, help="model name (folder DIR/NAME)")
    a.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="hide lags correlated by more than THRESHOLD x the strongest neighbour correlation")
    a.add_argument("--min-correlation", type=float, default=DEFAULT_MIN_CORRELATION,
                   help="neighbour correlation up to which the noise counts as pixel-wise independent (plain N2V)")
    a.add_argument("--max-span", type=int, default=None, help="largest mask side (odd; default: about half the image)")
    a.add_argument("--png", default=None, metavar="OUT.png",
                   help="autocorrelation plot (default: <INPUT stem>_acf.png in the current folder)")
    a.add_argument("--no-png", action="store_true", help="do not write the plot")
    a.set_defaults(func=cmd_analyze_noise)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (argparse exits with 2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args.func(args))
    except CLIError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
