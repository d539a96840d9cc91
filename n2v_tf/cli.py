"""Command-line interface of n2v_tf: ``n2v-tf train``, ``predict``, ``demo``, ``analyze-noise``, ``noise-model``
and ``bootstrap``.

Also available as ``python -m n2v_tf``. :func:`main` takes an argument list and returns the exit
code (0: success, 2: a usage or data error, reported as one line on stderr, 130: interrupted).

Examples
--------
.. code-block:: console

    $ n2v-tf train data/noisy/ --axes YX --model-dir models --name my_n2v2 --preset n2v2 --epochs 50
    $ n2v-tf predict data/noisy/*.tif --model-dir models --name my_n2v2 --output denoised/
    $ n2v-tf predict data/noisy/*.tif --model-dir models --name my_n2v2 --output denoised/ --qc denoised/qc.png
    $ n2v-tf predict scan.tif --model-dir models --name my_n2v2 --output scan_n2v.ome.zarr --block-shape 1024,1024
    $ n2v-tf predict stack.ome.zarr --model-dir models --name my_n2v2 --output out/ --dask-scheduler tcp://host:8786
    $ n2v-tf demo --outdir n2v_demo
    $ n2v-tf analyze-noise dark_frame.tif --png dark_frame_acf.png
    $ n2v-tf analyze-noise data/noisy/img1.tif --model-dir models --name my_n2v --crop 0:256,0:256

Probabilistic N2V (PN2V): a noise model from a calibration stack (noisy frames of a static sample), or
the fully unsupervised pipeline (N2V -> bootstrapped noise model -> PN2V); ``predict`` then writes
the MMSE estimate:

.. code-block:: console

    $ n2v-tf noise-model --calibration calib.tif --kind gmm --output nm.npz --check data/noisy/
    $ n2v-tf train data/noisy/ --noise-model nm.npz --pn2v-samples 400 --model-dir models --name my_pn2v
    $ n2v-tf bootstrap data/noisy/ --axes YX --model-dir models --name my_pn2v --kind gmm --epochs 50
    $ n2v-tf predict data/noisy/*.tif --model-dir models --name my_pn2v --output denoised/
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["main", "build_parser"]

PROG = "n2v-tf"
#: Default training patch shapes (clipped to the image size).
DEFAULT_PATCH = {2: (64, 64), 3: (32, 64, 64)}
#: The presets of ``--preset`` (:data:`n2v_tf.config.PRESETS`): the recommended network and training for N2V and
#: N2V2, and n2v 0.3.3's N2V network (``n2v-0.3``). The command-line options (kernel size, blind-spot percentage,
#: ...) are set on top of them.
CLI_PRESETS = ("n2v", "n2v2", "n2v-0.3")
#: Demo settings: the full run takes about 2 minutes on 2 CPU cores; --quick a few seconds.
DEMO_FULL = dict(epochs=15, steps=20, batch_size=16, patch=64, n_first=16, depth=2, learning_rate=1e-3)
DEMO_QUICK = dict(epochs=1, steps=2, batch_size=4, patch=32, n_first=8, depth=1, learning_rate=1e-3)
DEMO_FILES = ("nuclei_noisy.tif", "nuclei_clean.tif")


class CLIError(Exception):
    """A user error (bad file, axes, size): printed as one line, exit code 2, no traceback."""


# --------------------------------------------------------------------------- input files and axes

def collect_files(inputs: Sequence[str]) -> list[Path]:
    """Expand files, folders and glob patterns into a list of files (:func:`n2v_tf.io.collect_files`)."""
    from .io import collect_files as _collect
    try:
        return _collect(list(inputs))
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e).replace("load_images: ", "")) from None


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
    img = _read_numeric(path)
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
                 batch_size: int, depth: int, kernel_size: int, n_first: int, perc_pix: float | None,
                 learning_rate: float, tensorboard: bool, struct_mask: str | None = None, **extra):
    """An :class:`N2VConfig` for ``train`` (validated; ``extra``: more attributes, e.g. ``probabilistic=True``;
    ``perc_pix=None``: the preset's, or with a struct mask the ``'structn2v'`` preset's)."""
    from .config import PRESETS, N2VConfig
    from .masking import box_size
    n_dim = len(patch)
    if perc_pix is None:
        perc_pix = PRESETS["structn2v" if struct_mask else preset].get(
            "n2v_perc_pix", N2VConfig(n_dim=n_dim).n2v_perc_pix)
    box = box_size(perc_pix, n_dim)
    if np.prod(patch) < box ** n_dim:
        raise CLIError(f"the patch {patch} is too small for --perc-pix {perc_pix}: a patch needs at least "
                       f"{box ** n_dim} pixels (one blind spot per {box}^{n_dim} box); use larger images or a larger "
                       "--perc-pix")
    fields = dict(unet_kern_size=kernel_size, unet_n_depth=depth, unet_n_first=n_first, n2v_perc_pix=perc_pix,
                  n2v_patch_shape=tuple(patch), train_epochs=epochs, train_steps_per_epoch=steps,
                  train_batch_size=batch_size, train_learning_rate=learning_rate, train_tensorboard=tensorboard,
                  structN2Vmask=_parse_struct_mask(struct_mask, n_dim), **extra)
    if preset == "n2v-0.3":
        fields.setdefault("train_loss", "mse")  # the loss of the papers (and of the other presets)
    try:
        config = N2VConfig.preset(preset, train, **fields)
        config.validate()
    except ValueError as e:
        raise CLIError(str(e)) from None
    return config


def _create_model(config, model_dir: Path, name: str, overwrite: bool, noise_model=None):
    """Create (or replace, with ``overwrite``) the model folder ``model_dir/name``; returns the :class:`N2V`."""
    from .models import N2V
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="output path for model already exists")
            return N2V(config, name, basedir=str(model_dir), overwrite=overwrite, noise_model=noise_model)
    except (FileExistsError, ValueError, TypeError) as e:
        raise CLIError(str(e)) from None


def _train_model(train: list[np.ndarray], val: list[np.ndarray], config, model_dir: Path, name: str,
                 overwrite: bool, verbose: int, seed: int | None, noise_model=None, model=None):
    """Create the model folder (unless ``model`` is given) and train; returns ``(model, history, seconds)``.

    ``noise_model``: the noise model of a PN2V config (``config.probabilistic``), saved in the folder.
    """
    import keras
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if model is None:
        model = _create_model(config, model_dir, name, overwrite, noise_model)
    t0 = time.perf_counter()
    try:
        history = model.train(train, val, verbose=verbose, seed=seed)
    except ValueError as e:
        raise CLIError(f"training '{name}' failed: {e}") from None
    return model, history, time.perf_counter() - t0


def _check_training_args(args: argparse.Namespace, flags: Sequence[str] = ()) -> None:
    """Range checks of the options shared by ``train`` and ``bootstrap``."""
    if not 0 < args.val_fraction <= 0.5:
        raise CLIError(f"--val-fraction must be in (0, 0.5], got {args.val_fraction}")
    for flag in ("epochs", "steps", "batch_size", "n_first", "depth", *flags):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def _training_data(args: argparse.Namespace, axes: str):
    """Read the inputs and split them: ``(files, images, patch, train, val, split description)``."""
    files = collect_files(args.inputs)
    images = load_training_images(files, axes)
    n_dim = 3 if "Z" in axes else 2
    div = _divisor(args.depth)
    patch = choose_patch(args.patch, n_dim, images, div)
    train, val, patch, split = split_validation(images, patch, args.val_fraction, div, bool(args.patch))
    return files, images, patch, train, val, split


def _config_from_args(args: argparse.Namespace, train: list[np.ndarray], patch: tuple[int, ...],
                      epochs: int | None = None, steps: int | None = None, **extra):
    return _make_config(train, patch, args.preset, epochs=args.epochs if epochs is None else epochs,
                        steps=args.steps if steps is None else steps, batch_size=args.batch_size, depth=args.depth,
                        kernel_size=args.kernel_size, n_first=args.n_first, perc_pix=args.perc_pix,
                        learning_rate=args.learning_rate, tensorboard=args.tensorboard,
                        struct_mask=args.struct_mask, **_preset_overrides(args), **extra)


def _preset_overrides(args: argparse.Namespace) -> dict:
    """The config fields that ``--augment/--no-augment``, ``--calibrate/--no-calibrate`` and ``--mixed-precision``
    set over the preset's values."""
    fields = {}
    if getattr(args, "augment", None) is not None:
        fields["train_augment"] = args.augment
    if getattr(args, "calibrate", None) is not None:
        fields["train_calibrate_output"] = args.calibrate
    if getattr(args, "mixed_precision", None) is not None:
        fields["train_mixed_precision"] = None if args.mixed_precision == "float32" else args.mixed_precision
    return fields


def _check_single_channel(images: Sequence[tuple[str, np.ndarray]], axes: str, what: str) -> None:
    n_ch = images[0][1].shape[-1]
    if n_ch != 1:
        raise CLIError(f"{what} works on single-channel images, but the images have {n_ch} channels (--axes {axes}); "
                       "save the channel to denoise as its own images")


def cmd_train(args: argparse.Namespace) -> int:
    axes = parse_axes(args.axes)
    _check_training_args(args, ("pn2v_samples",))
    if args.pn2v_samples is not None and args.noise_model is None:
        raise CLIError("--pn2v-samples needs --noise-model (it sets the samples per pixel of a PN2V model)")
    folder = Path(args.model_dir) / args.name
    if (folder / "config.json").exists() and not args.overwrite:
        raise CLIError(f"model folder '{folder}' already exists: choose another --name or pass --overwrite")
    noise_model = load_noise_model_file(args.noise_model) if args.noise_model else None
    files, images, patch, train, val, split = _training_data(args, axes)
    extra = {}
    if noise_model is not None:
        _check_single_channel(images, axes, "PN2V (--noise-model)")
        extra = dict(probabilistic=True, pn2v_samples=args.pn2v_samples or DEFAULT_PN2V_SAMPLES)
    config = _config_from_args(args, train, patch, **extra)
    n_dim = len(patch)
    print(f"{len(files)} file(s), {len(images)} image(s) with axes {axes}; {split}")
    kind = args.preset.upper() + (f" + PN2V ({config.pn2v_samples} samples per pixel)" if noise_model else "")
    print(f"{kind}: {n_dim}D patches {patch}, batch {args.batch_size}, {args.epochs} epoch(s) x "
          f"{args.steps} step(s), U-Net depth {args.depth}, kernel {args.kernel_size}, n_first {args.n_first}")
    if noise_model is not None:
        _print_coverage(noise_model, [im for _, im in images], "the training images", args.command)
    model, history, seconds = _train_model(train, val, config, Path(args.model_dir), args.name, args.overwrite,
                                           args.verbose, args.seed, noise_model=noise_model)
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
        with warnings.catch_warnings():   # a PN2V folder without noise model: cmd_predict says it in one line
            warnings.filterwarnings("ignore", message=".*PN2V model without a noise model file")
            return N2V(None, name, basedir=str(model_dir))
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot load model '{folder}': {e}") from None


def _draws(text: str) -> int | str:
    """``--calibrate``: a number of mask draws >= 0 or ``'auto'``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of mask draws >= 0 or 'auto', got {text!r}")
    return value


def _output_path(outdir: Path, f: Path) -> Path:
    return outdir / (f.stem + "_n2v.tif")


def _predict_extra(model, args: argparse.Namespace) -> dict:
    """The extra keywords of ``predict`` (checked): ``pn2v_output`` for PN2V models (says what is written),
    ``match_mean`` for ``--match-mean``, ``calibrate`` for ``--calibrate K``; {} otherwise."""
    c = model.config
    extra = {}
    if c.probabilistic:
        extra["pn2v_output"] = args.pn2v_output or "mmse"
        if extra["pn2v_output"] == "mmse" and model.noise_model is None:
            raise CLIError(f"PN2V model '{args.name}' has no noise model file (noise_model_gmm.npz or "
                           "noise_model_histogram.npz) in its folder, which the MMSE estimate needs; copy it there, "
                           "or use --pn2v-output prior_mean")
        print(f"PN2V model: writing the {'MMSE estimate' if extra['pn2v_output'] == 'mmse' else 'prior mean'} "
              f"({c.pn2v_samples} samples per pixel).")
    elif args.pn2v_output is not None:
        raise CLIError(f"--pn2v-output is for PN2V models; '{args.name}' is a plain N2V model")
    if args.match_mean:
        if c.probabilistic:
            raise CLIError(f"--match-mean is for N2V models; '{args.name}' is a PN2V model (its MMSE estimate is not "
                           "an expectation of the noisy pixels): predict without it")
        extra["match_mean"] = True
    if args.calibrate:
        if c.probabilistic:
            raise CLIError(f"--calibrate is for N2V models; '{args.name}' is a PN2V model (its MMSE estimate uses the "
                           "pixel itself): predict without it")
        extra["calibrate"] = args.calibrate
    if args.calibrate_bins is not None:
        if not args.calibrate:
            raise CLIError(f"--calibrate-bins {args.calibrate_bins} needs --calibrate K (or --calibrate auto)")
        if args.calibrate_bins < 1:
            raise CLIError(f"--calibrate-bins must be a number of curve segments >= 1, got {args.calibrate_bins}")
        extra["calibrate_bins"] = args.calibrate_bins
    return extra


def _check_predict_axes(model, args: argparse.Namespace) -> str:
    """The axes of in-memory prediction: ``--axes`` (checked against the model) or the model's default."""
    c = model.config
    spatial = "ZYX" if c.n_dim == 3 else "YX"
    axes = parse_axes(args.axes) if args.axes else spatial + ("C" if c.n_channel_in > 1 else "")
    if set(axes) - set("CST") != set(spatial):
        raise CLIError(f"--axes {axes} does not fit the {c.n_dim}D model '{args.name}': it needs the axes {spatial}, "
                       "optionally C and one of S/T")
    if args.n_tiles is not None and min(args.n_tiles) < 1:
        raise CLIError(f"--n-tiles must be positive integers, got {args.n_tiles}")
    return axes


def cmd_predict(args: argparse.Namespace) -> int:
    if _large_mode(args):
        return cmd_predict_large(args)
    from tqdm.auto import tqdm
    files = collect_files(args.inputs)
    model = load_model(args.model_dir, args.name)
    axes = _check_predict_axes(model, args)
    extra = _predict_extra(model, args)
    outdir = Path(args.output)
    outputs = [_output_path(outdir, f) for f in files]
    if len(set(outputs)) != len(outputs):
        dup = next(o for o in outputs if outputs.count(o) > 1)
        raise CLIError(f"several inputs would be written to '{dup}': give files with different names")
    if args.qc is not None:
        try:
            import matplotlib  # noqa: F401  (fail before predicting, not after)

            from .qc import qc_report
        except ImportError:
            raise CLIError('--qc needs matplotlib: pip install "n2v_tf[plot]"') from None
    outdir.mkdir(parents=True, exist_ok=True)
    first, skipped = None, []
    for f, out in zip(tqdm(files, desc="Denoising", unit="file", file=sys.stderr), outputs):
        try:
            pred, img = _predict_file(model, f, out, axes, args, extra)
        except CLIError as e:
            if not args.skip_bad:
                raise
            skipped.append(f)
            print(f"{PROG} predict: skipped: {e}", file=sys.stderr)
            continue
        if first is None and args.qc is not None:
            first = (f, img, pred)
    if skipped:
        print(f"Wrote {len(files) - len(skipped)} denoised image(s) to '{outdir}'; skipped {len(skipped)} file(s): "
              f"{', '.join(str(f) for f in skipped)}.")
        rc = 1
    else:
        rc = 0
        print(f"Wrote {len(files)} denoised image(s) to '{outdir}'.")
    if first is not None:
        f, img, pred = first
        noisy, denoised, what = qc_images(img, pred, axes)
        try:
            qc_report(noisy, denoised, path=args.qc)
        except (ValueError, OSError) as e:
            raise CLIError(f"--qc {args.qc}: {e}") from None
        print(f"Wrote the QC report of '{f}'{what} (input, prediction, residual and its autocorrelation) to "
              f"'{args.qc}'.")
    return rc


def _predict_file(model, f: Path, out: Path, axes: str, args: argparse.Namespace, extra: dict
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Read, denoise and write one file (keeping its TIFF calibration); returns ``(prediction, input)``."""
    from .io import read_tiff_metadata, to_dtype, write_tiff
    img = read_checked(f, axes)
    if args.n_tiles is not None and len(args.n_tiles) != img.ndim:
        raise CLIError(f"--n-tiles needs one number per axis of '{f}' ({axes}: {img.ndim}), "
                       f"got {len(args.n_tiles)}")
    try:
        pred = model.predict(img, axes, n_tiles=args.n_tiles, tta=args.tta, **extra)
    except ValueError as e:
        raise CLIError(f"'{f}': {e}") from None
    try:
        meta = read_tiff_metadata(f)
    except Exception:  # the pixels were readable; a broken tag only loses the calibration
        meta = {}
    data = to_dtype(pred, img.dtype if args.dtype == "input" else np.float32)
    try:
        write_tiff(out, data, axes=axes, metadata=meta)
    except OSError as e:
        raise CLIError(f"cannot write '{out}': {e}") from None
    return pred, img


def qc_images(img: np.ndarray, pred: np.ndarray, axes: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The spatial (YX or ZYX) input and prediction for ``--qc``: the first sample and channel.

    Returns ``(noisy, denoised, note)``, ``note`` saying which sample/channel was taken (empty if none).
    """
    index, ax, note = [], "", []
    for i, a in enumerate(axes):
        if a in "STC":
            index.append(0)
            if img.shape[i] > 1:
                note.append(f"{'channel' if a == 'C' else 'image'} 1 of {img.shape[i]}")
        else:
            index.append(slice(None))
            ax += a
    order = [ax.index(a) for a in "ZYX" if a in ax]
    noisy = np.transpose(np.asarray(img)[tuple(index)], order)
    denoised = np.transpose(np.asarray(pred)[tuple(index)], order)
    return noisy, denoised, f" ({', '.join(note)})" if note else ""


# --------------------------------------------------------------------------- prediction of large images (Zarr, Dask)

#: Suffixes of image stores/files that ``predict`` writes block by block (longest first).
LARGE_SUFFIXES = {".ome.zarr": "ome-zarr", ".zarr": "zarr", ".tiff": "tiff", ".tif": "tiff"}
#: ``--dask-scheduler`` values that run on this machine (dask's local schedulers).
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
_STEM_SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy")


def _require(module: str):
    """:func:`n2v_tf.io.require` with its ImportError (which names the pip command) as a one-line CLI error."""
    from .io import require
    try:
        return require(module)
    except ImportError as e:
        raise CLIError(str(e)) from None


def _output_kind(path: str | Path) -> str | None:
    """``'ome-zarr'``, ``'zarr'``, ``'tiff'`` for an output named like an image, None for a folder."""
    name = str(path).rstrip("/\\").lower()
    return next((k for suffix, k in LARGE_SUFFIXES.items() if name.endswith(suffix)), None)


def is_zarr(path: str | Path) -> bool:
    """A Zarr array/group or an OME-Zarr image (a ``*.zarr`` path or a folder with Zarr metadata)."""
    p = Path(path)
    if str(path).rstrip("/\\").lower().endswith(".zarr"):
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup", ".zattrs"))


def _large_mode(args: argparse.Namespace) -> bool:
    """Whether ``predict`` runs block-wise/with Dask (see the ``predict`` help)."""
    return bool(args.blocks or args.block_shape or args.dask_scheduler
                or _output_kind(args.output) in ("zarr", "ome-zarr") or any(is_zarr(i) for i in args.inputs))


def _stem(path: Path) -> str:
    name = path.name.rstrip("/\\")
    lower = name.lower()
    for suffix in _STEM_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return Path(name).stem


def _parse_block_shape(text: str | None, n_dim: int) -> tuple[int, ...] | None:
    if text is None:
        return None
    from .large import _default_block
    example = ",".join(str(b) for b in _default_block(n_dim))
    try:
        block = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise CLIError(f"--block-shape {text!r}: expected {n_dim} comma-separated integers, e.g. {example}") from None
    if len(block) == 1:
        block = block * n_dim
    if len(block) != n_dim or min(block) < 1:
        raise CLIError(f"--block-shape {text!r}: the {n_dim}D model needs {n_dim} positive sizes (one per spatial "
                       f"axis {'ZYX' if n_dim == 3 else 'YX'}), e.g. {example}")
    return block


def _large_sources(inputs: Sequence[str]) -> list[Path]:
    """Zarr stores as they are, files/folders/patterns of other inputs expanded (:func:`collect_files`)."""
    sources: list[Path] = []
    for item in inputs:
        if is_zarr(item):
            if not Path(item).exists():
                raise CLIError(f"input '{item}' does not exist (no such Zarr store)")
            sources.append(Path(item))
        else:
            sources += collect_files([item])
    return sources


def _open_source(path: Path, axes: str | None, default_axes: str):
    """``open_array`` of an input: ``--axes``, else the stored axes of a Zarr store, else the model's default axes.
    Returns ``(array, axes, meta)``."""
    from .io import open_array
    tries = [axes] if axes else ([None, default_axes] if is_zarr(path) else [default_axes])
    for i, a in enumerate(tries):
        try:
            return open_array(path, axes=a)
        except FileNotFoundError as e:
            raise CLIError(str(e).replace("open_array: ", "")) from None
        except ImportError as e:
            raise CLIError(str(e)) from None
        except ValueError as e:
            if i == len(tries) - 1:
                raise CLIError(str(e).replace("open_array: ", "").replace("axes=", "--axes ")) from None
    raise AssertionError  # pragma: no cover


def _source_format(path: Path) -> str:
    """``'ome-zarr'`` or ``'zarr'`` for a Zarr store (as :func:`n2v_tf.io.open_array` finds it), else ``'file'``."""
    if not is_zarr(path):
        return "file"
    from .io import open_array
    try:
        return open_array(path, axes=None)[2]["format"]
    except ValueError as e:
        if "cannot determine the axes" in str(e):
            return "zarr"
        raise CLIError(str(e).replace("open_array: ", "")) from None
    except ImportError as e:
        raise CLIError(str(e)) from None


def _large_destinations(args: argparse.Namespace, sources: list[Path]) -> list[Path]:
    """The output of each input: ``--output`` itself (one input), or OUTDIR/<name>_n2v.{ome.zarr,zarr,tif}."""
    out = Path(args.output)
    if _output_kind(args.output) is not None:
        if len(sources) != 1:
            raise CLIError(f"--output '{out}' names one image, but {len(sources)} inputs were given: give an output "
                           "folder (one <name>_n2v output per input)")
        return [out]
    ext = {"ome-zarr": ".ome.zarr", "zarr": ".zarr"}
    dests = [out / (_stem(s) + "_n2v" + ext.get(_source_format(s), ".tif")) for s in sources]
    if len(set(dests)) != len(dests):
        dup = next(d for d in dests if dests.count(d) > 1)
        raise CLIError(f"several inputs would be written to '{dup}': give inputs with different names")
    return dests


def _dask_client(address: str):
    """``None`` for a local scheduler, else a ``distributed.Client`` connected to ``address``."""
    if address in LOCAL_SCHEDULERS:
        _require("dask")
        return None
    distributed = _require("distributed")
    try:
        if address.lower().endswith(".json"):
            if not Path(address).is_file():
                raise CLIError(f"--dask-scheduler {address}: no such scheduler file")
            return distributed.Client(scheduler_file=address, timeout="10s")
        return distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise CLIError(f"--dask-scheduler {address}: cannot connect to the Dask scheduler ({e}); give 'threads', "
                       "'processes' or the address of a running dask.distributed scheduler, e.g. tcp://HOST:8786"
                       ) from None


def _dask_compute(obj, scheduler: str, client):
    """Compute a Dask collection on a local scheduler (progress bar on stderr) or a distributed client."""
    import dask
    if client is None:
        from dask.diagnostics import ProgressBar
        with ProgressBar(out=sys.stderr):
            return dask.compute(obj, scheduler=scheduler)[0]
    from distributed import progress
    future = client.compute(obj)
    progress(future)
    return future.result()


def _regular_chunks(arr):
    """``arr`` rechunked, if needed, to the equal chunks (the last may be smaller) that a Zarr array has."""
    size = tuple(max(c) for c in arr.chunks)
    if all(all(x == s for x in c[:-1]) and c[-1] <= s for c, s in zip(arr.chunks, size)):
        return arr
    return arr.rechunk(size)


def _dask_to_zarr(model, folder: Path, source: Path, dest: Path, axes_arg: str | None, default_axes: str,
                  block, args: argparse.Namespace, scheduler: str, client) -> tuple[int, ...]:
    """``predict_dask`` of one input, stored to a Zarr/OME-Zarr ``dest`` (``<dest>.partial`` renamed when done)."""
    import shutil

    from .large import BlockLayout, _default_block, _FileArray, _ngff_metadata, predict_dask
    da = _require("dask.array")
    zarr = _require("zarr")
    arr, axes, meta = _open_source(source, axes_arg, default_axes)
    kind = _output_kind(dest)
    try:
        layout = BlockLayout(model.config, arr.shape, axes, str(source))
    except ValueError as e:
        raise CLIError(str(e)) from None
    partial = dest.with_name(dest.name + ".partial")
    if dest.exists() and not args.overwrite:
        raise CLIError(f"output '{dest}' exists: pass --overwrite to replace it, or choose another --output")
    if partial.exists() and not args.overwrite:
        raise CLIError(f"'{partial}' is left from an interrupted run: pass --overwrite to start over (a block-wise run "
                       "without --dask-scheduler resumes its own interrupted runs)")
    block = block or _default_block(model.config.n_dim)
    chunks = tuple(1 if a in layout.samples else -1 if a == "C" else min(block[layout.spatial.index(a)], n)
                   for a, n in zip(layout.axes, layout.shape))
    if is_zarr(source):
        src = da.from_zarr(arr.base, chunks=chunks)  # the stored Zarr array (picklable: workers read it themselves)
    else:
        src = da.from_array(_FileArray(source, axes), chunks=chunks, meta=np.empty((0,) * len(arr.shape), arr.dtype))
    try:
        out = _regular_chunks(predict_dask(folder, src, axes, tta=args.tta, dtype=args.dtype,
                                           calibrate=args.calibrate, calibrate_bins=args.calibrate_bins))
    except ValueError as e:
        raise CLIError(f"'{source}': {e}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists():
        shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
    zchunks = tuple(c[0] for c in out.chunks)
    if kind == "ome-zarr":
        group = zarr.open_group(str(partial), mode="w", zarr_format=2)
        group.attrs.update(_ngff_metadata(layout, meta))
        target = group.create_array("0", shape=out.shape, chunks=zchunks, dtype=out.dtype, fill_value=0)
    else:
        target = zarr.open_array(str(partial), mode="w", shape=out.shape, chunks=zchunks, dtype=out.dtype,
                                 fill_value=0, zarr_format=2)
    _dask_compute(da.store(out, target, lock=False, compute=False), scheduler, client)
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    partial.rename(dest)
    return arr.shape


_WORKER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _worker_model(model_dir: str, name: str, pid: int):
    return load_model(model_dir, name)


def _dask_predict_file(model_dir: str, name: str, f: str, out: str, axes: str, options: dict,
                       extra: dict) -> str | None:
    """A Dask task: predict one file in memory and write it (the model loaded once per worker process); returns
    the error message of an unfitting file, None on success."""
    import os
    try:
        with _WORKER_LOCK:
            model = _worker_model(model_dir, name, os.getpid())
        _predict_file(model, Path(f), Path(out), axes, argparse.Namespace(**options), extra)
    except CLIError as e:
        return str(e)
    return None


def _dask_files(args: argparse.Namespace, model, sources: list[Path], dests: list[Path], scheduler: str,
                client) -> int:
    """Distribute TIFF (or other image) files over the Dask workers: one in-memory prediction per file."""
    import dask
    bad = [s for s in sources if is_zarr(s)]
    if bad:
        raise CLIError(f"--dask-scheduler with Zarr input '{bad[0]}': write a Zarr/OME-Zarr output (--output "
                       "OUT.zarr or OUT.ome.zarr)")
    axes = _check_predict_axes(model, args)
    extra = _predict_extra(model, args)
    folder = Path(args.model_dir).resolve()
    options = {"n_tiles": args.n_tiles, "tta": args.tta, "dtype": args.dtype}
    for d in dests:
        d.parent.mkdir(parents=True, exist_ok=True)
    tasks = [dask.delayed(_dask_predict_file, pure=False)(str(folder), args.name, str(s.resolve()),
                                                          str(d.resolve()), axes, options, extra)
             for s, d in zip(sources, dests)]
    errors = [(s, e) for s, e in zip(sources, _dask_compute(tasks, scheduler, client)) if e is not None]
    if errors and not args.skip_bad:
        more = f" ({len(errors) - 1} more file(s) failed)" if len(errors) > 1 else ""
        raise CLIError(f"{errors[0][1]}{more}; {len(sources) - len(errors)} file(s) were written")
    for s, e in errors:
        print(f"{PROG} predict: skipped: {e}", file=sys.stderr)
    where = dests[0].parent if _output_kind(args.output) is None else dests[0]
    print(f"Wrote {len(sources) - len(errors)} denoised image(s) to '{where}'"
          + (f"; skipped {len(errors)} file(s): {', '.join(str(s) for s, _ in errors)}." if errors else "."))
    return 1 if errors else 0


def cmd_predict_large(args: argparse.Namespace) -> int:
    """``predict`` block by block (:func:`n2v_tf.large.predict_blocks`) or with Dask (``--dask-scheduler``).

    With ``--dask-scheduler``, inputs written to Zarr/OME-Zarr are computed chunk by chunk on the workers
    (:func:`n2v_tf.large.predict_dask`); inputs written to TIFF are distributed file by file (each predicted in memory
    by one worker, as without Dask).
    """
    model = load_model(args.model_dir, args.name)
    c = model.config
    block = _parse_block_shape(args.block_shape, c.n_dim)
    spatial = "ZYX" if c.n_dim == 3 else "YX"
    default_axes = spatial + ("C" if c.n_channel_in > 1 else "")
    axes_arg = parse_axes(args.axes) if args.axes else None
    sources = _large_sources(args.inputs)
    dests = _large_destinations(args, sources)
    per_file = [bool(args.dask_scheduler) and _output_kind(d) == "tiff" for d in dests]
    if args.qc is not None:
        raise CLIError("--qc is for in-memory prediction of TIFF/PNG files to an output folder (without --blocks, "
                       "--dask-scheduler or Zarr); run it on a crop of the image")
    if args.n_tiles is not None and not all(per_file):
        raise CLIError("--n-tiles is for in-memory prediction of TIFF/PNG files; block-wise and Zarr prediction "
                       "choose their tiles themselves (--block-shape)")
    if args.match_mean and not all(per_file):
        raise CLIError("--match-mean needs each whole image in memory: predict TIFF/PNG files to an output folder "
                       "(without --blocks or Zarr), or drop --match-mean for block-wise prediction")
    if c.probabilistic and args.pn2v_output == "prior_mean" and not all(per_file):
        raise CLIError("--pn2v-output prior_mean: block-wise and Zarr prediction write the MMSE estimate; predict "
                       "TIFF files to an output folder (without --blocks) for the prior mean")
    jobs = [(s, d) for s, d, f in zip(sources, dests, per_file) if not f]
    files = [(s, d) for s, d, f in zip(sources, dests, per_file) if f]
    rc = 0
    if not args.dask_scheduler:
        return _predict_blocks_all(args, model, jobs, axes_arg, default_axes, block)
    client = _dask_client(args.dask_scheduler)
    scheduler = args.dask_scheduler if client is None else "distributed"
    try:
        if client is not None:
            print(f"Dask: connected to {client.scheduler.address} ({len(client.scheduler_info()['workers'])} "
                  f"worker(s)); dashboard {client.dashboard_link}")
        if files:
            rc = _dask_files(args, model, [s for s, _ in files], [d for _, d in files], scheduler, client)
        if jobs:
            _predict_extra(model, args)
            folder = Path(args.model_dir).resolve() / args.name
            for s, d in jobs:
                t0 = time.perf_counter()
                shape = _dask_to_zarr(model, folder, s, d, axes_arg, default_axes, block, args, scheduler, client)
                _report_written(s, d, shape, time.perf_counter() - t0)
    finally:
        if client is not None:
            client.close()
    return rc


def _predict_blocks_all(args: argparse.Namespace, model, jobs: list[tuple[Path, Path]], axes_arg: str | None,
                        default_axes: str, block) -> int:
    """:func:`n2v_tf.large.predict_blocks` of each ``(source, destination)``."""
    from .large import predict_blocks
    _predict_extra(model, args)
    skipped = []
    for s, d in jobs:
        t0 = time.perf_counter()
        try:
            arr, axes, _ = _open_source(s, axes_arg, default_axes)
            d.parent.mkdir(parents=True, exist_ok=True)
            predict_blocks(model, s, d, axes, block_shape=block, tta=args.tta, dtype=args.dtype,
                           overwrite=args.overwrite, progress=True, calibrate=args.calibrate,
                           calibrate_bins=args.calibrate_bins)
        except KeyboardInterrupt:
            print(f"{PROG} predict: interrupted; the finished blocks are kept in '{d}.partial': run the same command "
                  "again to resume", file=sys.stderr)
            raise
        except FileExistsError as e:
            raise CLIError(str(e).replace("pass overwrite=True (CLI: --overwrite)", "pass --overwrite")
                           .replace("overwrite=True", "--overwrite")) from None
        except (CLIError, ValueError, ImportError, OSError) as e:
            if not args.skip_bad or isinstance(e, (OSError, ImportError)):
                raise CLIError(str(e)) from None
            skipped.append(s)
            print(f"{PROG} predict: skipped: {e}", file=sys.stderr)
            continue
        _report_written(s, d, arr.shape, time.perf_counter() - t0)
    if skipped:
        print(f"Skipped {len(skipped)} input(s): {', '.join(str(s) for s in skipped)}.")
        return 1
    return 0


def _report_written(source: Path, dest: Path, shape: Sequence[int], seconds: float) -> None:
    rate = np.prod(shape) / 1e6 / max(seconds, 1e-9)
    print(f"Wrote '{dest}' (shape {tuple(int(n) for n in shape)}) from '{source}' in {seconds:.1f} s "
          f"({rate:.2f} Mpx/s).")


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
    from .io import atomic_path
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(parts, axis=1)).save(tmp, format="PNG")


def cmd_demo(args: argparse.Namespace) -> int:
    from .io import write_tiff
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
                                     seed=args.seed)
    # The demo's validation set (10 % of one image) is too small to pick a checkpoint: its best-validation epoch
    # is a lottery (26.1-29.9 dB over seeds 0-4), while the last weights of the cosine schedule score 30-31 dB
    # (benchmarks/README.md, "Why the demo depended on the seed"). New configs keep the final weights
    # (train_restore_best=False); the best-validation checkpoint is scored for comparison.
    denoised = model.predict(noisy, "YX")
    p_cal = psnr(clean, model.predict(noisy, "YX", calibrate="auto"))
    model.load_weights(config.train_checkpoint)
    p_best = psnr(clean, model.predict(noisy, "YX"))
    model.load_weights(config.train_checkpoint_last)
    p_in, p_out = psnr(clean, noisy), psnr(clean, denoised)
    tif, png = outdir / "nuclei_n2v2.tif", outdir / "nuclei_noisy_denoised_clean.png"
    write_tiff(tif, denoised.astype(np.float32), axes="YX")
    save_side_by_side(png, [noisy, denoised, clean], clean)
    print(f"Training took {seconds:.0f} s.")
    if model.output_calibration is not None:
        gain, offset = model.output_calibration["gain"][0], model.output_calibration["offset"][0]
        print(f"Output calibrated on the validation data's blind spots: gain {gain:.4f}, offset {offset:+.4f} "
              "(normalised units)")
    print(f"PSNR input (noisy):     {p_in:.2f} dB")
    print(f"PSNR output (denoised): {p_out:.2f} dB with the last weights (best-validation checkpoint: {p_best:.2f};"
          " the validation set of one image is too small to choose a checkpoint)")
    print(f"PSNR calibrated to the image (predict(..., calibrate='auto'), not written): {p_cal:.2f} dB")
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


# --------------------------------------------------------------------------- noise models and PN2V

#: Samples per pixel of PN2V models trained from the command line (the paper's value; fewer train faster on a CPU).
DEFAULT_PN2V_SAMPLES = 800
NOISE_MODEL_KINDS = ("gmm", "histogram")  # the kinds of n2v_tf.noise_models.NOISE_MODELS
#: Default histogram bins (``noise_models.DEFAULT_BINS``; repeated so that building the parser imports no Keras).
HISTOGRAM_BINS = 100
_KIND_NAMES = {"gmm": "Gaussian mixture noise model", "histogram": "histogram noise model"}
#: The CLI warns when less than this fraction of an image to denoise lies inside a noise model's signal range. The
#: image is smoothed with a 3x3 mean first (a rough signal estimate): raw noisy values spread beyond the range of
#: the signal by the noise itself.
MIN_COVERAGE = 0.95


def _warn(command: str, message) -> None:
    print(f"{PROG} {command}: warning: {message}", file=sys.stderr)


def load_noise_model_file(path: str):
    """Load a noise model file: ``.npz`` of a GMM or histogram (n2v_tf, ppn2v, CAREamics) or a pn2v ``.npy``."""
    from .noise_models import load_noise_model
    if not Path(path).is_file():
        raise CLIError(f"noise model '{path}' does not exist (no such file)")
    try:
        return load_noise_model(path)
    except (ValueError, OSError, KeyError) as e:
        raise CLIError(f"cannot load noise model '{path}': {e}") from None


def read_calibration_stack(path: Path, axis: int) -> np.ndarray:
    """Read a calibration stack (noisy frames of a static sample along ``axis``) and check it."""
    if path.is_dir():
        raise CLIError(f"--calibration '{path}' is a folder: give one stack file (e.g. a multi-page TIFF of frames)")
    if not path.is_file():
        raise CLIError(f"calibration stack '{path}' does not exist (no such file)")
    stack = _read_numeric(path)
    if stack.ndim < 3:
        raise CLIError(f"'{path}' is a single image of shape {stack.shape}, not a stack: a calibration stack holds "
                       "several noisy frames of a static sample, e.g. shape (frames, Y, X)")
    if not -stack.ndim <= axis < stack.ndim:
        raise CLIError(f"--axis {axis} does not exist in '{path}' (shape {stack.shape}, axes 0 to {stack.ndim - 1})")
    n = stack.shape[axis]
    if n < 2:
        raise CLIError(f"'{path}' holds {n} frame along --axis {axis} (shape {stack.shape}): a calibration stack needs "
                       "at least 2 noisy frames of the static sample (their mean is the signal; 20 or more are better)")
    bad = int(np.size(stack) - np.count_nonzero(np.isfinite(stack)))
    if bad:
        raise CLIError(f"'{path}' contains {bad} NaN or infinite value(s): a calibration stack must be finite")
    return stack


def _fit_noise_model(kind: str, fit, command: str):
    """Run ``fit()``: a ValueError (e.g. a diverging GMM fit) becomes a CLIError, warnings one-line notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = fit()
        except ValueError as e:
            raise CLIError(f"fitting the {_KIND_NAMES[kind]} failed: {e}") from None
    for w in caught:
        if issubclass(w.category, (UserWarning, RuntimeWarning)):
            _warn(command, w.message)
    return model


def describe_noise_model(nm) -> list[str]:
    """A few lines about a noise model: kind, signal range, noise std at three signals, the linear variance law."""
    from .noise_models import GaussianMixtureNoiseModel
    lo, hi = nm.signal_range
    if isinstance(nm, GaussianMixtureNoiseModel):
        degree = {1: "constant", 2: "linear", 3: "quadratic"}.get(nm.n_coeff, f"degree-{nm.n_coeff - 1}")
        line = f"Gaussian mixture noise model: {nm.n_gaussian} Gaussian(s), {degree} in the signal"
        if nm.history is not None and len(nm.history):
            tail = nm.history[-max(1, len(nm.history) // 20):]
            line += f"; final fit loss {float(np.mean(tail)):.4g} (mean negative log-likelihood)"
    else:
        line = f"Histogram noise model: {nm.bins} x {nm.bins} bins of width {nm.bin_width:.4g}"
        if len(nm.filled_rows):
            line += f"; {len(nm.filled_rows)} empty signal bin(s) filled with Gaussians"
    lines = [line, f"Signal range [{lo:.6g}, {hi:.6g}]"]
    s3 = lo + (hi - lo) * np.array([0.1, 0.5, 0.9])
    _, v3 = nm.mean_and_variance(s3)
    lines.append("Noise std at signal " + ", ".join(f"{s:.4g}: {np.sqrt(v):.4g}" for s, v in zip(s3, v3)))
    grid = np.linspace(lo + 0.1 * (hi - lo), lo + 0.9 * (hi - lo), 41)
    _, var = nm.mean_and_variance(grid)
    slope, offset = np.polyfit(grid, var, 1)
    line_var = slope * grid + offset
    dev = float(np.max(np.abs(var - line_var) / np.maximum(np.abs(line_var), 1e-12)))
    lines.append(f"Variance law (line fitted over 10-90 % of the range): Var[x|s] ~ {slope:.4g} * s "
                 f"{'+' if offset >= 0 else '-'} {abs(offset):.4g} (largest deviation from the line {dev:.1%}; "
                 "Poisson-Gaussian noise: gain * s + read_noise^2)")
    return lines


def _rough_signal(img: np.ndarray, channel_last: bool) -> np.ndarray:
    """A 3x3 mean over the last two spatial axes (Y, X): a rough estimate of the signal of a noisy image."""
    from scipy.ndimage import uniform_filter
    img = np.asarray(img, np.float64)
    spatial = img.ndim - (1 if channel_last else 0)
    if spatial < 2:
        return img
    size = (1,) * (spatial - 2) + (3, 3) + ((1,) if channel_last else ())
    return uniform_filter(img, size=size, mode="nearest")


def _coverage_line(nm, data: Sequence[np.ndarray], what: str, command: str, warn: bool) -> None:
    """Print the fraction of ``data`` in the signal range of ``nm``; warn (``warn``) below MIN_COVERAGE."""
    frac = nm.coverage(np.concatenate([np.ravel(d) for d in data]))
    lo, hi = nm.signal_range
    print(f"The signal range covers {frac:.1%} of {what}.")
    if warn and frac < MIN_COVERAGE:
        _warn(command, f"only {frac:.1%} of {what} lie in the noise model's signal range [{lo:.4g}, {hi:.4g}]: "
                       "outside it the GMM extrapolates and the histogram takes its edge bins; fit the noise model on "
                       "data that spans the intensities of the images to denoise")


def _print_coverage(nm, images: Sequence[np.ndarray], what: str, command: str, channel_last: bool = True) -> None:
    """Coverage of noisy images, judged on their 3x3-smoothed values (see MIN_COVERAGE)."""
    _coverage_line(nm, [_rough_signal(im, channel_last) for im in images], f"{what} (3x3-smoothed)", command,
                   warn=True)


def _plot_noise_model(nm, png: Path, signal: np.ndarray, observation: np.ndarray, title: str, explicit: bool,
                      command: str) -> bool:
    """Save :func:`n2v_tf.qc.plot_noise_model` of the pairs; False without matplotlib (CLIError if ``explicit``)."""
    from .qc import plot_noise_model
    try:
        plot_noise_model(nm, signal, observation, path=png, title=title)
    except ImportError:
        if explicit:
            raise CLIError("--png needs matplotlib: pip install matplotlib") from None
        print(f"{PROG} {command}: note: matplotlib is not installed, no plot written (pip install matplotlib)",
              file=sys.stderr)
        return False
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot write '{png}': {e}") from None
    print(f"Wrote the noise-model plot '{png}'.")
    return True


def _save_noise_model_file(nm, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        nm.save(str(path))
    except OSError as e:
        raise CLIError(f"cannot write '{path}': {e}") from None


def _fit_kwargs(args: argparse.Namespace, kind: str, steps: int) -> dict:
    if kind == "gmm":
        return dict(n_gaussian=args.n_gaussian, n_coeff=args.n_coeff, steps=steps, batch_size=args.fit_batch_size,
                    seed=args.seed if args.seed is not None else 0)
    return dict(bins=args.bins)


def _check_fit_args(args: argparse.Namespace, steps_flag: str) -> None:
    for flag, low in (("bins", 2), ("n_gaussian", 1), ("n_coeff", 1), (steps_flag, 1), ("fit_batch_size", 1)):
        if getattr(args, flag) < low:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(args, flag)}")


def cmd_noise_model(args: argparse.Namespace) -> int:
    from .noise_models import GaussianMixtureNoiseModel, HistogramNoiseModel, _calibration_pairs
    _check_fit_args(args, "steps")
    if args.png and args.no_png:
        raise CLIError("--png and --no-png exclude each other")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    kinds = NOISE_MODEL_KINDS if args.kind == "both" else (args.kind,)
    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        out = out.with_name(out.name + ".npz")
    png = Path(args.png) if args.png else out.with_suffix(".png")
    if len(kinds) > 1:
        outputs = {k: out.with_name(f"{out.stem}_{k}{out.suffix}") for k in kinds}
        pngs = {k: png.with_name(f"{png.stem}_{k}{png.suffix}") for k in kinds}
    else:
        outputs, pngs = {kinds[0]: out}, {kinds[0]: png}
    src = Path(args.calibration)
    stack = read_calibration_stack(src, args.axis)
    check = [(f, _read_values(f)) for f in collect_files(args.check)] if args.check else []
    n = stack.shape[args.axis]
    frame = tuple(s for i, s in enumerate(stack.shape) if i != args.axis % stack.ndim)
    try:
        signal, observation = _calibration_pairs(stack, args.axis, correct_variance=True)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(f"Calibration stack '{src}': {n} frames of shape {frame} along axis {args.axis}; the signal is their mean "
          f"({signal.size} signal/observation pairs, signals {signal.min():.6g} to {signal.max():.6g})")
    if n < 10:
        _warn(args.command, f"only {n} frames: their mean is a noisy estimate of the signal; 20 or more frames give a "
                            "better noise model")
    for kind in kinds:
        t0 = time.perf_counter()
        cls = GaussianMixtureNoiseModel if kind == "gmm" else HistogramNoiseModel
        kw = _fit_kwargs(args, kind, args.steps)
        nm = _fit_noise_model(kind, lambda: cls.fit(signal, observation, **kw), args.command)  # noqa: B023
        print(f"\nFitted in {time.perf_counter() - t0:.1f} s.")
        for line in describe_noise_model(nm):
            print(line)
        for f, img in check:
            _print_coverage(nm, [img], f"'{f}'", args.command, channel_last=False)
        _save_noise_model_file(nm, outputs[kind])
        print(f"Wrote '{outputs[kind]}'.")
        if not args.no_png:
            _plot_noise_model(nm, pngs[kind], signal, observation, f"{_KIND_NAMES[kind]}: {src.name}",
                              bool(args.png), args.command)
    if not check:
        print("\nCheck that the noise model covers the images to denoise: add --check IMAGES (the fraction of their "
              "values inside the signal range; outside it the GMM extrapolates and the histogram takes its edge bins).")
    first = outputs[kinds[0]]
    print(f"Train PN2V with it: {PROG} train IMAGES --noise-model {first} --model-dir DIR --name NAME")
    return 0


def _read_numeric(path: Path) -> np.ndarray:
    """Read an image file and check that it holds numbers (CLIError otherwise)."""
    from .io import read_image
    try:
        img = read_image(str(path))
    except FileNotFoundError:
        raise CLIError(f"cannot read '{path}': file not found") from None
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot read '{path}' as an image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                       ) from None
    if not np.issubdtype(img.dtype, np.number) or img.dtype == np.bool_:
        raise CLIError(f"'{path}': unsupported pixel type {img.dtype}")
    return img


def _read_values(path: Path) -> np.ndarray:
    """The pixel values of an image file (any axes), checked to be numeric and finite (for --check)."""
    img = _read_numeric(path)
    if not np.isfinite(img).all():
        raise CLIError(f"'{path}' contains NaN or infinite values")
    return img


#: Keywords of :func:`n2v_tf.train_pn2v_bootstrapped` in its messages, and the options of ``bootstrap`` that set them.
_BOOTSTRAP_FLAGS = {"reuse_n2v=True": "--reuse-n2v", "overwrite=True": "--overwrite", "another n2v_name": "another "
                    "--n2v-name", "the n2v_name": "the --n2v-name", "another name": "another --name"}


def _bootstrap_error(e: Exception) -> CLIError:
    """A CLIError from an error of :func:`n2v_tf.train_pn2v_bootstrapped`, its keywords named as the options."""
    message = str(e)
    for keyword, flag in _BOOTSTRAP_FLAGS.items():
        message = message.replace(keyword, flag)
    return CLIError(message)


@contextlib.contextmanager
def _pipeline_output(command: str):
    """Print the progress of the PN2V pipeline (INFO of the logger ``n2v_tf.models``) on stdout, and warnings
    (UserWarning, RuntimeWarning) as one-line notes on stderr."""
    log = logging.getLogger("n2v_tf.models")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            show = warnings.showwarning

            def one_line(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, (UserWarning, RuntimeWarning)):
                    _warn(command, message)
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = one_line
            yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from .models import _check_bootstrap_folders, train_pn2v_bootstrapped
    axes = parse_axes(args.axes)
    _check_training_args(args, ("n2v_epochs", "n2v_steps", "pn2v_samples"))
    _check_fit_args(args, "gmm_steps")
    if args.pn2v_samples < 2:
        raise CLIError(f"--pn2v-samples must be >= 2, got {args.pn2v_samples}")
    if not 0 <= args.clip_percent < 50:
        raise CLIError(f"--clip-percent must be in [0, 50), got {args.clip_percent}")
    n2v_name = args.n2v_name or f"{args.name}_n2v"
    if n2v_name == args.name:
        raise CLIError(f"--n2v-name must differ from --name ({args.name!r}): the N2V and PN2V models need two folders")
    model_dir = Path(args.model_dir)
    folder = model_dir / args.name
    try:                                        # before reading the images
        _check_bootstrap_folders(model_dir, args.name, n2v_name, args.overwrite, args.reuse_n2v)
    except (ValueError, OSError) as e:
        raise _bootstrap_error(e) from None
    files, images, patch, train, val, split = _training_data(args, axes)
    _check_single_channel(images, axes, "PN2V (bootstrap)")
    n_dim = len(patch)
    n2v_epochs = args.n2v_epochs or args.epochs
    n2v_steps = args.n2v_steps or args.steps
    n2v_config = None if args.reuse_n2v else _config_from_args(args, train, patch, n2v_epochs, n2v_steps)
    pn2v_config = _config_from_args(args, train, patch, probabilistic=True, pn2v_samples=args.pn2v_samples)
    print(f"{len(files)} file(s), {len(images)} image(s) with axes {axes}; {split}")
    print(f"Fully unsupervised PN2V: 1. train {args.preset.upper()}, 2. fit a {_KIND_NAMES[args.kind]} to (N2V "
          f"prediction, noisy) pairs, 3. train PN2V ({args.pn2v_samples} samples per pixel)")
    print(f"Networks: {n_dim}D patches {patch}, batch {args.batch_size}, U-Net depth {args.depth}, kernel "
          f"{args.kernel_size}, n_first {args.n_first}")
    print()
    with _pipeline_output(args.command):
        try:
            result = train_pn2v_bootstrapped(
                train, val, [im for _, im in images], ("ZYX" if n_dim == 3 else "YX") + "C", args.name, model_dir,
                n2v_config=n2v_config, pn2v_config=pn2v_config, n2v_name=n2v_name, kind=args.kind,
                clip_percent=args.clip_percent, noise_model_kwargs=_fit_kwargs(args, args.kind, args.gmm_steps),
                reuse_n2v=args.reuse_n2v, overwrite=args.overwrite, qc_figure=not args.no_png,
                bootstrap_tta=args.bootstrap_tta, seed=args.seed, verbose=args.verbose)
        except (ValueError, TypeError, OSError) as e:
            raise _bootstrap_error(e) from None
    print()
    for line in describe_noise_model(result.noise_model):
        print(line)
    print(f"The signal range covers {result.coverage:.1%} of the N2V prediction (pseudo ground truth).")
    print(f"Stages: N2V {result.seconds['n2v']:.0f} s, noise model {result.seconds['noise_model']:.1f} s, PN2V "
          f"{result.seconds['pn2v']:.0f} s. PN2V model saved in '{folder}'.")
    print(f"Denoise (MMSE estimate) with: {PROG} predict IMAGES --model-dir {args.model_dir} --name {args.name} "
          f"--axes {axes} --output OUTDIR")
    return 0


# --------------------------------------------------------------------------- argument parsing

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for required options, flags and options without a default."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _add_training_args(t: argparse.ArgumentParser, preset: str) -> None:
    """Options shared by ``train`` and ``bootstrap``."""
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF/PNG files or folders (all *.tif, *.tiff, *.png)")
    t.add_argument("--axes", default="YX", help="axes of the images, e.g. YX, YXC, ZYX, SYX/TYX (S/T: stack of 2D "
                                                "images, split into separate images)")
    t.add_argument("--model-dir", required=True, help="folder that holds the model folder")
    t.add_argument("--name", required=True, help="model name (folder DIR/NAME)")
    t.add_argument("--preset", choices=CLI_PRESETS, default=preset,
                   help="n2v: N2V (uniform_withCP replacement); n2v2: blur-pool, no top skip connection, median "
                        "replacement; both with the recommended network and training (N2VConfig.preset); "
                        "n2v-0.3: n2v 0.3.3's N2V network")
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
    t.add_argument("--perc-pix", type=float, default=None,
                   help="percentage of blind-spot pixels per patch (default: the preset's, 1.5; structN2V 0.198)")
    t.add_argument("--learning-rate", type=float, default=0.0004, help="Adam learning rate")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to DIR/NAME/logs")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the training patches in random 90-degree rotations and flips of the YX plane "
                        "(default: the preset's choice)")
    t.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="after training, fit the output's gain and offset on the blind-spot pixels of the validation "
                        "data and fold them into the network (default: the preset's choice, on except for n2v-0.3)")
    t.add_argument("--mixed-precision", choices=("float32", "mixed_bfloat16", "mixed_float16", "auto"), default=None,
                   help="training precision: auto = bfloat16 on CPUs with AMX/AVX512-BF16 and on GPUs from compute "
                        "capability 8.0, float16 from 7.0, else float32 (default: the preset's choice); the saved "
                        "model predicts in float32 either way")
    t.add_argument("--struct-mask", default=None, metavar="MASK",
                   help="structN2V mask: AXIS:SPAN (e.g. X:9) or the literal printed by 'n2v-tf analyze-noise'")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch")


def _add_fit_args(parser: argparse.ArgumentParser, steps_flag: str) -> None:
    """Noise-model fit options shared by ``noise-model`` and ``bootstrap``."""
    parser.add_argument("--bins", type=int, default=HISTOGRAM_BINS, help="histogram: bins per axis (signal and "
                                                                       "observation)")
    parser.add_argument("--n-gaussian", type=int, default=3, help="GMM: Gaussian components")
    parser.add_argument("--n-coeff", type=int, default=2,
                        help="GMM: coefficients of the polynomials of the signal (2: linear, as shot noise)")
    parser.add_argument(steps_flag, type=int, default=1000, dest=steps_flag.lstrip("-").replace("-", "_"),
                        help="GMM: Adam steps of the maximum-likelihood fit")
    parser.add_argument("--fit-batch-size", type=int, default=25_000, help="GMM: pairs per Adam step")


def cmd_export(args) -> int:
    from .export import BioImageIOValidationError, export_bioimageio
    folder = Path(args.model_dir)
    model = load_model(str(folder.parent), folder.name)
    axes = parse_axes(args.axes) if args.axes else ("ZYX" if model.config.n_dim == 3 else "YX")
    img = read_checked(Path(args.test_img), axes)
    t0 = time.perf_counter()
    try:
        out = export_bioimageio(model, args.output, test_img=img, axes=axes, name=args.name,
                                description=args.description, authors=args.authors, license=args.license,
                                tags=args.tags, overwrite=args.overwrite, weight_formats=args.formats,
                                validate=not args.no_validate)
    except FileExistsError as e:
        raise CLIError(f"{e}".replace("overwrite=True", "--overwrite")) from None
    except (ValueError, TypeError, OSError, ImportError, NotImplementedError, BioImageIOValidationError) as e:
        raise CLIError(str(e)) from None
    checked = "" if args.no_validate else f"; bioimageio.core test passed for {', '.join(args.formats)}"
    print(f"Wrote '{out}' ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s{checked}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .export import WEIGHT_FORMATS  # stdlib + NumPy only
    """The argument parser of ``n2v-tf`` (subcommands train, predict, demo, analyze-noise, noise-model, bootstrap)."""
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
                                   "different sizes are fine: random patches are cropped on the fly. With "
                                   "--noise-model, train a Probabilistic N2V (PN2V) model with that noise model.")
    _add_training_args(t, "n2v2")
    t.add_argument("--noise-model", default=None, metavar="NM.npz",
                   help=f"train PN2V with this noise model (written by '{PROG} noise-model', or a GMM/histogram "
                        "file of n2v_tf, ppn2v or CAREamics)")
    t.add_argument("--pn2v-samples", type=int, default=None, metavar="K",
                   help=f"with --noise-model: signal samples per pixel (default {DEFAULT_PN2V_SAMPLES}, as in the "
                        "PN2V paper; 64-200 train much faster on a CPU)")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", formatter_class=fmt, help="denoise images with a trained model",
                       description="Denoise images with a trained model; writes one float32 TIFF per input "
                                   "(OUTDIR/<name>_n2v.tif). Images larger than memory are predicted block by "
                                   "block (and resumed after an interruption by running the same command again) "
                                   "when --output ends in .zarr or .ome.zarr, when an input is a Zarr/OME-Zarr "
                                   "store, or with --blocks/--block-shape (then a .tif/.tiff --output is one BigTIFF "
                                   "file); --dask-scheduler predicts with Dask on local threads/processes or a "
                                   "dask.distributed cluster. Zarr and Dask need pip install \"n2v_tf[large]\".")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF/PNG files or folders, or Zarr/OME-Zarr stores")
    p.add_argument("--model-dir", required=True, help="folder that holds the model folder")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--axes", default=None, help="axes of the images, e.g. YX, ZYX, YXC, TYX (default: the model's "
                                                "spatial axes, plus C for multi-channel models)")
    p.add_argument("--output", required=True, metavar="OUTDIR",
                   help="output folder (created if needed), or for one input the output image: OUT.zarr, "
                        "OUT.ome.zarr (OME-Zarr with the input's axes and pixel sizes) or, with --blocks, OUT.tif")
    p.add_argument("--n-tiles", type=int, nargs="+", metavar="N", default=None,
                   help="tiles per image axis (one number per letter of --axes, 1 for C/S/T), for large images")
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips (test-time augmentation)")
    p.add_argument("--match-mean", action="store_true",
                   help="N2V models: shift each image's prediction (per channel) to the mean of the input, removing "
                        "a global offset of the network (in-memory prediction only)")
    p.add_argument("--calibrate", type=_draws, default=0, metavar="K",
                   help="N2V models: map each image's prediction (per channel) through the intensity curve fitted on "
                        "K maskings of its own blind spots, at the cost of K more predictions; 'auto': enough draws "
                        "for 30 000 blind spots (8 for a 512x512 image); block-wise (Zarr, --blocks): fitted on masked "
                        "blocks")
    p.add_argument("--calibrate-bins", type=int, default=None, metavar="N",
                   help="segments of that curve (default: one per 4000 blind spots, at most 16; 1: a gain and an "
                        "offset only)")
    p.add_argument("--dtype", choices=("float32", "input"), default="float32",
                   help="pixel type of the outputs: float32, or that of each input (integers rounded and clipped to "
                        "the type's range)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable or unfitting input files and go on with the others (exit code 1 if any "
                        "was skipped) instead of stopping at the first")
    p.add_argument("--qc", default=None, metavar="OUT.png",
                   help="also write a quality-control figure of the first input: input and prediction with the same "
                        "contrast, the residual input - prediction and its autocorrelation (needs matplotlib)")
    p.add_argument("--pn2v-output", choices=("mmse", "prior_mean"), default=None,
                   help="PN2V models: the MMSE estimate (default; uses the noise model saved with the model) or the "
                        "mean of the predicted signal samples")
    p.add_argument("--blocks", action="store_true",
                   help="predict block by block from the file on disk (memory bounded by the block, not the image) "
                        "and write a BigTIFF (OUTDIR/<name>_n2v.tif, or --output OUT.tif) or Zarr; implied by a "
                        ".zarr/.ome.zarr --output, a Zarr input or --block-shape")
    p.add_argument("--block-shape", default=None, metavar="N,N[,N]",
                   help="block-wise prediction: block size per spatial axis of the model, comma-separated (default "
                        "1024,1024 in 2D, 64,128,128 in 3D); also the chunks of a Zarr output and of --dask-scheduler")
    p.add_argument("--overwrite", action="store_true",
                   help="block-wise/Dask prediction: replace an existing output (or the interrupted run of another "
                        "job); without it an existing output is refused, and an interrupted run of the same command "
                        "is resumed")
    p.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="predict with Dask: 'threads' or 'processes' (this machine), or the address of a "
                        "dask.distributed scheduler (tcp://HOST:8786, or a scheduler JSON file). A .zarr/.ome.zarr "
                        "--output is computed chunk by chunk on the workers; TIFF inputs with an output folder are "
                        "distributed file by file. Model folder, inputs and output must be reachable from the workers")
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
    d.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
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

    n = sub.add_parser("noise-model", formatter_class=fmt, help="fit a PN2V noise model to a calibration stack",
                       description="Fit a noise model p(x|s) for Probabilistic N2V to a calibration stack: noisy "
                                   "frames of a static sample, whose mean is taken as the signal. Writes the model "
                                   "(.npz) and a plot of p(x|s) with the data's histograms, and prints a summary "
                                   "(signal range, noise std, variance law, coverage).")
    n.add_argument("--calibration", required=True, metavar="STACK.tif",
                   help="the calibration stack (e.g. a multi-page TIFF of shape (frames, Y, X))")
    n.add_argument("--axis", type=int, default=0, help="axis of the frames in the stack")
    n.add_argument("--kind", choices=NOISE_MODEL_KINDS + ("both",), default="gmm",
                   help="gmm: Gaussian mixture with signal-dependent parameters (PPN2V); histogram: 2D histogram "
                        "(PN2V); both: two files, OUTPUT with the suffixes _gmm and _histogram")
    n.add_argument("--output", required=True, metavar="NM.npz", help="noise model file (.npz)")
    n.add_argument("--png", default=None, metavar="NM.png", help="plot of the noise model (default: OUTPUT with .png)")
    n.add_argument("--no-png", action="store_true", help="do not write the plot")
    n.add_argument("--check", nargs="+", default=None, metavar="IMAGE",
                   help="images to denoise: report the fraction of their values inside the model's signal range")
    _add_fit_args(n, "--steps")
    n.add_argument("--seed", type=int, default=0, help="GMM: seed of the initial jitter and the batches (default 0)")
    n.set_defaults(func=cmd_noise_model)

    b = sub.add_parser("bootstrap", formatter_class=fmt,
                       help="fully unsupervised PN2V: train N2V, bootstrap a noise model, train PN2V",
                       description="Fully unsupervised Probabilistic N2V (Prakash et al., ISBI 2020): train N2V on "
                                   "the noisy images (model DIR/N2V_NAME), predict them, fit a noise model to the "
                                   "(prediction, noisy) pairs (the lowest and highest --clip-percent of the "
                                   "predictions dropped), then train PN2V with it (model DIR/NAME, which also holds "
                                   "the noise model file and its plot noise_model.png). Denoise with "
                                   f"'{PROG} predict --name NAME' (MMSE estimate).")
    _add_training_args(b, "n2v")
    b.add_argument("--n2v-name", default=None, help="name of the N2V model of the first stage (default NAME_n2v)")
    b.add_argument("--reuse-n2v", action="store_true",
                   help="bootstrap from the already trained N2V model DIR/N2V_NAME instead of training it")
    b.add_argument("--n2v-epochs", type=int, default=None, help="epochs of the N2V stage (default --epochs)")
    b.add_argument("--n2v-steps", type=int, default=None, help="steps per epoch of the N2V stage (default --steps)")
    b.add_argument("--kind", choices=NOISE_MODEL_KINDS, default="gmm", help="noise model")
    b.add_argument("--pn2v-samples", type=int, default=DEFAULT_PN2V_SAMPLES, metavar="K",
                   help="signal samples per pixel of PN2V (the paper's 800; 64-200 train much faster on a CPU)")
    b.add_argument("--clip-percent", type=float, default=0.5,
                   help="drop the pairs whose N2V prediction lies in the lowest or highest CLIP_PERCENT %%")
    _add_fit_args(b, "--gmm-steps")
    b.add_argument("--bootstrap-tta", action="store_true",
                   help="fit the noise model to N2V's test-time-augmented prediction (8 flips/rotations averaged: "
                        "closer to the signal, 8x the prediction time)")
    b.add_argument("--no-png", action="store_true", help="do not plot the noise model")
    b.set_defaults(func=cmd_bootstrap)

    e = sub.add_parser("export", formatter_class=fmt, help="export a trained model as a BioImage.IO package (.zip)",
                       description="Write a BioImage.IO model package (spec 0.5: Keras, TensorFlow SavedModel and "
                                   "ONNX weights) and check it with bioimageio.core's model test. Needs "
                                   "pip install \"n2v_tf[bioimageio]\".")
    e.add_argument("model_dir", metavar="MODEL_DIR", help="the model folder (DIR/NAME)")
    e.add_argument("output", metavar="OUT.zip", help="the package to write")
    e.add_argument("--test-img", required=True, metavar="IMAGE", help="a raw image; its prediction is the test output")
    e.add_argument("--axes", default=None, help="axes of the test image (default YX, or ZYX for 3D models)")
    e.add_argument("--name", default=None, help="model name in the package")
    e.add_argument("--description", default=None, help="one-line description")
    e.add_argument("--authors", default=None, help="comma-separated author names")
    e.add_argument("--license", default="BSD-3-Clause", help="SPDX licence identifier")
    e.add_argument("--tags", nargs="*", default=None, help="extra tags")
    e.add_argument("--formats", nargs="+", choices=WEIGHT_FORMATS, default=list(WEIGHT_FORMATS),
                   help="weight formats to write")
    e.add_argument("--overwrite", action="store_true", help="replace an existing OUT.zip")
    e.add_argument("--no-validate", action="store_true", help="skip bioimageio.core's model test")
    e.set_defaults(func=cmd_export)
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
