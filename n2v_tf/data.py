"""Training data for Noise2Void: a masking ``keras.utils.PyDataset`` and n2v's data generator.

:class:`N2VSequence` draws random patches of ``patch_shape`` from either an n2v patch array
``(S, *spatial, C)`` or a list of images of different sizes ``[(*spatial, C), ...]``, normalises
them, and masks them with :func:`n2v_tf.masking.mask_batch`. Every batch is a fresh pair of arrays,
computed from a generator seeded by ``(seed, epoch, index)``, so batches are reproducible and the
sequence is safe with ``workers > 1``. Large data never has to be cut into patches in memory first.
"""
from __future__ import annotations

import glob
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tifffile

from .masking import mask_batch

__all__ = [
    "IMAGE_EXTENSIONS",
    "N2VSequence",
    "N2V_DataGenerator",
    "as_image_list",
    "check_images",
    "guess_axes",
    "load_images",
    "read_image",
    "validation_data",
]

logger = logging.getLogger("n2v_tf")

#: File name endings that :func:`load_images` reads from a folder (case-insensitive).
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def as_image_list(X: np.ndarray | Sequence[np.ndarray], n_dim: int, n_channel: int, name: str = "X"
                  ) -> list[np.ndarray]:
    """Check training data and return it as a list of ``(*spatial, C)`` arrays (views, no copies).

    Parameters
    ----------
    X : numpy.ndarray or list of numpy.ndarray
        An n2v array ``(S, *spatial, C)`` or a list of ``(*spatial, C)`` images.
    n_dim, n_channel : int
        Expected number of spatial axes and channels.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of numpy.ndarray

    Raises
    ------
    ValueError
        Empty data, wrong rank, wrong channel count, non-finite values.
    """
    if isinstance(X, np.ndarray):
        if X.ndim != n_dim + 2:
            raise ValueError(f"{name}: expected an array with {n_dim + 2} axes ({'SZYXC' if n_dim == 3 else 'SYXC'}), "
                             f"got shape {X.shape}")
        images = list(X)
    else:
        images = [np.asarray(im) for im in X]
    if len(images) == 0:
        raise ValueError(f"{name}: no images given (empty list or array)")
    for i, im in enumerate(images):
        if im.ndim != n_dim + 1:
            raise ValueError(f"{name}[{i}]: expected {n_dim} spatial axes and a channel axis "
                             f"({'ZYXC' if n_dim == 3 else 'YXC'}), got shape {im.shape}")
        if im.shape[-1] != n_channel:
            raise ValueError(f"{name}[{i}]: the model has {n_channel} channel(s), the image has {im.shape[-1]} "
                             f"(shape {im.shape})")
        if not np.issubdtype(im.dtype, np.number):
            raise ValueError(f"{name}[{i}]: expected numeric data, got dtype {im.dtype}")
        if not np.isfinite(im).all():
            raise ValueError(f"{name}[{i}]: contains NaN or Inf values ({int((~np.isfinite(im)).sum())} pixels); "
                             "remove or replace them before training")
    return images


class N2VSequence(keras.utils.PyDataset):
    """Batches of masked random patches for N2V training (a ``keras.utils.PyDataset``).

    Parameters
    ----------
    X : numpy.ndarray or list of numpy.ndarray
        Patch array ``(S, *spatial, C)`` or list of images ``(*spatial, C)`` of any size
        (each at least ``patch_shape``), raw or normalised.
    patch_shape : sequence of int
        Shape of the training patches (2 or 3 entries).
    batch_size : int
        Patches per batch.
    perc_pix : float
        Percentage of blind-spot pixels per patch.
    manipulator : str
        Replacement strategy (see :data:`n2v_tf.masking.MANIPULATORS`).
    radius : int
        Neighbourhood radius of the replacement.
    struct_mask : array-like, optional
        structN2V mask.
    steps_per_epoch : int, optional
        Length of the sequence; default: one pass over the data's pixels.
    means, stds : sequence of float, optional
        Per-channel normalisation applied to each patch (default none).
    augment : bool
        Random 90-degree rotations and flips in the YX plane.
    seed : int, optional
        Base seed; ``None`` draws one.
    **kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``keras.utils.PyDataset``.

    Notes
    -----
    ``__getitem__(i)`` returns ``(masked_input, concat([target, mask], -1))`` as new float32 arrays.
    Images of a list are drawn with probability proportional to their number of patch positions.
    """

    def __init__(self, X: np.ndarray | Sequence[np.ndarray], patch_shape: Sequence[int], batch_size: int = 16,
                 perc_pix: float = 0.198, manipulator: str = "uniform_withCP", radius: int = 5,
                 struct_mask: np.ndarray | None = None, steps_per_epoch: int | None = None,
                 means: Sequence[float] | None = None, stds: Sequence[float] | None = None,
                 augment: bool = False, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch_shape = tuple(int(p) for p in patch_shape)
        n_dim = len(self.patch_shape)
        n_channel = (X.shape[-1] if isinstance(X, np.ndarray) else np.shape(X[0])[-1]) if len(X) else 1
        self.images = as_image_list(X, n_dim, n_channel)
        for i, im in enumerate(self.images):
            if any(s < p for s, p in zip(im.shape[:-1], self.patch_shape)):
                raise ValueError(f"X[{i}] has spatial shape {im.shape[:-1]}, smaller than n2v_patch_shape "
                                 f"{self.patch_shape}: use a smaller patch shape or larger images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.perc_pix, self.manipulator, self.radius = perc_pix, manipulator, radius
        self.struct_mask = None if struct_mask is None else np.array(struct_mask, copy=True)
        self.augment = augment
        self.means = np.asarray(means if means is not None else [0.0] * n_channel, np.float32)
        self.stds = np.asarray(stds if stds is not None else [1.0] * n_channel, np.float32)
        positions = np.array([np.prod([s - p + 1 for s, p in zip(im.shape[:-1], self.patch_shape)])
                              for im in self.images], dtype=np.float64)
        self._p = positions / positions.sum()
        if steps_per_epoch is None:
            n_pix = sum(int(np.prod(im.shape[:-1])) for im in self.images)
            steps_per_epoch = max(1, int(np.ceil(n_pix / (self.batch_size * np.prod(self.patch_shape)))))
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def crop_batch(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one batch of normalised random patches ``(batch_size, *patch_shape, C)``."""
        idx = rng.choice(len(self.images), size=self.batch_size, p=self._p)
        batch = np.empty((self.batch_size,) + self.patch_shape + (self.images[0].shape[-1],), np.float32)
        for b, i in enumerate(idx):  # loop over the batch, not over pixels
            im = self.images[i]
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(im.shape[:-1], self.patch_shape)]
            patch = im[tuple(slice(a, a + p) for a, p in zip(start, self.patch_shape))]
            if self.augment:
                patch = np.rot90(patch, int(rng.integers(4)), axes=(-3, -2)) if patch.shape[-3] == patch.shape[-2] \
                    else patch
                if rng.random() < 0.5:
                    patch = patch[..., ::-1, :]
            batch[b] = patch
        batch -= self.means
        batch /= self.stds
        return batch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a sequence of length {len(self)}")
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        return mask_batch(self.crop_batch(rng), self.perc_pix, self.manipulator, self.radius, rng, self.struct_mask)

    def on_epoch_end(self) -> None:
        self.epoch += 1


def validation_data(X_val: np.ndarray | Sequence[np.ndarray], patch_shape: Sequence[int], perc_pix: float,
                    manipulator: str = "uniform_withCP", radius: int = 5, struct_mask: np.ndarray | None = None,
                    means: Sequence[float] | None = None, stds: Sequence[float] | None = None, div_by: int = 1,
                    seed: int = 0, max_patches: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mask validation data once, with a fixed seed.

    Parameters
    ----------
    X_val : numpy.ndarray or list of numpy.ndarray
        An n2v array ``(S, *spatial, C)`` (used whole, spatial sizes divisible by ``div_by``) or a list
        of images, which are cut into non-overlapping patches of ``patch_shape``.
    patch_shape : sequence of int
        Training patch shape.
    perc_pix, manipulator, radius, struct_mask
        Masking, as for training.
    means, stds : sequence of float, optional
        Per-channel normalisation.
    div_by : int
        Required divisor of the spatial sizes (``2**unet_n_depth``).
    seed : int
        Seed of the masking.
    max_patches : int
        At most this many patches are kept from a list (evenly spaced).

    Returns
    -------
    tuple of numpy.ndarray
        ``(X_masked, Y)`` as for training.
    """
    n_dim = len(patch_shape)
    n_channel = X_val.shape[-1] if isinstance(X_val, np.ndarray) else np.shape(X_val[0])[-1]
    images = as_image_list(X_val, n_dim, n_channel, name="validation_X")
    if isinstance(X_val, np.ndarray):
        bad = [s for s in X_val.shape[1:-1] if s % div_by]
        if bad:
            raise ValueError(f"validation_X: spatial shape {X_val.shape[1:-1]} must be divisible by "
                             f"2**unet_n_depth = {div_by}")
        X = np.asarray(X_val, np.float32)
    else:
        X = np.concatenate([_grid_patches(im, patch_shape) for im in images], axis=0)
        if len(X) == 0:
            raise ValueError(f"validation_X: every image is smaller than n2v_patch_shape {tuple(patch_shape)}")
        if len(X) > max_patches:
            X = X[np.linspace(0, len(X) - 1, max_patches).astype(int)]
    mean = np.asarray(means if means is not None else [0.0] * n_channel, np.float32)
    std = np.asarray(stds if stds is not None else [1.0] * n_channel, np.float32)
    return mask_batch((X - mean) / std, perc_pix, manipulator, radius, np.random.default_rng(seed), struct_mask)


def _grid_patches(img: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Non-overlapping patches of ``shape`` on a regular grid of ``img`` (``(*spatial, C)``)."""
    n = [s // p for s, p in zip(img.shape[:-1], shape)]
    if 0 in n:
        return np.empty((0,) + tuple(shape) + img.shape[-1:], img.dtype)
    crop = img[tuple(slice(0, k * p) for k, p in zip(n, shape))]
    split = []
    for k, p in zip(n, shape):
        split += [k, p]
    blocks = crop.reshape(split + [img.shape[-1]])
    order = list(range(0, 2 * len(n), 2)) + list(range(1, 2 * len(n), 2)) + [2 * len(n)]
    return blocks.transpose(order).reshape((-1,) + tuple(shape) + img.shape[-1:])


def read_image(path: str) -> np.ndarray:
    """Read a TIFF (``tifffile``) or PNG/JPEG (Pillow) image as a NumPy array.

    Parameters
    ----------
    path : str
        File path.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ValueError
        If the file cannot be read as an image.
    """
    ext = os.path.splitext(str(path))[1].lower()
    try:
        if ext in (".tif", ".tiff"):
            return tifffile.imread(path)
        from PIL import Image
        with Image.open(path) as im:
            return np.asarray(im)
    except FileNotFoundError:
        raise
    except Exception as e:  # unreadable or corrupt file: say which one
        raise ValueError(f"cannot read image file {path!r}: {e}") from e


class N2V_DataGenerator:
    """Load images and cut them into patches (the data helper of n2v 0.3.x, same methods).

    Examples
    --------
    >>> gen = N2V_DataGenerator()
    >>> import numpy as np
    >>> imgs = [np.zeros((1, 128, 128, 1), np.float32)]
    >>> gen.generate_patches_from_list(imgs, shape=(64, 64), augment=False).shape
    (4, 64, 64, 1)
    """

    def load_imgs(self, files: Sequence[str], dims: str = "YX") -> list[np.ndarray]:
        """Load images and bring them to ``SYXC`` / ``SZYXC``.

        Parameters
        ----------
        files : list of str
            Image files (TIFF, PNG).
        dims : str
            Axes of the files, e.g. ``'YX'``, ``'TYX'``, ``'ZYX'``, ``'YXC'``, ``'SZYXC'``.
            ``T`` and ``S`` become the sample axis.

        Returns
        -------
        list of numpy.ndarray
            One array per file, with axes ``SYXC`` (2D) or ``SZYXC`` (3D).
        """
        dims = dims.upper()
        if not set(dims) <= set("STZYXC") or len(set(dims)) != len(dims) or not {"Y", "X"} <= set(dims):
            raise ValueError(f"dims must contain Y and X and only the letters S, T, Z, Y, X, C once each, got {dims!r}")
        if "S" in dims and "T" in dims:
            raise ValueError(f"dims may contain S or T (both mean 'sample'), not both: {dims!r}")
        if len(files) == 0:
            raise ValueError("load_imgs: no files given")
        out = []
        target = ("S" + ("Z" if "Z" in dims else "") + "YXC")
        for f in files:
            img = read_image(f)
            if img.ndim != len(dims):
                raise ValueError(f"{f}: image has {img.ndim} axes (shape {img.shape}) but dims={dims!r}")
            axes = dims.replace("T", "S")
            for a in "SC":
                if a not in axes:
                    img, axes = img[..., np.newaxis], axes + a
            img = np.transpose(img, [axes.index(a) for a in target])
            out.append(img.astype(np.float32, copy=False))
        return out

    def load_imgs_from_directory(self, directory: str, filter: str = "*.tif", dims: str = "YX") -> list[np.ndarray]:
        """Load all images in ``directory`` matching ``filter`` (sorted), see :meth:`load_imgs`."""
        if not os.path.isdir(directory):
            raise ValueError(f"directory {directory!r} does not exist")
        files = sorted(glob.glob(os.path.join(directory, filter)))
        if not files:
            raise ValueError(f"no files matching {filter!r} in {directory!r}")
        return self.load_imgs(files, dims=dims)

    def generate_patches_from_list(self, data: Sequence[np.ndarray], num_patches_per_img: int | None = None,
                                   shape: Sequence[int] = (256, 256), augment: bool = True,
                                   shuffle: bool = False, seed: int | None = None) -> np.ndarray:
        """Cut patches from every ``SYXC``/``SZYXC`` array of ``data``, see :meth:`generate_patches`."""
        patches = [self.generate_patches(img, num_patches_per_img, shape, augment, seed=seed) for img in data]
        patches = np.concatenate(patches, axis=0)
        if shuffle:
            np.random.default_rng(seed).shuffle(patches, axis=0)
        return patches

    def generate_patches(self, data: np.ndarray, num_patches: int | None = None, shape: Sequence[int] = (256, 256),
                         augment: bool = True, seed: int | None = None) -> np.ndarray:
        """Cut patches of ``shape`` from an ``SYXC`` / ``SZYXC`` array.

        Parameters
        ----------
        data : numpy.ndarray
            Images with axes ``SYXC`` or ``SZYXC``.
        num_patches : int, optional
            Random patches per image; ``None`` cuts a regular non-overlapping grid.
        shape : sequence of int
            Patch shape (2 or 3 entries).
        augment : bool
            Add the 8 rotations/flips of the YX plane (only for square YX patches).
        seed : int, optional
            Seed of the random patch positions.

        Returns
        -------
        numpy.ndarray
            ``(N, *shape, C)``.
        """
        shape = tuple(int(s) for s in shape)
        if data.ndim != len(shape) + 2:
            raise ValueError(f"data has shape {data.shape}, expected {len(shape) + 2} axes for patches of {shape}")
        if any(s < p for s, p in zip(data.shape[1:-1], shape)):
            raise ValueError(f"patch shape {shape} is larger than the images {data.shape[1:-1]}")
        if num_patches is None:
            patches = np.concatenate([_grid_patches(img, shape) for img in data], axis=0)
        else:
            rng = np.random.default_rng(seed)
            patches = []
            for img in data:
                for _ in range(num_patches):
                    start = [int(rng.integers(0, s - p + 1)) for s, p in zip(img.shape[:-1], shape)]
                    patches.append(img[tuple(slice(a, a + p) for a, p in zip(start, shape))])
            patches = np.stack(patches)
        if augment:
            if shape[-1] != shape[-2]:
                warnings.warn(f"augment=True needs square YX patches, got {shape}: no augmentation", stacklevel=2)
            else:
                rots = [np.rot90(patches, k, axes=(-3, -2)) for k in range(4)]
                patches = np.concatenate(rots + [r[..., ::-1, :] for r in rots], axis=0)
        return patches


# --------------------------------------------------------------------------- loading and checking user data

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


def _image_files(source: object, pattern: str | None) -> list[Path]:
    """Expand a folder, a glob pattern, a file, or a list of them into image files (sorted per item)."""
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
                raise ValueError(f"load_images: no image files in folder '{p}' {what}; check the path, or copy "
                                 "the images there")
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
    files = _image_files(source, pattern)
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
    a0, n0 = arrays[0], names[0]
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
            raise ValueError(f"check_images: the images have different channel counts ({n0}: {n_ch[0]}, {n}: {c}); "
                             "give images with the same channels")
    for a, n in zip(arrays[1:], names[1:]):
        if a.dtype != a0.dtype:
            raise ValueError(f"check_images: the images have different dtypes ({a0.dtype} in {n0}, {a.dtype} in {n}): "
                             "convert them to one type, e.g. images = [im.astype('float32') for im in images]")
    for a, n in zip(arrays, names):
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError(f"check_images: {n} contains {int((~np.isfinite(a)).sum())} NaN or infinite value(s): "
                             "replace them (e.g. np.nan_to_num(img, nan=np.nanmedian(img))) or leave the image out")
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
    for a, n, s in zip(arrays, names, sizes):
        small = [f"{size} px along {axes[i]}" for size, i in zip(s, spatial) if size < TINY_SIZE[axes[i]]]
        if small:
            warnings.warn(f"{n} is tiny ({', '.join(small)}): N2V learns from many pixels, and the training patch "
                          "must fit in the image; use larger images if you have them", stacklevel=2)
        if a.size * 4 > HUGE_BYTES:
            warnings.warn(f"{n} is huge ({a.size * 4 / 1024 ** 3:.1f} GiB in float32, shape {a.shape}): predict it "
                          "with n_tiles (e.g. n_tiles=(4, 4)) to fit in memory", stacklevel=2)
        if a.size and a.min() == a.max():
            warnings.warn(f"{n} has a single value ({a.flat[0]}) everywhere: is it a blank frame? Leave it out",
                          stacklevel=2)
    shapes = sorted({a.shape for a in arrays})
    shape_txt = (f"shape {_shape_str(shapes[0])}" if len(shapes) == 1 else
                 f"{len(shapes)} different shapes ({', '.join(_shape_str(s) for s in shapes[:3])}"
                 f"{', ...' if len(shapes) > 3 else ''})")
    lo = min(float(a.min()) for a in arrays if a.size) if any(a.size for a in arrays) else float("nan")
    hi = max(float(a.max()) for a in arrays if a.size) if any(a.size for a in arrays) else float("nan")
    channels_txt = f", {n_ch[0]} channel(s)" if "C" in axes else ""
    return (f"{len(arrays)} image(s), axes {axes}{how}, {shape_txt}{channels_txt}, dtype {a0.dtype}, "
            f"values {lo:.6g} to {hi:.6g}")
