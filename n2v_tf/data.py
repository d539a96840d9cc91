"""Training data for Noise2Void: a masking ``keras.utils.PyDataset`` and n2v's data generator.

:class:`N2VSequence` draws random patches of ``patch_shape`` from either an n2v patch array
``(S, *spatial, C)`` or a list of images of different sizes ``[(*spatial, C), ...]``, normalises
them, and masks them with :func:`n2v_tf.masking.mask_batch`. Every batch is a fresh pair of arrays,
computed from a generator seeded by ``(seed, epoch, index)``, so batches are reproducible and the
sequence is safe with ``workers > 1``. Large data never has to be cut into patches in memory first.
"""
from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence

import keras
import numpy as np

from .config import _shape, normalize
from .io import (
    IMAGE_EXTENSIONS,
    ChunkCache,
    LazyArray,
    _byte_limit,
    check_images,
    guess_axes,
    is_lazy,
    load_images,
    read_image,
)
from .masking import mask_batch

__all__ = [
    "N2VSequence",
    "N2V_DataGenerator",
    "as_image_list",
    "validation_data",
]
# File reading lives in n2v_tf.io; these names stay importable from here for code written before the move.
__all__ += ["IMAGE_EXTENSIONS", "check_images", "guess_axes", "load_images", "read_image"]


def _is_stack(X: object) -> bool:
    """An n2v array ``(S, *spatial, C)``, in memory or lazy (not a list of images)."""
    return isinstance(X, np.ndarray) or is_lazy(X)


def _n_channel(X: object) -> int:
    """Channel count of an n2v array or of the first image of a list, without reading any pixel."""
    return int(X.shape[-1] if _is_stack(X) else _shape(X[0])[-1])


def as_image_list(X: np.ndarray | Sequence[np.ndarray], n_dim: int, n_channel: int, name: str = "X"
                  ) -> list[np.ndarray]:
    """Check training data and return it as a list of ``(*spatial, C)`` arrays (views, no copies).

    Parameters
    ----------
    X : numpy.ndarray or list of numpy.ndarray or lazy arrays
        An n2v array ``(S, *spatial, C)`` or a list of ``(*spatial, C)`` images. Lazy arrays (Zarr, Dask,
        :class:`n2v_tf.io.LazyArray`, anything with ``shape``, ``dtype`` and slicing) stay lazy: a lazy n2v array
        becomes a list of lazy samples.
    n_dim, n_channel : int
        Expected number of spatial axes and channels.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of numpy.ndarray or lazy arrays

    Raises
    ------
    ValueError
        Empty data, wrong rank, wrong channel count, non-numeric dtype, non-finite values (in-memory images).

    Notes
    -----
    Lazy images are checked by shape and dtype only; reading one whole to look for NaN would defeat the purpose.
    Their NaN/Inf values are found where they are read: by :class:`n2v_tf.N2VConfig` (the statistics), by each
    training patch (:meth:`N2VSequence.crop_batch`) and by :func:`validation_data`, each with an error naming the
    image.
    """
    if _is_stack(X):
        if len(X.shape) != n_dim + 2:
            raise ValueError(f"{name}: expected an array with {n_dim + 2} axes ({'SZYXC' if n_dim == 3 else 'SYXC'}), "
                             f"got shape {tuple(X.shape)}")
        if isinstance(X, np.ndarray):
            images = list(X)
        else:
            stack = X if isinstance(X, LazyArray) else LazyArray(X)
            images = [stack.sample(i) for i in range(int(X.shape[0]))]
    else:
        images = [im if is_lazy(im) else np.asarray(im) for im in X]
    if len(images) == 0:
        raise ValueError(f"{name}: no images given (empty list or array)")
    for i, im in enumerate(images):
        shape = tuple(im.shape)
        if len(shape) != n_dim + 1:
            raise ValueError(f"{name}[{i}]: expected {n_dim} spatial axes and a channel axis "
                             f"({'ZYXC' if n_dim == 3 else 'YXC'}), got shape {shape}")
        if shape[-1] != n_channel:
            raise ValueError(f"{name}[{i}]: the model has {n_channel} channel(s), the image has {shape[-1]} "
                             f"(shape {shape})")
        if not np.issubdtype(np.dtype(im.dtype), np.number):
            raise ValueError(f"{name}[{i}]: expected numeric data, got dtype {im.dtype}")
        if is_lazy(im):
            continue
        if not np.isfinite(im).all():
            raise ValueError(f"{name}[{i}]: contains NaN or Inf values ({int((~np.isfinite(im)).sum())} pixels); "
                             "remove or replace them before training")
    return images


class N2VSequence(keras.utils.PyDataset):
    """Batches of masked random patches for N2V training (a ``keras.utils.PyDataset``).

    Parameters
    ----------
    X : numpy.ndarray or list of numpy.ndarray or lazy arrays
        Patch array ``(S, *spatial, C)`` or list of images ``(*spatial, C)`` of any size
        (each at least ``patch_shape``), raw or normalised. Lazy arrays (Zarr, Dask,
        :func:`n2v_tf.io.open_array`) are never read whole: each batch reads just the chunks of its patches,
        through a cache (``cache_bytes``).
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
        Draw each patch in a random one of the 8 orientations of its YX plane (90-degree rotations, flips); a
        non-square YX patch in one of the 4 that keep its shape (rotation by 0 or 180 degrees, flip along X).
    seed : int, optional
        Base seed; ``None`` draws one from NumPy's global random state (``np.random``), which
        ``keras.utils.set_random_seed`` and ``np.random.seed`` set, so after either the batches are reproducible.
    cache_bytes : int, optional
        Byte limit of the cache of decoded chunks shared by the patch reads from lazy images
        (:class:`n2v_tf.io.ChunkCache`, attribute ``cache``); default :data:`n2v_tf.io.PATCH_CACHE_BYTES`
        (256 MiB), ``0`` turns it off (each patch is then one slice of its image). Unused for in-memory data.
    struct_replacement : {'patch', 'local'}
        What the pixels hidden by ``struct_mask`` get (:func:`n2v_tf.masking.mask_batch`).
    **kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``keras.utils.PyDataset``.

    Notes
    -----
    ``__getitem__(i)`` returns ``(masked_input, concat([target, mask], -1))`` as new float32 arrays.
    Images of a list are drawn with probability proportional to their number of patch positions.

    Patches from lazy images are read chunk by chunk: the chunks a patch covers are taken from ``cache`` or read
    whole (and kept, the least recently used making room), so the random patches of later batches mostly find
    their chunks decoded already, and memory stays bounded by ``cache_bytes`` whatever the size of the data. The
    batches are exactly those of the same images in memory. Each worker process of ``use_multiprocessing`` has its
    own cache.
    """

    def __init__(self, X: np.ndarray | Sequence[np.ndarray], patch_shape: Sequence[int], batch_size: int = 16,
                 perc_pix: float = 0.198, manipulator: str = "uniform_withCP", radius: int = 5,
                 struct_mask: np.ndarray | None = None, steps_per_epoch: int | None = None,
                 means: Sequence[float] | None = None, stds: Sequence[float] | None = None,
                 augment: bool = False, seed: int | None = None, cache_bytes: int | None = None,
                 struct_replacement: str = "patch", **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch_shape = tuple(int(p) for p in patch_shape)
        n_dim = len(self.patch_shape)
        n_channel = _n_channel(X) if (X.shape[0] if _is_stack(X) else len(X)) else 1
        self.images = as_image_list(X, n_dim, n_channel)
        # lazy float images: each patch is checked for NaN/Inf when it is read (see as_image_list)
        self._check_finite = [is_lazy(im) and not np.issubdtype(np.dtype(im.dtype), np.integer) for im in self.images]
        self._lazy = [is_lazy(im) for im in self.images]
        if cache_bytes is not None:
            _byte_limit(cache_bytes, "N2VSequence: cache_bytes")
        self.cache = ChunkCache(cache_bytes) if any(self._lazy) else None
        for i, im in enumerate(self.images):
            if any(s < p for s, p in zip(im.shape[:-1], self.patch_shape)):
                raise ValueError(f"X[{i}] has spatial shape {im.shape[:-1]}, smaller than n2v_patch_shape "
                                 f"{self.patch_shape}: use a smaller patch shape or larger images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.perc_pix, self.manipulator, self.radius = perc_pix, manipulator, radius
        self.struct_mask = None if struct_mask is None else np.array(struct_mask, copy=True)
        self.struct_replacement = struct_replacement
        self.augment = augment
        self.means = np.asarray(means if means is not None else [0.0] * n_channel, np.float64)
        self.stds = np.asarray(stds if stds is not None else [1.0] * n_channel, np.float64)
        positions = np.array([np.prod([s - p + 1 for s, p in zip(im.shape[:-1], self.patch_shape)])
                              for im in self.images], dtype=np.float64)
        self._p = positions / positions.sum()
        if steps_per_epoch is None:
            n_pix = sum(int(np.prod(im.shape[:-1])) for im in self.images)
            steps_per_epoch = max(1, int(np.ceil(n_pix / (self.batch_size * np.prod(self.patch_shape)))))
        self.steps_per_epoch = int(steps_per_epoch)
        # None: from NumPy's global state, so keras.utils.set_random_seed / np.random.seed fix the batches too
        self.seed = int(np.random.randint(2**31)) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def crop_batch(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one batch of normalised random patches ``(batch_size, *patch_shape, C)``.

        Only the patches are read from lazy images, through :attr:`cache` (the chunks they cover), and checked for
        NaN/Inf.
        """
        idx = rng.choice(len(self.images), size=self.batch_size, p=self._p)
        batch = np.empty((self.batch_size,) + self.patch_shape + (self.images[0].shape[-1],), np.float32)
        for b, i in enumerate(idx):  # loop over the batch, not over pixels
            im = self.images[i]
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(im.shape[:-1], self.patch_shape)]
            region = tuple(slice(a, a + p) for a, p in zip(start, self.patch_shape)) + (slice(None),)
            patch = self.cache.read(im, region) if self._lazy[i] else im[region]  # lazy: reads its chunks
            if self._check_finite[i] and not np.isfinite(patch).all():
                raise ValueError(f"X[{i}]: the training patch at {tuple(start)} (shape {self.patch_shape}) contains "
                                 f"{int((~np.isfinite(patch)).sum())} NaN or Inf value(s): replace them in the image "
                                 "(e.g. with its median) or leave the image out")
            if self.augment:  # one of the 8 YX orientations (a non-square YX plane: the 4 that keep its shape)
                k = int(rng.integers(4))
                patch = np.rot90(patch, k if patch.shape[-3] == patch.shape[-2] else 2 * (k % 2), axes=(-3, -2))
                if rng.random() < 0.5:
                    patch = patch[..., ::-1, :]
            batch[b] = patch
        return normalize(batch, self.means, self.stds)

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of epoch ``epoch``: ``(masked_input, concat([target, mask], -1))``, from the generator
        seeded by ``(seed, epoch, index)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a sequence of length {len(self)}")
        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        return mask_batch(self.crop_batch(rng), self.perc_pix, self.manipulator, self.radius, rng, self.struct_mask,
                          self.struct_replacement)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.batch(self.epoch, index)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def tf_dataset(self, first_epoch: int = 0, prefetch: int = 2):
        """An endless ``tf.data.Dataset`` of the batches of epochs ``first_epoch``, ``first_epoch + 1``, ..., in order.

        Parameters
        ----------
        first_epoch : int
            Epoch of the first batch (to resume a training).
        prefetch : int
            Batches prepared ahead, while the network trains on the current one.

        Returns
        -------
        tf.data.Dataset
            Yields ``batch(epoch, index)`` for ``index`` in ``range(len(self))``, epoch after epoch; use it with
            ``fit(..., steps_per_epoch=len(self))``.

        Notes
        -----
        Which batch a training step gets depends only on the seed and the step number: unlike the epoch counter
        of a ``PyDataset`` that Keras advances while it prefetches (and shuffles), it cannot race with the
        prefetching, so a seeded run and a resumed run see the same batches.
        """
        import tensorflow as tf
        x0, y0 = self.batch(first_epoch, 0)
        spec = (tf.TensorSpec(x0.shape, tf.float32), tf.TensorSpec(y0.shape, tf.float32))

        def batches():
            yield x0, y0
            step = first_epoch * len(self) + 1
            while True:
                yield self.batch(*divmod(step, len(self)))
                step += 1

        options = tf.data.Options()  # a generator has no files to shard: multi-worker training shards the batches
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(prefetch).with_options(options)


def validation_data(X_val: np.ndarray | Sequence[np.ndarray], patch_shape: Sequence[int], perc_pix: float,
                    manipulator: str = "uniform_withCP", radius: int = 5, struct_mask: np.ndarray | None = None,
                    means: Sequence[float] | None = None, stds: Sequence[float] | None = None, div_by: int = 1,
                    seed: int = 0, max_patches: int = 2048, struct_replacement: str = "patch"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mask validation data once, with a fixed seed.

    Parameters
    ----------
    X_val : numpy.ndarray or list of numpy.ndarray or lazy arrays
        An n2v array ``(S, *spatial, C)`` (used whole, spatial sizes divisible by ``div_by``) or a list
        of images, which are cut into non-overlapping patches of ``patch_shape``. From lazy images only the
        patches kept are read (once).
    patch_shape : sequence of int
        Training patch shape.
    perc_pix, manipulator, radius, struct_mask, struct_replacement
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
    n_channel = _n_channel(X_val)
    images = as_image_list(X_val, n_dim, n_channel, name="validation_X")
    if _is_stack(X_val):
        bad = [s for s in X_val.shape[1:-1] if s % div_by]
        if bad:
            raise ValueError(f"validation_X: spatial shape {tuple(X_val.shape[1:-1])} must be divisible by "
                             f"2**unet_n_depth = {div_by}")
        X = np.asarray(X_val if hasattr(X_val, "__array__") else X_val[...], np.float32)  # used whole: read it
        if is_lazy(X_val) and not np.isfinite(X).all():
            raise ValueError(f"validation_X: contains {int((~np.isfinite(X)).sum())} NaN or Inf value(s); remove or "
                             "replace them before training")
    elif any(is_lazy(im) for im in images):
        X = _grid_patches_lazy(images, patch_shape, max_patches)
    else:
        X = np.concatenate([_grid_patches(im, patch_shape) for im in images], axis=0)
        if len(X) == 0:
            raise ValueError(f"validation_X: every image is smaller than n2v_patch_shape {tuple(patch_shape)}")
        if len(X) > max_patches:
            X = X[np.linspace(0, len(X) - 1, max_patches).astype(int)]
    mean = np.asarray(means if means is not None else [0.0] * n_channel, np.float64)
    std = np.asarray(stds if stds is not None else [1.0] * n_channel, np.float64)
    return mask_batch(normalize(X, mean, std), perc_pix, manipulator, radius, np.random.default_rng(seed), struct_mask,
                      struct_replacement)


def _grid_patches_lazy(images: Sequence, shape: Sequence[int], max_patches: int) -> np.ndarray:
    """The patches of :func:`_grid_patches` over all images, concatenated and thinned to ``max_patches`` as
    :func:`validation_data` does, reading only the patches kept (one slice each)."""
    shape = tuple(int(p) for p in shape)
    counts = [tuple(int(s) // p for s, p in zip(im.shape[:-1], shape)) for im in images]
    totals = np.array([int(np.prod(n)) for n in counts], np.int64)
    total = int(totals.sum())
    if total == 0:
        raise ValueError(f"validation_X: every image is smaller than n2v_patch_shape {shape}")
    take = np.arange(total) if total <= max_patches else np.linspace(0, total - 1, max_patches).astype(int)
    first = np.concatenate([[0], np.cumsum(totals)])
    dtype = np.result_type(*[np.dtype(im.dtype) for im in images])  # as np.concatenate of the patches
    out = np.empty((len(take),) + shape + (int(images[0].shape[-1]),), dtype)
    for j, g in enumerate(take):  # one read per patch
        i = int(np.searchsorted(first, g, side="right")) - 1
        start = np.array(np.unravel_index(int(g - first[i]), counts[i])) * shape
        out[j] = np.asarray(images[i][tuple(slice(a, a + p) for a, p in zip(start, shape))])
        if is_lazy(images[i]) and not np.isfinite(out[j]).all():
            raise ValueError(f"validation_X[{i}]: the validation patch at {tuple(int(a) for a in start)} contains "
                             "NaN or Inf values: replace them in the image (e.g. with its median) or leave the "
                             "image out")
    return out


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

