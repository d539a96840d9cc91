"""Image files: reading (TIFF with ImageJ/OME axes, PNG/JPEG, ``.npy``), folders and glob patterns, axes, checks,
TIFF metadata and writing that never leaves a half-written file. No Keras/TensorFlow import.

Everything that touches image files lives here, so that ``data`` (training data), ``models`` (prediction) and
``cli`` (command line) share one suffix list, one axes logic and one way of writing files:

- :func:`read_image`, :func:`load_images`, :func:`guess_axes`, :func:`check_images`: reading and checking;
- :func:`collect_files`: folders and glob patterns -> files, with :data:`IMAGE_EXTENSIONS`;
- :func:`atomic_path`, :func:`write_text_atomic`: write to a temporary name in the target folder, rename when
  complete (a crash or Ctrl-C never leaves a truncated file under the final name);
- :func:`read_tiff_metadata`, :func:`write_tiff`: keep a TIFF's axes, pixel size and ImageJ/OME calibration
  from input to output;
- :func:`open_array`, :class:`LazyArray`, :func:`block_slices`, :func:`require`: images larger than memory (TIFF,
  Zarr, OME-Zarr) opened without reading, read region by region; optional modules imported with an install hint;
- :class:`ChunkCache`: a least-recently-used cache of decoded chunks, bounded in bytes, for the many small patch
  reads of training.
"""
from __future__ import annotations

import contextlib
import glob
import importlib
import itertools
import logging
import math
import os
import threading
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import tifffile

__all__ = [
    "IMAGE_EXTENSIONS",
    "PATCH_CACHE_BYTES",
    "ChunkCache",
    "LazyArray",
    "atomic_path",
    "block_slices",
    "check_images",
    "chunk_shape",
    "collect_files",
    "guess_axes",
    "is_lazy",
    "load_images",
    "open_array",
    "read_image",
    "read_tiff_metadata",
    "require",
    "save_npz_atomic",
    "savefig_atomic",
    "to_dtype",
    "write_text_atomic",
    "write_tiff",
]

logger = logging.getLogger("n2v_tf")

#: File name endings of images read from a folder (case-insensitive), by the library and by the CLI.
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")


# --------------------------------------------------------------------------- writing without half-written files

def _suffixes(name: str) -> str:
    """The ending that names a format: ``'.weights.h5'``, ``'.ome.tif'``, ``'.bioimage.io.zip'`` or the last suffix."""
    lower = name.lower()
    for multi in (".weights.h5", ".ome.tiff", ".ome.tif", ".bioimage.io.zip", ".ome.zarr"):
        if lower.endswith(multi):
            return name[-len(multi):]
    return Path(name).suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block completes.

    The temporary file keeps the format ending of ``path`` (``.h5``, ``.weights.h5``, ``.tif``, ...) so that
    writers that choose the format by the file name behave the same. If the block raises (an error, a full disk,
    ``KeyboardInterrupt``), the temporary file is removed and a previous file at ``path`` stays untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final file.

    Yields
    ------
    pathlib.Path
        Where to write.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / 'out.txt'
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text('complete')
    >>> target.read_text()
    'complete'
    """
    path = Path(path)
    end = _suffixes(path.name)
    stem = path.name[:len(path.name) - len(end)] if end else path.name
    tmp = path.with_name(f".{stem}.partial-{os.getpid()}{end}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) under a temporary name and rename it to ``path`` when complete."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def save_npz_atomic(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez`` under a temporary name, renamed when complete; ``.npz`` is added to ``path`` as NumPy does."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def savefig_atomic(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """``fig.savefig`` (format from the file ending) under a temporary name, renamed when complete."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)


# --------------------------------------------------------------------------- reading

_AXES_LETTERS = "STZYXC"
#: Below these sizes (pixels) :func:`check_images` warns that an image is tiny.
TINY_SIZE = {"Z": 16, "Y": 64, "X": 64}
#: Above this size in float32 (bytes) :func:`check_images` warns that an image is huge.
HUGE_BYTES = 2 * 1024 ** 3


def _check_axes_string(axes: object, name: str = "axes") -> str:
    """An axes string of the letters S, T, Z, Y, X, C (each once, with Y and X), upper-case."""
    if not isinstance(axes, str):
        raise TypeError(f"{name} must be a string such as 'YX', 'ZYX' or 'YXC', got {type(axes).__name__} {axes!r}")
    a = axes.strip().upper()
    if (set(a) - set(_AXES_LETTERS) or len(set(a)) != len(a) or not {"Y", "X"} <= set(a)
            or ("S" in a and "T" in a)):
        raise ValueError(f"{name}={axes!r} is invalid: use the letters S (or T), Z, Y, X, C, each at most once, "
                         "including Y and X (e.g. 'YX', 'ZYX', 'YXC', 'SYX', 'ZCYX')")
    return a

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF (``tifffile``), a PNG/JPEG (Pillow) or a ``.npy`` file as a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File path.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file cannot be read as an image (corrupt, truncated, not an image, or empty); the message names it.
    """
    ext = os.path.splitext(str(path))[1].lower()
    try:
        if ext in (".tif", ".tiff"):
            arr = tifffile.imread(path)
        elif ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image
            with Image.open(path) as im:
                arr = np.asarray(im)
    except FileNotFoundError:
        raise
    except Exception as e:  # unreadable or corrupt file: say which one
        raise ValueError(f"cannot read image file {str(path)!r}: {e}") from e
    if arr.size == 0:
        raise ValueError(f"image file {str(path)!r} holds no pixels (shape {arr.shape})")
    return arr


def guess_axes(shape: Sequence[int] | np.ndarray, n_channel_max: int = 4) -> str:
    """Guess the axes of an image from its shape.

    Parameters
    ----------
    shape : sequence of int or numpy.ndarray
        The image shape (or the image itself).
    n_channel_max : int
        A last axis of at most this many entries is taken for colour channels (C).

    Returns
    -------
    str
        The guessed axes, by the number of dimensions:

        - 2: ``'YX'``;
        - 3: ``'YXC'`` if the last axis has at most ``n_channel_max`` entries (e.g. an RGB image),
          else ``'ZYX'`` (a Z stack);
        - 4: ``'ZYXC'`` if the last axis is small, else ``'SZYX'`` (several Z stacks);
        - 5: ``'SZYXC'`` if the last axis is small, else ``'SZCYX'`` (ImageJ's hyperstack order
          TZCYX, with T as the sample axis).

    Raises
    ------
    ValueError
        Fewer than 2 or more than 5 dimensions, or ``n_channel_max`` < 1.

    Notes
    -----
    A guess from the shape alone cannot tell a Z stack from a time series or from a set of 2D
    images (``'ZYX'`` vs ``'TYX'``/``'SYX'``), nor a 3-slice stack ``(3, Y, X)`` from a
    channel-first RGB image: pass the axes explicitly when the guess is wrong. The guess is logged
    (logger ``'n2v_tf'``, level INFO).

    Examples
    --------
    >>> guess_axes((512, 512, 3))
    'YXC'
    >>> guess_axes((40, 512, 512))
    'ZYX'
    """
    if isinstance(shape, np.ndarray):
        shape = shape.shape
    shape = tuple(int(s) for s in shape)
    if isinstance(n_channel_max, bool) or not isinstance(n_channel_max, (int, np.integer)) or n_channel_max < 1:
        raise ValueError(f"guess_axes: n_channel_max must be an int >= 1, got {n_channel_max!r}")
    nd = len(shape)
    if nd < 2 or nd > 5:
        raise ValueError(f"guess_axes: cannot guess axes for {nd} dimension(s) (shape {shape}): images have 2 to 5 "
                         "dimensions (e.g. YX, ZYX, YXC, ZYXC, SZYXC)")
    small = shape[-1] <= n_channel_max
    if nd == 2:
        axes, why = "YX", "a 2D image"
    elif nd == 3:
        axes, why = (("YXC", f"the last axis has {shape[-1]} <= {n_channel_max} entries: colour channels") if small
                     else ("ZYX", f"the last axis has {shape[-1]} > {n_channel_max} entries: a Z stack"))
    elif nd == 4:
        axes, why = (("ZYXC", f"a Z stack with {shape[-1]} channel(s) last") if small
                     else ("SZYX", "several Z stacks"))
    else:
        axes, why = (("SZYXC", f"several Z stacks with {shape[-1]} channel(s) last") if small
                     else ("SZCYX", "ImageJ's hyperstack order TZCYX"))
    logger.info("guessed axes %r from shape %s (%s)", axes, shape, why)
    return axes


def collect_files(source: str | os.PathLike | Sequence[str | os.PathLike], pattern: str | None = None) -> list[Path]:
    """Expand a folder, a glob pattern, a file, or a list of them into image files (sorted per item).

    Parameters
    ----------
    source : str or os.PathLike or list of them
        Folders (their files ending in one of :data:`IMAGE_EXTENSIONS`, hidden files skipped), glob patterns
        (``'data/*.tif'``) or files (taken as given).
    pattern : str, optional
        For folders: a glob pattern of the files to take instead of the suffix list.

    Returns
    -------
    list of pathlib.Path
        Each file once, in the order given (sorted within a folder or pattern).

    Raises
    ------
    FileNotFoundError
        A file or folder does not exist.
    ValueError
        A folder or pattern matches no image file, or ``source`` is empty.
    """
    if isinstance(source, (str, os.PathLike)):
        items = [source]
    elif isinstance(source, Sequence) and not isinstance(source, bytes):
        items = list(source)
        if not items:
            raise ValueError("load_images: source is an empty list; give a folder, a glob pattern such as "
                             "'data/*.tif', a file, or a list of files")
    else:
        raise TypeError(f"load_images: source must be a folder, a glob pattern, a file or a list of files, "
                        f"got {type(source).__name__}")
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"load_images: pattern must be a glob string such as '*.tif', got {pattern!r}")
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            if pattern:
                found = sorted(f for f in p.glob(pattern) if f.is_file() and not f.name.startswith("."))
            else:
                found = sorted(f for f in p.iterdir()
                               if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
            if not found:
                what = (f"matching pattern {pattern!r}" if pattern
                        else f"(read: {', '.join('*' + e for e in IMAGE_EXTENSIONS)})")
                raise ValueError(f"load_images: no image files in folder '{p}' {what}: it contains no images; "
                                 "check the path, or copy the images there")
            files += found
        elif p.is_file():
            files.append(p)
        elif any(c in str(item) for c in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(item)) if os.path.isfile(f))
            if not found:
                raise ValueError(f"load_images: no files match the pattern '{item}'")
            files += found
        else:
            raise FileNotFoundError(f"load_images: '{p}' does not exist (no such file or folder)")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _tiff_axes(raw: str, shape: tuple[int, ...], path: Path) -> tuple[str, str | None]:
    """Map tifffile's series axes to n2v_tf letters; returns ``(axes, note)``, ``note`` saying what was assumed."""
    out: list[str | None] = []
    notes = []
    for a in raw:
        if a in "ZYXCT":
            out.append(a)
        elif a == "S":                                  # samples per pixel: RGB(A)
            if "C" in raw:
                raise ValueError(f"load_images: '{path}' has both colour samples and channels (TIFF axes {raw!r}, "
                                 f"shape {shape}); pass axes=... explicitly")
            out.append("C")
        elif a == "I":                                  # a sequence of pages without a meaning
            letter = "Z" if "Z" not in raw else ("T" if "T" not in raw else "S")
            out.append(letter)
            notes.append(f"its page axis is taken as {letter}")
        elif a == "Q":                                  # unknown axis
            out.append(None)
        else:
            raise ValueError(f"load_images: '{path}' has the TIFF axes {raw!r} (shape {shape}), whose {a!r} axis "
                             "n2v_tf does not know; pass axes=... explicitly (letters S/T, Z, Y, X, C)")
    if None in out:
        guess = guess_axes(shape)
        for i, a in enumerate(out):
            if a is None:
                out[i] = guess[i] if guess[i] not in out else next(c for c in "ZSTC" if c not in out)
        notes.append(f"guessed from the shape {shape}")
    axes = "".join(out)  # type: ignore[arg-type]
    try:
        axes = _check_axes_string(axes, "axes")
    except ValueError:
        raise ValueError(f"load_images: cannot make sense of the TIFF axes {raw!r} of '{path}' (shape {shape}); "
                         "pass axes=... explicitly") from None
    return axes, (f"'{path}' does not store the meaning of all its axes (TIFF axes {raw!r}): " + ", ".join(notes)
                  if notes else None)


def _read_with_axes(path: Path) -> tuple[np.ndarray, str | None, str | None]:
    """Read an image; return ``(array, axes or None, note)``: the axes the file stores or implies."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr = series.asarray()
                raw = series.axes
                n_series = len(tif.series)
        except FileNotFoundError:
            raise
        except Exception as e:  # corrupt or not a TIFF: say which file
            raise ValueError(f"load_images: cannot read '{path}' as a TIFF image: {e}") from e
        if n_series > 1:
            logger.info("'%s' holds %d image series; reading the first one (axes %r, shape %s)", path, n_series,
                        raw, arr.shape)
        if len(raw) != arr.ndim:
            return arr, None, f"'{path}': TIFF axes {raw!r} do not fit the shape {arr.shape}"
        axes, note = _tiff_axes(raw, arr.shape, path)
        return arr, axes, note
    try:
        arr = read_image(str(path))
    except ValueError as e:
        raise ValueError(f"load_images: cannot read '{path}' as an image ({e})") from e
    if arr.ndim == 2:
        return arr, "YX", None
    if arr.ndim == 3 and arr.shape[-1] <= 4:
        return arr, "YXC", None
    return arr, None, None


def load_images(source: str | os.PathLike | Sequence[str | os.PathLike], axes: str | None = None,
                pattern: str | None = None) -> tuple[list[np.ndarray], str]:
    """Read images from a folder, a glob pattern, a file, or a list of files, with their axes.

    Parameters
    ----------
    source : str or os.PathLike or list of them
        A folder (its ``*.tif``, ``*.tiff``, ``*.png``, ``*.jpg``, ``*.jpeg`` files, sorted by name;
        hidden files skipped), a glob pattern (``'data/*_noisy.tif'``), an image file, or a list of
        any of these.
    axes : str, optional
        The axes of every file, e.g. ``'YX'``, ``'ZYX'``, ``'YXC'``, ``'TYX'``, ``'ZCYX'``
        (letters S or T, Z, Y, X, C). Default: read from the files (see Notes), else guessed with
        :func:`guess_axes`.
    pattern : str, optional
        For folders: a glob pattern of the files to read, e.g. ``'*_noisy.tif'`` (default: all files
        with the endings above).

    Returns
    -------
    images : list of numpy.ndarray
        One array per file, in the file's own axis order and dtype (not converted).
    axes : str
        The axes of the arrays.

    Raises
    ------
    FileNotFoundError
        A file or folder does not exist.
    ValueError
        A folder without image files (naming the folder and the endings read), a pattern without
        matches, an unreadable file (naming it), ``axes`` whose length differs from a file's number of
        dimensions (naming the file, its shape and the axes), or files with different axes.

    Notes
    -----
    TIFF files are read with ``tifffile`` (the first image series) and their axes taken from the
    file: ImageJ hyperstacks and OME-TIFF store them (e.g. ``'ZCYX'``); tifffile's letters are
    mapped to n2v_tf's: ``S`` (RGB samples) -> ``C``, ``I`` (a plain page sequence) -> ``Z`` (if
    there is no Z, else ``T``), ``Q`` (unknown) -> guessed from the shape. PNG/JPEG files
    (Pillow) are ``'YX'`` or, in colour, ``'YXC'``. Whatever is assumed or guessed is logged as a
    warning (logger ``'n2v_tf'``) with the sentence to change it; pass ``axes`` to be explicit.

    Examples
    --------
    >>> images, axes = load_images("data/noisy/")            # doctest: +SKIP
    >>> print(check_images(images, axes, n_dim=2))           # doctest: +SKIP
    """
    files = collect_files(source, pattern)
    given = None if axes is None else _check_axes_string(axes, "axes")
    images: list[np.ndarray] = []
    found: list[tuple[Path, str | None, str | None]] = []
    for f in files:
        if given is not None and f.suffix.lower() not in (".tif", ".tiff"):
            try:
                arr, fax, note = read_image(str(f)), None, None
            except ValueError as e:
                raise ValueError(f"load_images: cannot read '{f}' as an image ({e})") from e
        else:
            arr, fax, note = _read_with_axes(f)
        if given is not None and arr.ndim != len(given):
            hint = (f"; for colour channels add C, e.g. axes='{given}C'"
                    if arr.ndim == len(given) + 1 and arr.shape[-1] <= 4 and "C" not in given else "")
            raise ValueError(f"load_images: axes={given!r} has {len(given)} letter(s), but '{f}' has {arr.ndim} "
                             f"dimension(s), shape {arr.shape}{hint}")
        images.append(arr)
        found.append((f, fax, note))
    if given is not None:
        logger.info("read %d image(s) with axes %r", len(images), given)
        return images, given
    resolved = []
    for (f, fax, note), arr in zip(found, images):
        if fax is None:
            fax = guess_axes(arr.shape)
            note = (f"{note}; " if note else f"'{f}' does not store its axes: ") + f"guessed from the shape {arr.shape}"
        resolved.append((f, fax, note))
    first_f, first_axes, _ = resolved[0]
    for f, fax, _ in resolved[1:]:
        if fax != first_axes:
            raise ValueError(f"load_images: the images have different axes: '{first_f}' has {first_axes!r} (shape "
                             f"{images[0].shape}), '{f}' has {fax!r}; load them separately, or pass axes=... if they "
                             "are the same kind of image")
    notes = [n for _, _, n in resolved if n]
    if notes:
        logger.warning("Axes %r: %s%s. If this is wrong, pass axes=... (e.g. 'TYX' or 'SYX' for a time series or "
                       "a set of 2D images, 'ZYX' for a Z stack, 'YXC' for colour).", first_axes, notes[0],
                       f" (and {len(notes) - 1} more file(s))" if len(notes) > 1 else "")
    else:
        logger.info("read %d image(s); axes %r from the files", len(images), first_axes)
    return images, first_axes


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def check_images(images: np.ndarray | Sequence[np.ndarray], axes: str | None, n_dim: int,
                 names: Sequence[str] | None = None, channels: int | None = None, allow_mixed_sizes: bool = False,
                 min_size: int | Sequence[int] | None = None) -> str:
    """Check images before training; raise with a sentence saying what to change, or summarise them.

    Parameters
    ----------
    images : list of numpy.ndarray
        The images (e.g. from :func:`load_images`); a single array is one image.
    axes : str or None
        Their axes, e.g. ``'YX'``, ``'ZYX'``, ``'YXC'``, ``'SYX'``; None: guessed from the first
        image's shape with :func:`guess_axes`.
    n_dim : int
        2 for a 2D model (axes without Z), 3 for a 3D model (axes with Z).
    names : list of str, optional
        One name per image (e.g. the file names) for the messages; default ``'image 0'``, ...
    channels : int, optional
        Channels the model expects (1: grayscale); None: any, but the same for all images.
    allow_mixed_sizes : bool
        Accept images of different sizes (training crops random patches, so that works).
    min_size : int or sequence of int, optional
        Smallest size along each spatial axis (e.g. the training patch shape), one number for all
        axes or one per spatial axis (in the order of ``axes``).

    Returns
    -------
    str
        A short summary to print: count, shape(s), dtype, axes and value range.

    Raises
    ------
    ValueError
        With one actionable sentence: no images; an image whose dimensions do not fit ``axes``;
        non-numeric or mixed dtypes; a 3D stack given for a 2D model (``n_dim=2`` but axes with Z,
        also when guessed); a 2D image given for a 3D model; an RGB image where grayscale
        (``channels=1``) is expected; other channel mismatches; NaN or infinite values; mixed sizes
        (unless ``allow_mixed_sizes``); an image smaller than ``min_size`` (naming it).

    Warns
    -----
    UserWarning
        Tiny images (fewer than 64 pixels along Y or X, fewer than 16 along Z): little to learn from,
        and the patch must shrink; huge images (over 2 GiB in float32): predict them with
        ``n_tiles``; constant images (a single value): probably blank frames.
    """
    if isinstance(images, np.ndarray):
        images = [images]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(f"check_images: images must be a list of arrays, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("check_images: no images (the list is empty): check the data folder and the file "
                         f"pattern; n2v_tf reads {', '.join('*' + e for e in IMAGE_EXTENSIONS)}")
    if n_dim not in (2, 3) or isinstance(n_dim, bool):
        raise ValueError(f"check_images: n_dim must be 2 (2D model) or 3 (3D model), got {n_dim!r}")
    arrays = [np.asarray(im) for im in images]
    if names is None:
        names = [f"image {i}" for i in range(len(arrays))]
    elif isinstance(names, str) or len(names) != len(arrays):
        raise ValueError(f"check_images: names must be a list of {len(arrays)} name(s), one per image, got {names!r}")
    names = [str(n) for n in names]
    guessed = axes is None
    if guessed:
        for a, n in zip(arrays[1:], names[1:]):
            if a.ndim != arrays[0].ndim:
                raise ValueError(f"check_images: the images have different numbers of dimensions ({names[0]}: shape "
                                 f"{arrays[0].shape}, {n}: shape {a.shape}); give images of one kind")
        axes = guess_axes(arrays[0].shape)
    else:
        axes = _check_axes_string(axes, "axes")
    how = " (guessed from the shape)" if guessed else ""
    for a, n in zip(arrays, names):
        if a.ndim != len(axes):
            raise ValueError(f"check_images: {n} has {a.ndim} dimension(s), shape {a.shape}, but axes {axes!r} has "
                             f"{len(axes)} letter(s); give one axes letter per dimension")
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"check_images: {n} has dtype {a.dtype}; images must hold real numbers (integers or "
                             "floats)")
    _check_dimensions(arrays[0], names[0], axes, how, n_dim)
    n_ch = _check_channels(arrays, names, axes, how, channels)
    _check_values(arrays, names)
    sizes = _check_sizes(arrays, names, axes, allow_mixed_sizes, min_size)
    _warn_unusual(arrays, names, axes, sizes)
    return _summary(arrays, axes, how, n_ch)


def _check_dimensions(a0: np.ndarray, n0: str, axes: str, how: str, n_dim: int) -> None:
    """A 3D stack given to a 2D model, or a 2D image to a 3D model."""
    if n_dim == 2 and "Z" in axes:
        slices = f"{a0.shape[axes.index('Z')]} Z slices"
        alt = (f"to train a 2D model on its slices use axes {axes.replace('Z', 'S')!r}" if not set("ST") & set(axes)
               else "to train a 2D model give single 2D images")
        raise ValueError(f"check_images: a 3D stack was passed as 2D data: {n0} has axes {axes!r}{how}, shape "
                         f"{a0.shape} ({slices}); for a 3D model set n_dim=3, or {alt}")
    if n_dim == 3 and "Z" not in axes:
        raise ValueError(f"check_images: a 2D image was given where 3D stacks are expected: {n0} has axes {axes!r}"
                         f"{how}, shape {a0.shape}, without a Z axis; use n_dim=2 for 2D images, or give axes with Z "
                         "(e.g. 'ZYX') if the images are stacks")


def _check_channels(arrays, names, axes: str, how: str, channels: int | None) -> list[int]:
    """Channel counts: as expected (an RGB image for a grayscale model says so) and equal for all images."""
    n_ch = [a.shape[axes.index("C")] if "C" in axes else 1 for a in arrays]
    if channels is not None:
        for a, n, c in zip(arrays, names, n_ch):
            if channels == 1 and c in (3, 4):
                raise ValueError(f"check_images: {n} is an RGB image (axes {axes!r}{how}, shape {a.shape}, {c} colour "
                                 "channels) but grayscale images (channels=1) are expected: convert to grayscale "
                                 f"(e.g. img.mean(axis={axes.index('C')})) or train a {c}-channel model")
            if c != channels:
                raise ValueError(f"check_images: {n} has {c} channel(s) (axes {axes!r}{how}, shape {a.shape}), "
                                 f"but channels={channels} are expected")
    for a, n, c in zip(arrays[1:], names[1:], n_ch[1:]):
        if c != n_ch[0]:
            raise ValueError(f"check_images: the images have different channel counts ({names[0]}: {n_ch[0]}, {n}: {c}); "
                             "give images with the same channels")
    return n_ch


def _check_values(arrays, names) -> None:
    """One dtype for all images, no NaN/Inf."""
    a0, n0 = arrays[0], names[0]
    for a, n in zip(arrays[1:], names[1:]):
        if a.dtype != a0.dtype:
            raise ValueError(f"check_images: the images have different dtypes ({a0.dtype} in {n0}, {a.dtype} in {n}): "
                             "convert them to one type, e.g. images = [im.astype('float32') for im in images]")
    for a, n in zip(arrays, names):
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError(f"check_images: {n} contains {int((~np.isfinite(a)).sum())} NaN or infinite value(s): "
                             "replace them (e.g. np.nan_to_num(img, nan=np.nanmedian(img))) or leave the image out")


def _check_sizes(arrays, names, axes: str, allow_mixed_sizes: bool, min_size) -> list[tuple[int, ...]]:
    """Spatial sizes: equal unless allowed, at least ``min_size``; returns them."""
    n0 = names[0]
    spatial = [i for i, c in enumerate(axes) if c in "ZYX"]
    sizes = [tuple(a.shape[i] for i in spatial) for a in arrays]
    if not allow_mixed_sizes:
        for s, n in zip(sizes[1:], names[1:]):
            if s != sizes[0]:
                raise ValueError(f"check_images: the images have different sizes ({n0}: {_shape_str(sizes[0])}, {n}: "
                                 f"{_shape_str(s)} along {''.join(axes[i] for i in spatial)}): crop them to one size, "
                                 "or set allow_mixed_sizes=True: training accepts images of different sizes")
    if min_size is not None:
        ms = [min_size] * len(spatial) if np.ndim(min_size) == 0 else list(min_size)
        if len(ms) != len(spatial) or not all(isinstance(m, (int, np.integer)) and m >= 1 for m in ms):
            raise ValueError(f"check_images: min_size must be an int >= 1 or one per spatial axis "
                             f"({''.join(axes[i] for i in spatial)}), got {min_size!r}")
        for s, n in zip(sizes, names):
            for size, m, i in zip(s, ms, spatial):
                if size < m:
                    raise ValueError(f"check_images: {n} is {size} px along {axes[i]}, smaller than the minimum {m} "
                                     "(the training patch): use larger images, or a smaller patch")
    return sizes


def _warn_unusual(arrays, names, axes: str, sizes) -> None:
    """Warn about tiny, huge and blank images."""
    spatial = [i for i, c in enumerate(axes) if c in "ZYX"]
    for a, n, s in zip(arrays, names, sizes):
        small = [f"{size} px along {axes[i]}" for size, i in zip(s, spatial) if size < TINY_SIZE[axes[i]]]
        if small:
            warnings.warn(f"{n} is tiny ({', '.join(small)}): N2V learns from many pixels, and the training patch "
                          "must fit in the image; use larger images if you have them", stacklevel=4)
        if a.size * 4 > HUGE_BYTES:
            warnings.warn(f"{n} is huge ({a.size * 4 / 1024 ** 3:.1f} GiB in float32, shape {a.shape}): predict it "
                          "with n_tiles (e.g. n_tiles=(4, 4)) to fit in memory", stacklevel=4)
        if a.size and a.min() == a.max():
            warnings.warn(f"{n} has a single value ({a.flat[0]}) everywhere: is it a blank frame? Leave it out",
                          stacklevel=4)


def _summary(arrays, axes: str, how: str, n_ch: list[int]) -> str:
    a0 = arrays[0]
    shapes = sorted({a.shape for a in arrays})
    shape_txt = (f"shape {_shape_str(shapes[0])}" if len(shapes) == 1 else
                 f"{len(shapes)} different shapes ({', '.join(_shape_str(s) for s in shapes[:3])}"
                 f"{', ...' if len(shapes) > 3 else ''})")
    lo = min(float(a.min()) for a in arrays if a.size) if any(a.size for a in arrays) else float("nan")
    hi = max(float(a.max()) for a in arrays if a.size) if any(a.size for a in arrays) else float("nan")
    channels_txt = f", {n_ch[0]} channel(s)" if "C" in axes else ""
    return (f"{len(arrays)} image(s), axes {axes}{how}, {shape_txt}{channels_txt}, dtype {a0.dtype}, "
            f"values {lo:.6g} to {hi:.6g}")


# --------------------------------------------------------------------------- TIFF metadata and writing

_OME_NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}


def read_tiff_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The calibration of a TIFF file that an output should keep.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF file; other files give an empty dict.

    Returns
    -------
    dict
        ``axes`` (tifffile's series axes, e.g. ``'ZYX'``), ``kind`` (``'imagej'``, ``'ome'`` or ``'tiff'``),
        ``resolution`` (pixels per unit in X and Y, as the TIFF tags store it) and ``resolutionunit``, ``imagej``
        (the ImageJ entries ``spacing``, ``unit``, ``finterval``, ``frames``-independent ones), ``ome`` (the
        ``Pixels`` attributes ``PhysicalSizeX/Y/Z`` and their units, ``TimeIncrement``): whatever the file has.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return {}
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages[0]
        meta: dict[str, Any] = {"axes": series.axes, "kind": "tiff"}
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            meta["resolution"] = (tags["XResolution"].value, tags["YResolution"].value)
            if "ResolutionUnit" in tags:
                meta["resolutionunit"] = int(tags["ResolutionUnit"].value)
        if tif.is_imagej and tif.imagej_metadata:
            meta["kind"] = "imagej"
            keep = ("spacing", "unit", "finterval", "fps", "xorigin", "yorigin", "zorigin", "yunit", "zunit",
                    "tunit", "loop")
            meta["imagej"] = {k: v for k, v in tif.imagej_metadata.items() if k in keep}
        elif tif.is_ome and tif.ome_metadata:
            meta["kind"] = "ome"
            try:
                root = ET.fromstring(tif.ome_metadata)
                pixels = root.find(".//ome:Pixels", _OME_NS)
                if pixels is None:  # another schema version: match the tag's local name
                    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
            except ET.ParseError:
                pixels = None
            ome = {}
            if pixels is not None:
                for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement"):
                    if key in pixels.attrib:
                        ome[key] = float(pixels.attrib[key])
                    if key + "Unit" in pixels.attrib:
                        ome[key + "Unit"] = pixels.attrib[key + "Unit"]
            meta["ome"] = ome
    return meta


def to_dtype(img: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Convert a prediction to ``dtype``: integers are rounded and clipped to the type's range.

    Parameters
    ----------
    img : numpy.ndarray
        Float image.
    dtype : str or numpy.dtype
        Target type (e.g. ``'float32'``, ``'uint16'``).

    Returns
    -------
    numpy.ndarray
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(img), info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        return img.astype(dtype, copy=False)
    raise ValueError(f"dtype must be a float or integer type, got {dtype}")


def write_tiff(path: str | os.PathLike, img: np.ndarray, axes: str | None = None,
               metadata: dict[str, Any] | None = None) -> None:
    """Write a TIFF with the calibration of :func:`read_tiff_metadata`, under a temporary name first.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    img : numpy.ndarray
        The image, with the axes of ``metadata['axes']`` (the input file's) or ``axes``.
    axes : str, optional
        Axes stored when ``metadata`` has none.
    metadata : dict, optional
        From :func:`read_tiff_metadata` of the input: an ImageJ input gives an ImageJ hyperstack (with
        ``spacing``, ``unit``, ``finterval`` and the resolution), an OME-TIFF input an OME-TIFF with its physical
        pixel sizes, a plain TIFF a TIFF with its resolution tags.

    Notes
    -----
    ImageJ hyperstacks hold 8/16-bit integers or float32; other types are written as a plain TIFF (with a
    warning), and so is an image whose shape no longer fits the ImageJ axes.
    """
    meta = dict(metadata or {})
    file_axes = meta.get("axes") or axes
    kwargs: dict[str, Any] = {}
    if "resolution" in meta:
        kwargs["resolution"] = meta["resolution"]
        if "resolutionunit" in meta:
            kwargs["resolutionunit"] = meta["resolutionunit"]
    kind = meta.get("kind", "tiff")
    if kind == "imagej" and img.dtype not in (np.uint8, np.uint16, np.float32):
        warnings.warn(f"{path}: ImageJ hyperstacks cannot hold {img.dtype}; writing a plain TIFF", stacklevel=2)
        kind = "tiff"
    if file_axes is not None and len(file_axes) != img.ndim:
        kind, file_axes = "tiff", axes
    if kind == "imagej":
        kwargs.update(imagej=True, metadata={"axes": file_axes, **meta.get("imagej", {})})
    elif kind == "ome":
        kwargs.update(ome=True, metadata={"axes": file_axes, **meta.get("ome", {})})
    else:
        kwargs["metadata"] = {"axes": file_axes} if file_axes else None
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, img, **kwargs)


# --------------------------------------------------------------------------- lazy arrays: data larger than memory

#: The pip names of the optional modules (the ``large`` extra), for the hint of :func:`require`.
_PIP_NAMES = {"zarr": "zarr", "dask": "dask[array]", "distributed": "distributed", "ome_zarr": "ome-zarr"}
#: Elements of one block read by :func:`block_slices` (32 MiB in float64).
BLOCK_ELEMENTS = 1 << 22
#: Default byte limit of a :class:`ChunkCache` (256 MiB of decoded chunks), e.g. of the patch reads of
#: :class:`n2v_tf.N2VSequence` from lazy images. Read when a cache is made: set it before ``N2V.train`` to change it.
PATCH_CACHE_BYTES = 256 * 1024 ** 2
#: NGFF axis names and types -> n2v_tf letters.
_NGFF_NAMES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
_NGFF_TYPES = {"time": "T", "channel": "C"}


def require(module: str, extra: str = "large") -> ModuleType:
    """Import an optional module, or say which package is missing and how to install it.

    Parameters
    ----------
    module : str
        Module name, e.g. ``'zarr'``, ``'dask.array'``, ``'ome_zarr'``.
    extra : str
        The ``n2v_tf`` extra that installs it (named in the message).

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    ImportError
        The module (or one of its dependencies) is not installed; the message names the package and the pip
        command, e.g. ``pip install "n2v_tf[large]"``.

    Examples
    --------
    >>> require('numpy').__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        pkg = _PIP_NAMES.get(top, top)
        raise ImportError(f"{module} is needed here but cannot be imported ({e}): install it with "
                          f"pip install \"n2v_tf[{extra}]\" (or pip install \"{pkg}\")") from e


def is_lazy(a: object) -> bool:
    """Whether ``a`` is an array-like that is not a NumPy array: a Zarr or Dask array, a :class:`LazyArray`, an
    HDF5 dataset, ... (anything with ``shape``, ``dtype`` and slicing). Such arrays are never loaded whole by the
    training code: it reads them block by block or patch by patch."""
    return (not isinstance(a, (np.ndarray, np.generic, list, tuple))
            and all(hasattr(a, n) for n in ("shape", "dtype", "__getitem__")))


def chunk_shape(a: object) -> tuple[int, ...] | None:
    """The chunk (block) shape of a lazy array: Zarr's ``chunks``, Dask's ``chunksize``; ``None`` if it has none."""
    size = getattr(a, "chunksize", None)  # dask: the largest chunk along each axis
    if size is None:
        size = getattr(a, "chunks", None)
        if size is not None and any(isinstance(c, tuple) for c in size):  # chunks per axis, e.g. dask's
            size = tuple(max(c) if isinstance(c, tuple) else c for c in size)
    if size is None or len(size) != len(a.shape):
        return None
    return tuple(int(c) for c in size)


def block_slices(shape: Sequence[int], chunks: Sequence[int] | None = None,
                 max_elements: int = BLOCK_ELEMENTS) -> Iterator[tuple[slice, ...]]:
    """Cover an array with blocks aligned to its chunks, each of at most ``max_elements`` (unless one chunk is larger).

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    chunks : sequence of int, optional
        Chunk shape (default: 1 along every axis). Blocks are whole multiples of it, so every chunk is read once.
    max_elements : int
        Target block size; blocks grow from the last axis to the first.

    Yields
    ------
    tuple of slice
        One block, in C order.

    Examples
    --------
    >>> [tuple((s.start, s.stop) for s in b) for b in block_slices((3, 4), max_elements=8)]
    [((0, 2), (0, 4)), ((2, 3), (0, 4))]
    """
    shape = tuple(int(s) for s in shape)
    chunks = (1,) * len(shape) if chunks is None else tuple(int(c) for c in chunks)
    block = [max(1, min(c, s)) for c, s in zip(chunks, shape)]
    for ax in reversed(range(len(shape))):
        others = int(np.prod(block)) // block[ax]
        fit = max(1, int(max_elements) // (others * block[ax]))
        block[ax] = min(shape[ax], block[ax] * fit) if shape[ax] else 1
    for start in itertools.product(*(range(0, s, b) for s, b in zip(shape, block))):
        yield tuple(slice(a, min(a + b, s)) for a, b, s in zip(start, block, shape))


def _byte_limit(value: object, name: str) -> int:
    """A byte limit: an int >= 0 (``bool`` is not one), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (bytes of decoded chunks to keep, e.g. 256 * 1024**2; 0 turns "
                         f"the cache off), got {value!r}")
    return int(value)


class ChunkCache:
    """A least-recently-used cache of decoded chunks of lazy arrays, bounded in bytes.

    Random training patches are small, and each one read straight from a Zarr array or a tiled TIFF decodes every
    chunk it touches, even chunks the previous patches just decoded. :meth:`read` reads a region chunk by chunk
    instead: each chunk it covers is taken from the cache or read (one slice aligned to the chunk grid, clipped at
    the array's edge) and kept, and the region is assembled from the chunks. The values are exactly those of the
    direct read ``np.asarray(array[region])``; when the cache is full, the chunks used least recently make room.

    Parameters
    ----------
    max_bytes : int, optional
        Most bytes of decoded chunks held. Default: :data:`PATCH_CACHE_BYTES` (256 MiB), read when the cache is
        made. ``0`` holds nothing: every read goes straight to the array.

    Attributes
    ----------
    max_bytes : int
        The byte limit.
    nbytes : int
        Bytes of the chunks held now (never more than ``max_bytes``).
    hits, misses : int
        Chunk look-ups found in the cache, and chunks read from their array.
    direct : int
        Reads that went straight to the array (see Notes).
    hit_rate : float
        ``hits / (hits + misses)``.

    Raises
    ------
    ValueError
        ``max_bytes`` is not an int >= 0.

    Notes
    -----
    A region is read directly, without the cache, when the array has no chunk shape (:func:`chunk_shape`: a NumPy
    memmap, an uncompressed TIFF), when the chunks it covers together exceed ``max_bytes``, or when it is not a
    tuple of slices of step 1. The cache assumes that the arrays do not change while it is used, and holds a
    reference to every array it has read from (not to its data) until :meth:`clear`, so that no array is mistaken
    for another. Look-ups and updates take a lock, and the chunks are read outside it, so threads may share a cache
    (two threads that miss the same chunk at once both read it). A pickled cache (a worker process) arrives empty.

    Examples
    --------
    >>> cache = ChunkCache(max_bytes=1024)
    >>> arr = LazyArray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64))  # no chunks: read directly
    >>> cache.read(arr, (slice(0, 2), slice(0, 3))).tolist(), cache.direct
    ([[0, 1, 2], [64, 65, 66]], 1)
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = _byte_limit(PATCH_CACHE_BYTES if max_bytes is None else max_bytes, "max_bytes")
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Drop every chunk and array reference, and reset the counts."""
        with self._lock:
            self._chunks: OrderedDict[tuple[int, tuple[int, ...]], np.ndarray] = OrderedDict()
            self._arrays: dict[int, Any] = {}
            self.nbytes = self.hits = self.misses = self.direct = 0

    def __len__(self) -> int:
        """Number of chunks held."""
        return len(self._chunks)

    def __repr__(self) -> str:
        return (f"ChunkCache(max_bytes={self.max_bytes}, nbytes={self.nbytes}, chunks={len(self)}, "
                f"hit_rate={self.hit_rate:.3f})")

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``: the share of chunk look-ups found in the cache (0 before the first)."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    def read(self, array: Any, region: tuple[slice, ...]) -> np.ndarray:
        """Read ``array[region]`` through the cache.

        Parameters
        ----------
        array : array-like
            A lazy array (Zarr, Dask, :class:`LazyArray`, ...): ``shape``, ``dtype``, slicing, and for the cache a
            chunk shape (:func:`chunk_shape`).
        region : tuple of slice
            One slice per axis (step 1), e.g. a training patch.

        Returns
        -------
        numpy.ndarray
            A new array, equal to ``np.asarray(array[region])``.
        """
        if not self.max_bytes or not isinstance(region, tuple) or not all(isinstance(k, slice) for k in region):
            return self._direct(array, region)
        token = id(array)
        geometry = self._arrays.get(token)
        if geometry is None:  # shape and chunk shape once per array (properties that cost more than a look-up)
            chunks = chunk_shape(array)
            geometry = (array, tuple(int(n) for n in array.shape), chunks if chunks and min(chunks) >= 1 else None,
                        np.dtype(array.dtype).itemsize)
            with self._lock:  # the reference keeps the id from being reused while chunks are keyed by it
                geometry = self._arrays.setdefault(token, geometry)
        _, shape, chunks, itemsize = geometry
        if chunks is None or len(region) != len(shape):
            return self._direct(array, region)
        bounds = [k.indices(n) for k, n in zip(region, shape)]  # plain ints: a patch has few axes and chunks
        if any(step != 1 or b <= a for a, b, step in bounds):
            return self._direct(array, region)
        start, stop = [a for a, _, _ in bounds], [b for _, b, _ in bounds]
        first = [a // c for a, c in zip(start, chunks)]
        last = [(b - 1) // c for b, c in zip(stop, chunks)]
        covered = math.prod(min((la + 1) * c, n) - f * c for f, la, c, n in zip(first, last, chunks, shape))
        if covered * itemsize > self.max_bytes:  # the chunks of the region would not fit together
            return self._direct(array, region)
        out = None
        for index in itertools.product(*(range(f, la + 1) for f, la in zip(first, last))):
            lo = [i * c for i, c in zip(index, chunks)]
            hi = [min(a + c, n) for a, c, n in zip(lo, chunks, shape)]
            chunk = self._chunk(array, (token, index), lo, hi)
            if out is None:
                out = np.empty([b - a for a, b in zip(start, stop)], chunk.dtype)
            a = [max(x, y) for x, y in zip(start, lo)]  # the part of the region in this chunk
            b = [min(x, y) for x, y in zip(stop, hi)]
            out[tuple(slice(x - s, y - s) for x, y, s in zip(a, b, start))] = \
                chunk[tuple(slice(x - c0, y - c0) for x, y, c0 in zip(a, b, lo))]
        return out

    def _direct(self, array: Any, region: Any) -> np.ndarray:
        with self._lock:
            self.direct += 1
        return np.asarray(array[region])

    def _chunk(self, array: Any, key: tuple[int, tuple[int, ...]], lo: Sequence[int], hi: Sequence[int]
               ) -> np.ndarray:
        """The chunk ``key`` (``array[lo:hi]``), from the cache or read and kept."""
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                self.hits += 1
                return chunk
            self.misses += 1
        chunk = np.asarray(array[tuple(slice(a, b) for a, b in zip(lo, hi))])
        chunk.flags.writeable = False  # shared by later reads: nobody may change it
        with self._lock:
            if key in self._chunks or chunk.nbytes > self.max_bytes:  # another thread was quicker, or too large
                return chunk
            while self._chunks and self.nbytes + chunk.nbytes > self.max_bytes:
                self.nbytes -= self._chunks.popitem(last=False)[1].nbytes
            self._chunks[key] = chunk
            self.nbytes += chunk.nbytes
        return chunk


class LazyArray:
    """A read-only view of an image on disk (Zarr, OME-Zarr, TIFF) that reads only what is sliced.

    Made by :func:`open_array`; any array-like with ``shape``, ``dtype`` and slicing (a Zarr or Dask array, a
    NumPy memmap) can be wrapped. Slicing with integers and slices (basic indexing, ``...``) returns a NumPy array
    of just that region; :meth:`as_axes` reorders the axes and adds missing ones of length 1 without reading.

    Parameters
    ----------
    base : array-like
        The stored array.
    axes : str, optional
        Its axes (letters S/T, Z, Y, X, C), if known.
    path : str or os.PathLike, optional
        Where it is stored (for messages).
    meta : dict, optional
        What :func:`open_array` found out (format, pixel sizes, ...).

    Attributes
    ----------
    shape, dtype, ndim, size, chunks, axes, path, meta

    Examples
    --------
    >>> view = LazyArray(np.arange(24).reshape(2, 3, 4), 'ZYX').as_axes('YXZC')
    >>> view.shape, view[0, 1:3].tolist()
    ((3, 4, 2, 1), [[[1], [13]], [[2], [14]]])
    """

    def __init__(self, base: Any, axes: str | None = None, path: str | os.PathLike | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.base = base
        self.path = None if path is None else str(path)
        self.meta = dict(meta or {})
        n = len(base.shape)
        self._order: tuple[int | None, ...] = tuple(range(n))  # for each axis of the view: the base axis (None: new)
        self._fixed: dict[int, int] = {}                         # base axes left out: their index
        if axes is not None:
            axes = _check_axes_string(axes, "axes") if axes else axes
            if len(axes) != n:
                raise ValueError(f"{self._where()}axes {axes!r} have {len(axes)} letter(s) but the array has {n} "
                                 f"dimension(s), shape {tuple(base.shape)}: give one letter per dimension")
        self.axes = axes

    def _where(self) -> str:
        return f"{self.path}: " if self.path else ""

    def _view(self, order: Sequence[int | None], fixed: dict[int, int], axes: str | None) -> LazyArray:
        view = object.__new__(LazyArray)
        view.base, view.path, view.meta, view.axes = self.base, self.path, self.meta, axes
        view._order, view._fixed = tuple(order), dict(fixed)
        return view

    @property
    def shape(self) -> tuple[int, ...]:
        base = self.base.shape
        return tuple(1 if b is None else int(base[b]) for b in self._order)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.base.dtype)

    @property
    def ndim(self) -> int:
        return len(self._order)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def chunks(self) -> tuple[int, ...] | None:
        base = chunk_shape(self.base)
        return None if base is None else tuple(1 if b is None else base[b] for b in self._order)

    def __len__(self) -> int:
        if not self._order:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"LazyArray(shape={self.shape}, dtype={self.dtype}, axes={self.axes!r}"
                + (f", path={self.path!r}" if self.path else "") + ")")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Read the whole array (explicitly asked for: ``np.asarray(lazy)``)."""
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def _key(self, key: Any) -> tuple[int | slice, ...]:
        """Normalise a basic-indexing key to one int or slice per axis (ints checked and made non-negative)."""
        key = key if isinstance(key, tuple) else (key,)
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for an array of {self.ndim} dimension(s): {len(key)}")
        key = key + (slice(None),) * (self.ndim - len(key))
        out: list[int | slice] = []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                out.append(k)
            elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                if not -n <= k < n:
                    raise IndexError(f"index {int(k)} is out of bounds for an axis of size {n}")
                out.append(int(k) % n)
            else:
                raise TypeError(f"{self._where()}a LazyArray supports integers, slices and '...' (reading a region); "
                                f"got {type(k).__name__} {k!r}: read the region first, e.g. np.asarray(arr[0:64])[...]")
        return tuple(out)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = self._key(key)
        nb = len(self.base.shape)
        if self._order == tuple(range(nb)):  # a plain view: pass the key through
            return np.asarray(self.base[key])
        base_key: list[int | slice] = [self._fixed.get(b, 0) for b in range(nb)]
        for k, b in zip(key, self._order):
            if b is not None:
                base_key[b] = k
        region = np.asarray(self.base[tuple(base_key)])
        kept_base = [b for b in range(nb) if isinstance(base_key[b], slice)]
        kept = [(k, b) for k, b in zip(key, self._order) if isinstance(k, slice)]
        region = region.transpose([kept_base.index(b) for _, b in kept if b is not None])
        for pos, (k, b) in enumerate(kept):
            if b is None:  # an axis of length 1 that the stored array does not have
                region = np.expand_dims(region, pos)[(slice(None),) * pos + (k,)]
        return region

    def sample(self, index: int) -> LazyArray:
        """The entry ``index`` of the first axis (e.g. one image of an ``(S, ..., C)`` stack), still lazy."""
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise IndexError(f"{self._where()}sample index {index!r} out of range for {len(self)} sample(s)")
        b = self._order[0]
        fixed = dict(self._fixed)
        if b is not None:
            fixed[b] = int(index)
        return self._view(self._order[1:], fixed, None if self.axes is None else self.axes[1:])

    def as_axes(self, axes: str) -> LazyArray:
        """A view with the axes in the order ``axes``, without reading.

        Parameters
        ----------
        axes : str
            Target axes, e.g. ``'ZYXC'`` for a 3D training image or ``'SYXC'`` for a stack of 2D images. Letters
            the array lacks are added with length 1 (e.g. ``C``); letters it has but ``axes`` lacks must have length
            1 and are left out. ``S`` and ``T`` are the same axis (samples).

        Returns
        -------
        LazyArray

        Raises
        ------
        ValueError
            The array's axes are unknown, or an axis of length > 1 would be left out.
        """
        target = _check_axes_string(axes, "axes")
        if self.axes is None:
            raise ValueError(f"{self._where()}the axes of this array are not known: create it with "
                             "LazyArray(array, axes='ZYX') or open_array(path, axes=...) first")
        source = self.axes.replace("T", "S")
        target_s = target.replace("T", "S")
        order: list[int | None] = []
        for a in target_s:
            order.append(self._order[source.index(a)] if a in source else None)
        fixed = dict(self._fixed)
        for i, a in enumerate(source):
            if a not in target_s:
                if self.shape[i] != 1:
                    raise ValueError(f"{self._where()}as_axes({axes!r}) would leave out the axis {self.axes[i]!r} of "
                                     f"length {self.shape[i]} (axes {self.axes!r}, shape {self.shape}): keep it in "
                                     "the target axes, or take one entry of it first")
                if self._order[i] is not None:
                    fixed[self._order[i]] = 0
        return self._view(order, fixed, target)


def _axes_from_names(names: Sequence[Any], path: Path, what: str) -> str:
    """n2v_tf letters from NGFF axes (strings or dicts with ``name``/``type``) or dimension names."""
    letters = []
    for ax in names:
        name = (ax.get("name") if isinstance(ax, dict) else ax) or ""
        kind = ax.get("type") if isinstance(ax, dict) else None
        letter = _NGFF_NAMES.get(str(name).lower()) or _NGFF_TYPES.get(str(kind).lower())
        if letter is None:
            raise ValueError(f"open_array: '{path}' has the {what} {list(names)}, whose axis {name!r} n2v_tf does "
                             "not know (it knows t, c, z, y, x): pass axes=... explicitly (letters T, C, Z, Y, X)")
        letters.append(letter)
    axes = "".join(letters)
    try:
        return _check_axes_string(axes, "axes")
    except ValueError:
        raise ValueError(f"open_array: cannot make sense of the {what} {list(names)} of '{path}' (as n2v_tf axes "
                         f"{axes!r}); pass axes=... explicitly") from None


def _resolve_axes(stored: str | None, given: str | None, ndim: int, shape: tuple[int, ...], path: Path,
                  strict: bool) -> str:
    """The array's axes: the stored ones, checked against the given ones (``strict``: they must agree)."""
    if given is not None:
        if len(given) != ndim:
            raise ValueError(f"open_array: axes={given!r} has {len(given)} letter(s), but '{path}' has {ndim} "
                             f"dimension(s), shape {shape}" + (f" (stored axes {stored!r})" if stored else ""))
        if strict and stored is not None and given.replace("S", "T") != stored.replace("S", "T"):
            raise ValueError(f"open_array: axes={given!r} do not match the axes {stored!r} that '{path}' stores (shape "
                             f"{shape}); leave axes out to use the stored ones")
        return given
    if stored is None:
        raise ValueError(f"open_array: cannot determine the axes of '{path}' (shape {shape}): it stores none (no "
                         "NGFF 'multiscales' axes, Zarr dimension names or '_ARRAY_DIMENSIONS'); pass them, e.g. "
                         f"open_array(path, axes={guess_axes(shape) if 2 <= ndim <= 5 else 'ZYX'!r})")
    return stored


def _open_tiff(path: Path, axes: str | None, level: int) -> tuple[Any, str, dict[str, Any]]:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            raw, shape, n_levels = series.axes, tuple(series.shape), len(series.levels)
            contiguous = series.dataoffset is not None
    except FileNotFoundError:
        raise
    except Exception as e:  # corrupt or not a TIFF: say which file
        raise ValueError(f"open_array: cannot read '{path}' as a TIFF image: {e}") from e
    if not 0 <= level < n_levels:
        raise ValueError(f"open_array: level={level} but '{path}' has {n_levels} resolution level(s) (0 to "
                         f"{n_levels - 1})")
    base = None
    if level == 0 and contiguous:  # uncompressed and contiguous: a memory map is the fastest lazy reader
        try:
            base = tifffile.memmap(path, series=0, mode="r")
        except ValueError:
            base = None
    if base is None:
        zarr = require("zarr")
        store = tifffile.imread(path, aszarr=True, series=0, level=level)
        base = zarr.open(store, mode="r")
    stored, note = (None, None) if len(raw) != len(shape) else _tiff_axes(raw, shape, path)
    if axes is None and note:
        logger.warning("%s; if this is wrong, pass axes=...", note)
    if tuple(base.shape) != shape and level == 0:
        stored = None  # tifffile squeezed differently: the stored letters do not apply
    meta = {"format": "tiff", "levels": n_levels, "tiff": read_tiff_metadata(path)}
    return base, _resolve_axes(stored, axes, len(base.shape), tuple(base.shape), path, strict=False), meta


def _ngff_attrs(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The NGFF image metadata of a group's attributes (0.5 nests them under ``'ome'``), or None."""
    ome = attrs.get("ome", attrs) if isinstance(attrs.get("ome"), dict) else attrs
    ms = ome.get("multiscales")
    return ome if isinstance(ms, list) and ms else None


def _open_ngff(group: Any, ome: dict[str, Any], path: Path, axes: str | None, level: int
               ) -> tuple[Any, str, dict[str, Any]]:
    ms = ome["multiscales"][0]
    datasets = ms.get("datasets") or []
    if not 0 <= level < len(datasets):
        raise ValueError(f"open_array: level={level} but the OME-Zarr '{path}' has {len(datasets)} resolution "
                         f"level(s) (0 to {len(datasets) - 1})")
    ds = datasets[level]
    base = group[ds["path"]]
    ndim = len(base.shape)
    names = ms.get("axes")
    if names is None:  # NGFF 0.1/0.2: always 5D tczyx
        names = list("tczyx") if ndim == 5 else None
    stored = None if names is None else _axes_from_names(names, path, "NGFF axes")
    if stored is not None and len(stored) != ndim:
        raise ValueError(f"open_array: the OME-Zarr '{path}' declares the axes {stored!r} but its level {level} "
                         f"('{ds['path']}') has {ndim} dimension(s), shape {tuple(base.shape)}: the metadata is "
                         "inconsistent; pass axes=... to override")
    final = _resolve_axes(stored, axes, ndim, tuple(base.shape), path, strict=stored is not None and len(stored) == ndim)
    scale = np.ones(ndim)
    for transforms in (ds.get("coordinateTransformations") or [], ms.get("coordinateTransformations") or []):
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", ())) == ndim:
                scale = scale * np.asarray(t["scale"], np.float64)
    units = {a: ax.get("unit") for a, ax in zip(final, names or []) if isinstance(ax, dict) and ax.get("unit")}
    meta = {"format": "ome-zarr", "level": level, "levels": len(datasets), "dataset": ds["path"],
            "version": ome.get("version", ms.get("version")),
            "pixel_size": {a: float(s) for a, s in zip(final, scale) if a != "C"}, "units": units}
    return base, final, meta


def _open_zarr(path: Path, axes: str | None, level: int) -> tuple[Any, str, dict[str, Any]]:
    zarr = require("zarr")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # not a Zarr store
        raise ValueError(f"open_array: cannot open '{path}' as a Zarr array or group: {e}") from e
    if not hasattr(node, "shape"):  # a group
        ome = _ngff_attrs(dict(node.attrs))
        if ome is None and "0" in list(node.group_keys()):  # bioformats2raw layout: images in 0/, 1/, ...
            sub = node["0"]
            if _ngff_attrs(dict(sub.attrs)) is not None:
                node, ome = sub, _ngff_attrs(dict(sub.attrs))
        if ome is not None:
            return _open_ngff(node, ome, path, axes, level)
        arrays = sorted(node.array_keys())
        if len(arrays) != 1:
            raise ValueError(f"open_array: the Zarr group '{path}' holds {len(arrays)} arrays "
                             f"({', '.join(arrays[:5]) or 'none'}) and no OME-Zarr 'multiscales' metadata: open one "
                             f"array, e.g. open_array('{path / (arrays[0] if arrays else 'name')}')")
        node = node[arrays[0]]
    elif level != 0:
        raise ValueError(f"open_array: level={level} but '{path}' is a single Zarr array (one resolution level); "
                         "use level=0")
    else:
        parent = path.parent
        if (parent / "zarr.json").exists() or (parent / ".zattrs").exists():  # a level of an OME-Zarr image?
            try:
                group = zarr.open_group(str(parent), mode="r")
                ome = _ngff_attrs(dict(group.attrs))
            except Exception:  # noqa: BLE001 - the parent is just a folder
                ome = None
            paths = [d.get("path") for d in (ome or {}).get("multiscales", [{}])[0].get("datasets", [])]
            if ome is not None and path.name in paths:
                return _open_ngff(group, ome, parent, axes, paths.index(path.name))
    attrs = dict(node.attrs)
    names = getattr(getattr(node, "metadata", None), "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
    if not names and isinstance(attrs.get("axes"), (str, list)):
        names = list(attrs["axes"])
    stored = _axes_from_names(list(names), path, "dimension names") if names and all(names) else None
    final = _resolve_axes(stored, axes, len(node.shape), tuple(node.shape), path, strict=stored is not None)
    return node, final, {"format": "zarr", "levels": 1}


def open_array(path: str | os.PathLike, axes: str | None = None, level: int = 0
               ) -> tuple[LazyArray, str, dict[str, Any]]:
    """Open an image without reading it: a TIFF, a Zarr array or group, or an OME-Zarr (NGFF) image.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` file (also OME-TIFF, BigTIFF, pyramidal), a ``.npy`` file, a Zarr array or group
        (``.zarr``), or an OME-Zarr image (``.ome.zarr``, or any group with NGFF ``multiscales`` metadata;
        also one of its resolution levels, e.g. ``image.ome.zarr/0``).
    axes : str, optional
        The axes of the stored array (letters S/T, Z, Y, X, C). Default: from the file (NGFF ``axes``, Zarr
        dimension names or xarray's ``_ARRAY_DIMENSIONS``, TIFF/ImageJ/OME axes). Given for an OME-Zarr or a Zarr
        array with dimension names, they must match the stored ones; for a TIFF they replace tifffile's letters.
    level : int
        Resolution level of a multiscale image (0: full resolution).

    Returns
    -------
    array : LazyArray
        ``shape``, ``dtype``, ``chunks``; slicing reads only the requested region and returns a NumPy array;
        ``array.as_axes('ZYXC')`` is the same data in another axis order (e.g. for ``N2V.train``), still lazy.
    axes : str
        The axes of ``array`` (as stored), e.g. ``'CZYX'``.
    meta : dict
        ``path``, ``format`` (``'tiff'``, ``'zarr'``, ``'ome-zarr'``, ``'npy'``), ``level``, ``levels`` (number of
        resolution levels), ``shape``, ``dtype``, ``chunks``; for OME-Zarr ``pixel_size`` (per axis letter, from the
        ``coordinateTransformations`` scales of the dataset and the multiscale), ``units`` and ``version``; for a
        TIFF ``tiff`` (:func:`read_tiff_metadata`, for :func:`write_tiff`).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unknown format, an unreadable file, a level that does not exist, axes that cannot be determined (the
        file stores none and ``axes`` is not given) or that do not match the file; the message names the path.
    ImportError
        ``zarr`` is needed (Zarr, OME-Zarr, compressed TIFF) but not installed: ``pip install "n2v_tf[large]"``.

    Notes
    -----
    An uncompressed, contiguous TIFF is memory-mapped (``tifffile.memmap``); other TIFFs are read through
    ``tifffile.imread(path, aszarr=True)`` and ``zarr.open``, chunk (tile or strip) by chunk. OME-Zarr metadata is
    read from the group attributes (NGFF 0.1 to 0.5) with plain ``zarr``; ``ome-zarr`` is not needed to read.

    Examples
    --------
    >>> arr, axes, meta = open_array('big.ome.zarr')           # doctest: +SKIP
    >>> axes, arr.shape, meta['pixel_size']                    # doctest: +SKIP
    ('CZYX', (1, 400, 8192, 8192), {'Z': 2.0, 'Y': 0.3, 'X': 0.3})
    >>> model.train([arr.as_axes('ZYXC')], X_val)              # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"open_array: '{p}' does not exist (no such file or folder)")
    given = None if axes is None else _check_axes_string(axes, "axes")
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool) or level < 0:
        raise ValueError(f"open_array: level must be an int >= 0 (0: full resolution), got {level!r}")
    name = p.name.lower()
    if name.endswith((".tif", ".tiff")):
        base, found, meta = _open_tiff(p, given, int(level))
    elif name.endswith(".npy"):
        if level != 0:
            raise ValueError(f"open_array: level={level} but '{p}' has one resolution level; use level=0")
        base = np.load(p, mmap_mode="r", allow_pickle=False)
        found, meta = _resolve_axes(None, given, base.ndim, base.shape, p, strict=False), {"format": "npy", "levels": 1}
    elif p.is_dir() or name.endswith(".zarr"):
        base, found, meta = _open_zarr(p, given, int(level))
    else:
        raise ValueError(f"open_array: '{p}' is neither a TIFF (.tif, .tiff), a .npy file nor a Zarr/OME-Zarr "
                         "folder (.zarr, .ome.zarr); other formats must be read whole with read_image")
    meta.setdefault("level", int(level))
    meta.update(path=str(p), axes=found, shape=tuple(int(s) for s in base.shape),
                dtype=str(np.dtype(base.dtype)), chunks=chunk_shape(base))
    return LazyArray(base, found, path=p, meta=meta), found, meta
