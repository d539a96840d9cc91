"""Tiled prediction: one engine for in-memory images (:meth:`n2v_tf.N2V.predict`) and blocks of images larger than
memory (:mod:`n2v_tf.large`).

The image is cut into *cores* that cover it without overlap; each core is predicted from an input *tile* that extends
it by the network's receptive field (rounded up to the network's block size ``2**unet_n_depth``) on every side that is
not an image border. All tiles of one image have the same shape, so a compiled network function is traced once and
reused for every tile and every image of that size; tiles are predicted several at a time, as one batch.

Why the result equals untiled prediction: the U-Net pads every convolution with zeros at the border of what it is
given. A tile is shifted inwards at an image border instead of being padded, so its border *is* the image border and
the network pads exactly as for the whole image; elsewhere the core is further than the receptive field from the tile's
border, so no padding reaches it. Tile starts are multiples of ``2**unet_n_depth``, so pooling sees the same pixel
groups as in the whole image.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .masking import tta_backward, tta_forward

__all__ = [
    "CompiledNetwork",
    "axis_tiles",
    "batched",
    "core_size",
    "predict_tiles",
    "tile_grid",
    "weights_fingerprint",
]

#: Pixels (of the network input, all tiles of a batch together) predicted in one call of the network by default:
#: large enough to amortise the per-call overhead, small enough for the activations of a 32-filter U-Net
#: (about 0.6 kB per pixel in float32) to stay near 1 GB.
BATCH_PIXELS = 2 ** 21


def core_size(length: int, n_tiles: int, div_by: int) -> int:
    """Core length for ``n_tiles`` tiles along an axis of ``length`` pixels: ``ceil(length / n_tiles)`` rounded up to
    a multiple of ``div_by``."""
    return int(math.ceil(math.ceil(length / max(1, int(n_tiles))) / div_by) * div_by)


def context(overlap: int, div_by: int) -> int:
    """The receptive-field radius ``overlap`` rounded up to a multiple of ``div_by``: context taken on each side."""
    return int(math.ceil(overlap / div_by) * div_by)


def tile_span(c0: int, c1: int, length: int, size: int, ctx: int, div_by: int) -> tuple[int, int]:
    """The tile of ``size`` pixels (a multiple of ``div_by``) that predicts the core ``[c0, c1)`` of an axis of
    ``length``: it starts at a multiple of ``div_by`` at least ``ctx`` before ``c0`` and is shifted inwards at the
    borders instead of running over them."""
    t0 = min(max((c0 - ctx) // div_by * div_by, 0), length - size)
    if t0 + size < min(c1 + ctx, length) or t0 > c0:
        raise ValueError(f"a tile of {size} px cannot predict the core [{c0}, {c1}) with {ctx} px of context")
    return t0, t0 + size


def axis_tiles(length: int, core: int, overlap: int, div_by: int = 1, offset: int = 0
               ) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis.

    Parameters
    ----------
    length : int
        Axis length (a multiple of ``div_by``).
    core : int
        Core length; the cores are ``[0, offset + core)``, ``[offset + core, offset + 2 * core)``, ... (the last
        one may be shorter).
    overlap : int
        Context needed on each side of a core (the receptive-field radius); rounded up to a multiple of ``div_by``.
    div_by : int
        Alignment of tile starts and lengths (``2**unet_n_depth``).
    offset : int
        Shift of the core grid, e.g. the padding before the image, so that cores follow the chunks of the unpadded
        image. With ``offset == 0`` and ``core`` a multiple of ``div_by``, tiles are ``core + 2 * context`` long.

    Returns
    -------
    list of (int, int, int, int)
        ``(tile_start, tile_stop, core_start, core_stop)``; all tiles have the same length, and a single tile
        covers the axis where that would be the whole axis.
    """
    if length % div_by:
        raise ValueError(f"axis length {length} must be a multiple of {div_by}")
    if core < 1:
        raise ValueError(f"core length must be positive, got {core}")
    ctx = context(overlap, div_by)
    bounds = [0] + list(range(offset + core, length, core)) + [length]
    cores = list(zip(bounds[:-1], bounds[1:]))
    longest = max(c1 - c0 for c0, c1 in cores)
    aligned = all(c0 % div_by == 0 for c0, _ in cores)
    size = min(length, context(longest + 2 * ctx, div_by) + (0 if aligned else div_by))
    if size == length:
        return [(0, length, 0, length)]
    return [tile_span(c0, c1, length, size, ctx, div_by) + (c0, c1) for c0, c1 in cores]


def tile_grid(shape: Sequence[int], cores: Sequence[int], overlap: int, div_by: int = 1,
              offsets: Sequence[int] | None = None
              ) -> list[tuple[tuple[slice, ...], tuple[slice, ...], tuple[slice, ...]]]:
    """All tiles of a spatial ``shape``: the product of :func:`axis_tiles` over the axes (core grids shifted by
    ``offsets``).

    Returns
    -------
    list of (tuple of slice, tuple of slice, tuple of slice)
        ``(tile, core, core_in_tile)``: the tile's input region and its core in image coordinates, and the core's
        position inside the tile's prediction.
    """
    offsets = (0,) * len(shape) if offsets is None else offsets
    per_axis = [axis_tiles(int(n), int(c), overlap, div_by, int(o)) for n, c, o in zip(shape, cores, offsets)]
    grid = []
    for idx in np.ndindex(*[len(p) for p in per_axis]):
        parts = [per_axis[a][i] for a, i in enumerate(idx)]
        tile = tuple(slice(t0, t1) for t0, t1, _, _ in parts)
        core = tuple(slice(c0, c1) for _, _, c0, c1 in parts)
        inner = tuple(slice(c0 - t0, c1 - t0) for t0, _, c0, c1 in parts)
        grid.append((tile, core, inner))
    return grid


def batched(items: Sequence, tile_pixels: int, batch_pixels: int = BATCH_PIXELS) -> Iterator[list]:
    """Consecutive groups of ``items`` with at most ``batch_pixels`` pixels together (at least one item each)."""
    n = max(1, int(batch_pixels // max(1, tile_pixels)))
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def weights_fingerprint(model) -> str:
    """A digest of a Keras model's weight values (to know when a cached inference network is out of date)."""
    h = hashlib.blake2b(digest_size=16)
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


#: A network call on at most this many input pixels, with a shape not seen before, runs eagerly instead of being
#: traced: tracing (about 0.2 s) costs more than the eager call of a small image, and a shape seen once may never
#: come again. Kept small because an eager call holds every feature map of the U-Net until it returns (about 4 GB
#: for a 1024 x 1024 image with 32 filters; a traced call frees them as it goes: 1.7 GB).
EAGER_PIXELS = 2 ** 18


class CompiledNetwork:
    """A Keras network as a compiled TensorFlow function for prediction, traced once per input shape.

    Parameters
    ----------
    network : keras.Model
        Channel-last network (inference mode is used).
    output_index : int or None
        Channel of the output to keep (e.g. the MMSE estimate of the PN2V head), or ``None`` for all.
    eager : keras.Model, optional
        A network with the same predictions to call eagerly for a first, small call of a new shape (e.g. the trained
        network before batch-norm folding; building ``network`` is then deferred to the first trace). ``None``:
        every call is traced.

    Notes
    -----
    ``keras.Model.predict`` builds a data adapter and a predict loop on every call, and CSBDeep's tiling calls it per
    tile; a ``tf.function`` of the network's call costs one trace per input shape (all tiles of an image share one;
    the batch size is left open) and then only the computation, with convolution, bias and activation fused by
    Grappler. A shape is traced when it comes a second time or the call is large (:data:`EAGER_PIXELS`); a single
    small image is predicted eagerly, which is quicker than tracing for it (first-call latency).
    """

    def __init__(self, network, output_index: int | None = None, eager=None):
        import tensorflow as tf
        self._tf = tf
        self._network = network
        self.output_index = output_index
        self._eager = eager
        self._fn = None
        self._concrete: dict[tuple[int, ...], object] = {}
        self._seen: set[tuple[int, ...]] = set()

    @property
    def network(self):
        """The network that is traced (built on first use if it was given as a function)."""
        if callable(self._network) and not hasattr(self._network, "layers"):
            self._network = self._network()
        return self._network

    @property
    def n_traces(self) -> int:
        """Number of input shapes traced so far (one per tile shape)."""
        return len(self._concrete)

    def _select(self, y):
        y = y if self.output_index is None else y[..., self.output_index:self.output_index + 1]
        return self._tf.cast(y, self._tf.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tf = self._tf
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        key = batch.shape[1:]
        fn = self._concrete.get(key)
        if fn is None:
            if self._eager is not None and key not in self._seen and batch.size <= EAGER_PIXELS:
                self._seen.add(key)
                return self._select(self._eager(tf.constant(batch), training=False)).numpy()
            if self._fn is None:
                network = self.network
                self._fn = tf.function(lambda x: self._select(network(x, training=False)))
            fn = self._concrete[key] = self._fn.get_concrete_function(tf.TensorSpec((None,) + key, tf.float32))
        return fn(tf.constant(batch)).numpy()


def predict_batch(net: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, tta: bool, yx: tuple[int, int]
                  ) -> np.ndarray:
    """``net(batch)``, or with ``tta`` its average over the 8 rotations/flips of the YX axes ``yx`` of the batch (the
    transforms of one shape are predicted together)."""
    if not tta:
        return net(batch)
    augs = tta_forward(batch, yx_axes=yx)
    # rotations by 0/180 and 90/270 degrees have the same shape: predict each shape group as one batch
    preds: list = [None] * len(augs)
    for group in ((0, 2, 4, 6), (1, 3, 5, 7)):
        stacked = net(np.concatenate([augs[k] for k in group], axis=0))
        for j, k in enumerate(group):
            preds[k] = stacked[j * len(batch):(j + 1) * len(batch)]
    return tta_backward(preds, yx_axes=yx)


def predict_tiles(read: Callable[[tuple[slice, ...]], np.ndarray], write: Callable[[tuple[slice, ...], np.ndarray], None],
                  shape: Sequence[int], cores: Sequence[int], overlap: int, div_by: int,
                  net: Callable[[np.ndarray], np.ndarray], tta: bool = False, batch_pixels: int | None = None,
                  skip: Callable[[tuple[slice, ...]], bool] | None = None,
                  progress: Callable[[Iterable], Iterable] | None = None, offsets: Sequence[int] | None = None,
                  done: Callable[[list[tuple[slice, ...]]], None] | None = None) -> int:
    """Predict an image tile by tile.

    Parameters
    ----------
    read : callable
        ``read(spatial_slices) -> (*tile_shape, C)`` float32, the normalised network input of a region.
    write : callable
        ``write(spatial_slices, prediction)`` stores the prediction ``(*core_shape, C_out)`` of a core.
    shape : sequence of int
        Spatial shape of the (padded) image; every entry a multiple of ``div_by``.
    cores : sequence of int
        Core size per spatial axis.
    overlap : int
        Receptive-field radius of the network.
    div_by : int
        ``2**unet_n_depth``.
    net : callable
        ``net(batch) -> batch`` of predictions, e.g. a :class:`CompiledNetwork`.
    tta : bool
        Average each tile over the 8 rotations/flips of its YX plane.
    batch_pixels : int, optional
        Input pixels per network call (tiles are batched up to this; default :data:`BATCH_PIXELS`).
    skip : callable, optional
        ``skip(core_slices) -> bool``: cores to leave out (already written by an earlier, interrupted run).
    progress : callable, optional
        Wraps the iterable of batches (e.g. ``tqdm``).
    offsets : sequence of int, optional
        Shift of the core grid per axis (see :func:`axis_tiles`).
    done : callable, optional
        Called with the cores of each batch once they are written (to record progress).

    Returns
    -------
    int
        Number of tiles predicted.
    """
    grid = tile_grid(shape, cores, overlap, div_by, offsets)
    if skip is not None:
        grid = [g for g in grid if not skip(g[1])]
    if not grid:
        return 0
    n_dim = len(shape)
    yx = (n_dim - 1, n_dim)  # in (B, *spatial, C)
    tile_pixels = int(np.prod([s.stop - s.start for s in grid[0][0]])) * (8 if tta else 1)
    groups = list(batched(grid, tile_pixels, BATCH_PIXELS if batch_pixels is None else batch_pixels))
    for group in (progress(groups) if progress is not None else groups):
        pred = predict_batch(net, np.stack([read(tile) for tile, _, _ in group]), tta, yx)
        for (_, core, inner), p in zip(group, pred):
            write(core, p[inner])
        if done is not None:
            done([core for _, core, _ in group])
    return len(grid)
