"""Images larger than memory: block-wise prediction from and to TIFF, Zarr and OME-Zarr, and Dask for clusters.

:func:`predict_blocks` reads one block (plus the network's receptive field) at a time from a lazy source, predicts it
with the tiling engine of :mod:`n2v_tf.tiling` and writes it to a chunked destination, so its memory is bounded by the
block size, not by the image. :func:`predict_dask` builds the same computation as a Dask graph
(``dask.array.map_overlap``), which runs on a laptop's threads or on a ``dask.distributed`` cluster. Both give what
:meth:`n2v_tf.N2V.predict` gives for the whole image in memory (up to float32 rounding): the image is padded
virtually as ``predict`` pads it, and every block is predicted from enough context.

Zarr, Dask and ome-zarr are optional: ``pip install "n2v_tf[large]"``.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import is_lazy, open_array, require, write_text_atomic

__all__ = ["BlockLayout", "predict_blocks", "predict_dask"]

PROGRESS_FILE = "n2v_tf_progress.json"
SAMPLE_AXES = "STZ"  # looped over (Z only for 2D models: slice by slice)


def _load_model(model: Any):
    """An :class:`n2v_tf.N2V` from an instance or a model folder."""
    from .models import N2V
    if isinstance(model, N2V):
        return model
    folder = Path(model)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"model: {folder} is not a model folder (no config.json in it)")
    return N2V(None, folder.name, basedir=str(folder.parent))


class BlockLayout:
    """How an image with ``axes`` maps onto a model: spatial, channel and sample axes, and the virtual padding.

    Parameters
    ----------
    config : n2v_tf.N2VConfig
        The model's configuration.
    shape : sequence of int
        Shape of the image.
    axes : str
        Axes of the image, e.g. ``'YX'``, ``'TYX'``, ``'ZYXC'``, ``'TCZYX'``.
    name : str
        Name of the image in error messages.

    Notes
    -----
    Spatial axes are padded as :meth:`n2v_tf.N2V.predict` pads them (``csbdeep``'s ``PadAndCropResizer``: reflection,
    split before/after, up to a multiple of ``2**unet_n_depth``), but only virtually: a tile that reaches into the
    padding reads the image next to the border and reflects it.
    """

    def __init__(self, config, shape: Sequence[int], axes: str, name: str = "source"):
        from csbdeep.utils import axes_check_and_normalize
        self.shape = tuple(int(s) for s in shape)
        try:
            axes = axes_check_and_normalize(axes, len(self.shape))
        except ValueError as e:
            raise ValueError(f"{name}: axes {axes!r} do not fit its shape {self.shape}: {e}") from None
        spatial = "ZYX" if config.n_dim == 3 else "YX"
        extra = [a for a in axes if a not in spatial + "C"]
        if any(a not in SAMPLE_AXES for a in extra) or not set(spatial) <= set(axes):
            raise ValueError(f"{name}: axes {axes!r} (shape {self.shape}) do not fit this {config.n_dim}D model: it "
                             f"needs the axes {spatial!r}, optionally 'C' and axes predicted one by one "
                             f"({', '.join(a for a in SAMPLE_AXES if a not in spatial)})")
        n_ch = self.shape[axes.index("C")] if "C" in axes else 1
        if n_ch != config.n_channel_in:
            raise ValueError(f"{name}: {n_ch} channel(s) (axes {axes!r}, shape {self.shape}) but the model expects "
                             f"{config.n_channel_in}")
        self.axes, self.spatial, self.samples = axes, spatial, "".join(extra)
        self.n_channel = n_ch
        self.div = 2 ** config.unet_n_depth
        self.n = tuple(self.shape[axes.index(a)] for a in spatial)
        self.pad = tuple(((-s) % self.div // 2, (-s) % self.div - (-s) % self.div // 2) for s in self.n)
        self.padded = tuple(s + a + b for s, (a, b) in zip(self.n, self.pad))
        self.sample_shape = tuple(self.shape[axes.index(a)] for a in self.samples)
        means, stds = config.normalization()
        self.means, self.stds = means.astype(np.float32), stds.astype(np.float32)

    def index(self, sample: Sequence[int], spatial: Sequence[slice]) -> tuple:
        """Index into the image (its own axis order) of the spatial region ``spatial`` of ``sample``."""
        parts = dict(zip(self.samples, sample))
        parts.update(zip(self.spatial, spatial))
        parts["C"] = slice(None)
        return tuple(parts[a] for a in self.axes if a in parts)

    def to_net(self, block: np.ndarray) -> np.ndarray:
        """A region as indexed by :meth:`index` -> ``(*spatial, C)``."""
        order = [a for a in self.axes if a in self.spatial + "C"]
        if "C" not in order:
            block, order = block[..., np.newaxis], order + ["C"]
        return np.moveaxis(block, [order.index(a) for a in self.spatial + "C"], range(len(self.spatial) + 1))

    def from_net(self, pred: np.ndarray) -> np.ndarray:
        """``(*spatial, C)`` -> the image's axis order (inverse of :meth:`to_net`)."""
        order = [a for a in self.axes if a in self.spatial + "C"]
        if "C" not in order:
            return pred[..., 0]
        target = [order.index(a) for a in self.spatial + "C"]
        return np.moveaxis(pred, range(len(self.spatial) + 1), target)

    def read_padded(self, get: Callable[[tuple[slice, ...]], np.ndarray], region: Sequence[slice]) -> np.ndarray:
        """The normalised network input ``(*spatial, C)`` of ``region`` (padded coordinates): ``get(spatial_slices)``
        reads an unpadded region as ``(*spatial, C)``; what lies in the padding is reflected."""
        src, pads = [], []
        for sl, n, (a, _) in zip(region, self.n, self.pad):
            lo, hi = sl.start - a, sl.stop - a
            src.append(slice(max(lo, 0), min(hi, n)))
            pads.append((max(0, -lo), max(0, hi - n)))
        x = np.asarray(get(tuple(src)), dtype=np.float32)
        if any(p != (0, 0) for p in pads):
            x = np.pad(x, pads + [(0, 0)], mode="reflect")
        return (x - self.means) / self.stds

    def crop(self, core: Sequence[slice], pred: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
        """The part of a core's prediction that lies in the image (unpadded coordinates), denormalised."""
        dst, inner = [], []
        for sl, n, (a, _) in zip(core, self.n, self.pad):
            lo, hi = max(sl.start - a, 0), min(sl.stop - a, n)
            dst.append(slice(lo, hi))
            inner.append(slice(lo + a - sl.start, hi + a - sl.start))
        return tuple(dst), pred[tuple(inner)] * self.stds + self.means


def _source(source: Any, axes: str | None) -> tuple[Any, str, dict]:
    if isinstance(source, (str, os.PathLike)):
        arr, stored, meta = open_array(source, axes=axes)
        return arr, axes or stored, meta
    if axes is None:
        raise ValueError("axes: give the axes of the source array, e.g. axes='ZYX'")
    if not (isinstance(source, np.ndarray) or is_lazy(source)):
        source = np.asarray(source)
    return source, axes, {}


class _FileArray:
    """An image file opened lazily for a Dask graph: it pickles as its path and axes and is reopened with
    :func:`n2v_tf.io.open_array` in each process that reads it. (A memory-mapped TIFF would pickle all its pixels,
    tifffile's Zarr store of a compressed TIFF not at all.) Slicing returns a NumPy array of the region."""

    def __init__(self, path: str | os.PathLike, axes: str | None = None):
        self.path, self.axes, self._array = str(path), axes, None
        array = self._open()
        self.shape, self.dtype, self.ndim = tuple(int(s) for s in array.shape), np.dtype(array.dtype), len(array.shape)

    def _open(self):
        if self._array is None:
            self._array = open_array(self.path, axes=self.axes)[0]
        return self._array

    def __getitem__(self, key):
        return np.asarray(self._open()[key])

    def __getstate__(self):
        return {"path": self.path, "axes": self.axes, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state):
        self.path, self.axes, self._array = state["path"], state["axes"], None
        self.shape, self.dtype, self.ndim = tuple(state["shape"]), np.dtype(state["dtype"]), len(state["shape"])


def _default_block(n_dim: int) -> tuple[int, ...]:
    return (1024, 1024) if n_dim == 2 else (64, 128, 128)


def _output_dtype(dtype: Any, source_dtype: np.dtype) -> np.dtype:
    if dtype is None or str(dtype) == "float32":
        return np.dtype(np.float32)
    if str(dtype) == "input":
        return np.dtype(source_dtype)
    return np.dtype(dtype)


def _cast(pred: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.float32:
        return pred.astype(np.float32, copy=False)
    from .io import to_dtype
    return to_dtype(pred, dtype)


def _signature(model, layout: BlockLayout, block: Sequence[int], tta: bool, dtype: np.dtype) -> dict:
    from .tiling import weights_fingerprint
    return {"weights": weights_fingerprint(model.keras_model), "shape": list(layout.shape), "axes": layout.axes,
            "block": [int(b) for b in block], "tta": bool(tta), "dtype": str(dtype)}


# --------------------------------------------------------------------------- destinations

class _Destination:
    """A chunked array being written block by block under a temporary name, with a record of the blocks done."""

    def __init__(self, path: Path, partial: Path, progress: Path, signature: dict, done: set, writer):
        self.path, self.partial, self.progress_path = path, partial, progress
        self.signature, self.done, self._writer = signature, done, writer

    def write(self, index: tuple, values: np.ndarray) -> None:
        self._writer(index, values)

    def record(self, keys: Sequence[tuple]) -> None:
        self.done.update(keys)
        write_text_atomic(self.progress_path, json.dumps({"signature": self.signature,
                                                          "done": sorted(list(k) for k in self.done)}))

    def finish(self) -> None:
        """Rename the complete result to its name (replacing an older one, which ``overwrite`` allowed)."""
        self.progress_path.unlink(missing_ok=True)
        if self.path.is_dir():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    raise ValueError(f"destination {path}: unknown format; use a name ending in .zarr, .ome.zarr, .tif or .tiff")


def _ngff_metadata(layout: BlockLayout, meta: dict) -> dict:
    """NGFF 0.4 ``multiscales`` for one resolution level, with the input's axes names/units and pixel sizes."""
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space", "S": "space"}
    sizes, units = meta.get("pixel_size") or {}, meta.get("units") or {}
    axes = []
    for a in layout.axes:
        entry = {"name": a.lower() if a != "S" else "s", "type": kinds[a] if a != "S" else "other"}
        if units.get(a):
            entry["unit"] = units[a]
        axes.append(entry)
    scale = [float(sizes.get(a, 1.0)) for a in layout.axes]
    return {"multiscales": [{"version": "0.4", "name": "denoised", "axes": axes,
                             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                                         "scale": scale}]}]}]}


def _open_destination(destination: str | os.PathLike, layout: BlockLayout, dtype: np.dtype, chunks: tuple,
                      meta: dict, signature: dict, overwrite: bool) -> _Destination:
    path = Path(destination)
    kind = _kind(path)
    partial = path.with_name(path.name + ".partial")
    progress = (partial / PROGRESS_FILE) if kind != "tiff" else path.with_name(path.name + ".partial.json")
    done: set = set()
    resumable = partial.exists() and progress.exists()
    if resumable:
        record = json.loads(progress.read_text())
        if record.get("signature") == signature:
            done = {tuple(k) for k in record["done"]}
        elif not overwrite:
            raise FileExistsError(f"destination {path}: an interrupted run of another job ({progress} records other "
                                  "model weights, source, block shape, tta or dtype) left "
                                  f"{partial}: pass overwrite=True to start over, or delete it")
        else:
            resumable = False
    if path.exists() and not overwrite:
        raise FileExistsError(f"destination {path} exists: pass overwrite=True (CLI: --overwrite) to replace it, "
                                  "or choose another name")
    if not resumable or not done:
        if partial.exists():
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
        done = set()
    if kind == "tiff":
        writer = _tiff_writer(partial, layout, dtype, meta, create=not partial.exists())
    else:
        writer = _zarr_writer(partial, layout, dtype, chunks, meta, kind, create=not partial.exists())
    dest = _Destination(path, partial, progress, signature, done, writer)
    if not progress.exists():
        dest.record([])
    return dest


def _zarr_writer(partial: Path, layout: BlockLayout, dtype: np.dtype, chunks: tuple, meta: dict, kind: str,
                 create: bool):
    zarr = require("zarr")
    if create:
        if kind == "ome-zarr":
            group = zarr.open_group(str(partial), mode="w", zarr_format=2)
            group.attrs.update(_ngff_metadata(layout, meta))
            group.create_array("0", shape=layout.shape, chunks=chunks, dtype=dtype, fill_value=0)
        else:
            zarr.open_array(str(partial), mode="w", shape=layout.shape, chunks=chunks, dtype=dtype, fill_value=0,
                            zarr_format=2)
    array = zarr.open_array(str(partial / "0") if kind == "ome-zarr" else str(partial), mode="r+")

    def write(index, values):
        array[index] = values
    return write


def _tiff_writer(partial: Path, layout: BlockLayout, dtype: np.dtype, meta: dict, create: bool):
    """A contiguous BigTIFF written with positioned writes (``os.pwrite``): a full disk raises ``OSError`` instead of
    the ``SIGBUS`` of a memory map, and no written page stays in this process's memory."""
    import tifffile
    if create:
        tmp = partial.with_name(partial.name + ".tmp")
        tifffile.imwrite(tmp, shape=layout.shape, dtype=dtype, bigtiff=True, photometric="minisblack",
                         metadata={"axes": layout.axes})
        os.replace(tmp, partial)
    with tifffile.TiffFile(partial) as tif:
        offset = tif.series[0].dataoffset
    if not offset:
        raise OSError(f"{partial}: not a contiguous TIFF; delete it and start again")
    strides = np.array([int(np.prod(layout.shape[i + 1:])) for i in range(len(layout.shape))]) * dtype.itemsize

    def write(index, values):
        values = np.ascontiguousarray(values, dtype=dtype)
        # index: ints (sample axes) and slices with start/stop (spatial) or slice(None) (channels)
        starts = np.array([(i.start or 0) if isinstance(i, slice) else i for i in index])
        rows = values.reshape([(s if i.stop is None else i.stop - (i.start or 0)) if isinstance(i, slice) else 1
                               for i, s in zip(index, layout.shape)])
        last = rows.shape[-1] * dtype.itemsize
        base = offset + int((starts * strides).sum())
        fd = os.open(partial, os.O_WRONLY)
        try:
            for pos in np.ndindex(*rows.shape[:-1]):  # one positioned write per image row of the block
                at = base + int((np.array(pos) * strides[:-1]).sum())
                if os.pwrite(fd, rows[pos].tobytes(), at) != last:
                    raise OSError(f"{partial}: short write at byte {at} (disk full?)")
        finally:
            os.close(fd)
    return write


# --------------------------------------------------------------------------- block-wise prediction

def _block_grid(layout: BlockLayout, block: Sequence[int], overlap: int) -> list:
    """The blocks of one image of ``layout``: :func:`n2v_tf.tiling.tile_grid` over its padded shape, the core grid
    aligned with the virtual padding (as ``predict`` tiles it)."""
    from .tiling import tile_grid
    return tile_grid(layout.padded, block, overlap, layout.div, [a for a, _ in layout.pad])


def _block_curves(model, layout: BlockLayout, get: Callable, grid: list, net: Callable, calibrate: int | str,
                  calibrate_bins: int | None) -> list:
    """``calibrate``: the intensity curves of one image (``get`` reads its unpadded regions as ``(*spatial, C)``),
    fitted on the blind spots of its masked blocks (``grid`` of :func:`_block_grid`, with their receptive field),
    drawn in a fixed random order (:meth:`n2v_tf.N2V._calibration_curves`)."""
    order = np.random.default_rng(1).permutation(len(grid))

    def region(k):
        tile, _, inner = grid[order[k % len(grid)]]
        return layout.read_padded(get, tile), inner

    return model._calibration_curves(region, lambda xm: net(xm[np.newaxis])[0], calibrate, calibrate_bins,
                                     parts=len(grid))


def predict_blocks(model: Any, source: Any, destination: str | os.PathLike | None = None, axes: str | None = None, *,
                   block_shape: Sequence[int] | None = None, tta: bool = False, dtype: Any = "float32",
                   overwrite: bool = False, progress: bool = True, batch_pixels: int | None = None,
                   calibrate: int | str = 0, calibrate_bins: int | None = None) -> Any:
    """Denoise an image larger than memory block by block.

    Parameters
    ----------
    model : n2v_tf.N2V or path
        A trained model or its folder.
    source : path or array-like
        A TIFF (read page-wise/memory-mapped), a Zarr array, an OME-Zarr image (level 0), a NumPy, Zarr or Dask
        array, or any array-like with ``shape``, ``dtype`` and NumPy slicing.
    destination : path, optional
        ``*.zarr`` (chunked, compressed Zarr array), ``*.ome.zarr`` (OME-Zarr/NGFF 0.4 image with the source's axes
        and pixel sizes) or ``*.tif``/``*.tiff`` (contiguous BigTIFF). ``None``: return a NumPy array (the image must
        then fit in memory; for tests and small images).
    axes : str, optional
        Axes of ``source`` (default: those stored in the file). Axes other than the model's spatial axes and ``C``
        (``S``, ``T``, and ``Z`` for a 2D model) are predicted one by one.
    block_shape : sequence of int, optional
        Size of the blocks (spatial axes of the model; default ``(1024, 1024)`` in 2D, ``(64, 128, 128)`` in 3D);
        also the chunks of a Zarr destination. Memory is bounded by the block size plus the receptive field.
    tta : bool
        Test-time augmentation (8 YX transforms per block).
    dtype : {'float32', 'input'} or numpy dtype
        Output type: float32, or the source's type (rounded and clipped).
    overwrite : bool
        Replace an existing destination, or an interrupted run of another job.
    progress : bool
        Show a progress bar over the blocks.
    batch_pixels : int, optional
        Input pixels per network call (tiles are batched up to it).
    calibrate : int or 'auto'
        N2V models: map each image's prediction (each ``S``/``T``/... entry on its own, per channel) through the
        intensity curve fitted on the blind spots of masked blocks of that image, as ``N2V.predict(...,
        calibrate=...)`` does with masked copies of the whole image: ``K`` masks every block ``K`` times (``K`` more
        passes over the image), ``'auto'`` masks blocks one after the other (a fixed random order, then again) until
        30 000 blind spots per channel (about 2 megapixels of blocks; at most 16 passes). See Notes.
    calibrate_bins : int, optional
        Segments of the curve, as in ``N2V.predict``.

    Returns
    -------
    numpy.ndarray or zarr.Array or pathlib.Path
        The prediction (``destination=None``), the Zarr array, or the TIFF's path.

    Raises
    ------
    ValueError
        Axes or channels that do not fit the model, a bad block shape, an unknown destination suffix.
    FileExistsError
        The destination exists (and ``overwrite`` is false).
    OSError
        Writing failed (e.g. a full disk); the blocks written so far stay valid and a new call with the same
        arguments resumes from them.

    Notes
    -----
    The destination is written under ``<name>.partial`` and renamed when complete. After each batch of blocks the
    list of finished blocks is stored (atomically) next to it, so an interrupted run is restarted by calling
    ``predict_blocks`` again with the same arguments: it checks that model, source, block shape, tta and dtype are
    the same and skips the blocks already written. The result equals :meth:`n2v_tf.N2V.predict` of the whole image
    (up to float32 rounding) because blocks are read with the receptive field of the network around them and the
    image is padded virtually exactly as ``predict`` pads it. With ``calibrate`` the curve is fitted on blind spots of
    blocks rather than of the whole image, so the result differs from ``predict(..., calibrate=...)`` by the sampling
    of the fit (the same curve in expectation); the curve is fitted anew, with the same draws, when a run resumes.
    """
    from .nets import config_receptive_field
    from .tiling import predict_tiles
    from .models import _check_calibrate
    from .nets import apply_curves
    model = _load_model(model)
    c = model.config
    _check_calibrate(calibrate, calibrate_bins, c.probabilistic)
    name = str(source) if isinstance(source, (str, os.PathLike)) else "source"
    source, axes, meta = _source(source, axes)
    layout = BlockLayout(c, source.shape, axes, name)
    block = tuple(_default_block(c.n_dim) if block_shape is None else (int(b) for b in block_shape))
    if len(block) != c.n_dim or min(block) < 1:
        raise ValueError(f"block_shape must have {c.n_dim} positive entries (axes {layout.spatial!r}), got "
                         f"{tuple(block_shape)}")
    block = tuple(min(b, n) for b, n in zip(block, layout.n))
    out_dtype = _output_dtype(dtype, source.dtype)
    net = model._inference("mmse", *c.normalization())
    overlap = config_receptive_field(c)
    chunks = tuple(1 if a in layout.samples else layout.n_channel if a == "C" else block[layout.spatial.index(a)]
                   for a in layout.axes)
    dest = None
    if destination is None:
        out = np.zeros(layout.shape, out_dtype)

        def write(index, values):
            out[index] = values
        done: set = set()
    else:
        signature = _signature(model, layout, block, tta, out_dtype)
        if calibrate:
            signature["calibrate"] = [calibrate if calibrate == "auto" else int(calibrate),
                                      None if calibrate_bins is None else int(calibrate_bins)]
        dest = _open_destination(destination, layout, out_dtype, chunks, meta, signature, overwrite)
        write, done = dest.write, dest.done
    samples = list(np.ndindex(*layout.sample_shape))
    offsets = [a for a, _ in layout.pad]
    grid = _block_grid(layout, block, overlap)
    per_sample = len(grid)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=per_sample * len(samples), initial=len(done), unit="block", desc="predict_blocks")
    try:
        for sample in samples:
            def get(spatial, sample=sample):
                return layout.to_net(np.asarray(source[layout.index(sample, spatial)]))

            def key(core, sample=sample):
                return tuple(int(i) for i in sample) + tuple(int(s.start) for s in core)

            curves = None  # an image whose blocks a resumed run has all written needs none
            if calibrate and any(key(core) not in done for _, core, _ in grid):
                curves = _block_curves(model, layout, get, grid, net, calibrate, calibrate_bins)

            def put(core, pred, sample=sample, curves=curves):
                if curves is not None:
                    pred = apply_curves(pred, curves)
                dst, values = layout.crop(core, pred)
                write(layout.index(sample, dst), layout.from_net(_cast(values, out_dtype)))

            def finished(cores, key=key):
                if dest is not None:
                    dest.record([key(core) for core in cores])
                if bar is not None:
                    bar.update(len(cores))

            predict_tiles(lambda region, get=get: layout.read_padded(get, region), put, layout.padded, block,
                          overlap, layout.div, net, tta=tta, batch_pixels=batch_pixels,
                          skip=(lambda core, key=key: key(core) in done) if done else None, offsets=offsets,
                          done=finished)
    except OSError as e:
        where = f"; the {len(done)} finished blocks are recorded in {dest.progress_path}" if dest else ""
        raise OSError(f"predict_blocks: writing {destination} failed ({e}){where}: fix the cause (e.g. free disk "
                      "space) and call predict_blocks again with the same arguments to resume") from e
    finally:
        if bar is not None:
            bar.close()
    if dest is None:
        return out
    dest.finish()
    if _kind(dest.path) == "tiff":
        return dest.path
    zarr = require("zarr")
    return zarr.open_array(str(dest.path / "0") if _kind(dest.path) == "ome-zarr" else str(dest.path), mode="r")


# --------------------------------------------------------------------------- Dask

_WORKER_LOCK = threading.Lock()


def _worker_network(folder: str):
    """The model and its compiled network, loaded once per worker process (threads of a worker share them)."""
    with _WORKER_LOCK:
        return _cached_network(folder, os.getpid())


@functools.lru_cache(maxsize=4)
def _cached_network(folder: str, pid: int):
    model = _load_model(folder)
    return model, model._inference("mmse", *model.config.normalization())


def _dask_block(block: np.ndarray, *, folder: str, axes: str, shape: tuple, chunks: tuple, depth: dict,
                tta: bool, out_dtype: str, curves: dict | None = None, block_info=None) -> np.ndarray:
    """Predict one Dask chunk from the chunk plus its halo (``block``), as ``predict`` would in the whole image;
    ``curves``: the calibration curves of each sample (index tuple), applied to its prediction."""
    from .nets import apply_curves
    from .tiling import predict_batch
    model, net = _worker_network(folder)
    layout = BlockLayout(model.config, shape, axes)
    location = block_info[0]["chunk-location"]
    start = [int(sum(ch[:i])) for ch, i in zip(chunks, location)]
    size = [int(ch[i]) for ch, i in zip(chunks, location)]
    origin = [max(0, s - depth.get(k, 0)) for k, s in enumerate(start)]  # of the halo'd block in the image
    out = np.empty(size, np.dtype(out_dtype))
    spatial_dims = [layout.axes.index(a) for a in layout.spatial]
    sample_dims = [layout.axes.index(a) for a in layout.samples]
    yx = (len(layout.spatial) - 1, len(layout.spatial))
    for local in np.ndindex(*[size[k] for k in sample_dims]):
        sample = [start[k] + i - origin[k] for k, i in zip(sample_dims, local)]
        image = tuple(start[k] + i for k, i in zip(sample_dims, local))  # the sample's index in the whole image
        region, core = [], []
        for k, n, (a, _), padded in zip(spatial_dims, layout.n, layout.pad, layout.padded):
            c0, c1 = start[k] + a, start[k] + size[k] + a  # core in padded coordinates
            ctx = depth[k] - layout.div
            region.append(slice(max(0, (c0 - ctx) // layout.div * layout.div),
                                min(padded, -(-(c1 + ctx) // layout.div) * layout.div)))
            core.append(slice(c0, c1))

        def get(spatial, sample=sample):
            local_spatial = [slice(s.start - origin[k], s.stop - origin[k]) for s, k in zip(spatial, spatial_dims)]
            return layout.to_net(block[layout.index(sample, local_spatial)])

        pred = predict_batch(net, layout.read_padded(get, region)[np.newaxis], tta, yx)[0]
        inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, region))
        pred = pred[inner] if curves is None else apply_curves(pred[inner], curves[image])
        _, values = layout.crop(tuple(core), pred)  # cores lie inside the image: nothing is cropped
        out[layout.index(local, [slice(None)] * len(spatial_dims))] = layout.from_net(_cast(values, out.dtype))
    return out


def predict_dask(model_folder: str | os.PathLike | Any, array: Any, axes: str, *, tta: bool = False,
                 dtype: Any = "float32", calibrate: int | str = 0, calibrate_bins: int | None = None):
    """Denoise a Dask array lazily: a Dask array of the prediction, computed chunk by chunk.

    Parameters
    ----------
    model_folder : path or n2v_tf.N2V
        The model folder (each worker loads the model from it once); an ``N2V`` with a model folder is accepted.
    array : dask.array.Array or array-like
        The image (chunked any way along the spatial axes; a channel axis must be one chunk).
    axes : str
        Axes of ``array``; axes other than the model's spatial axes and ``C`` are predicted one by one.
    tta : bool
        Test-time augmentation.
    dtype : {'float32', 'input'} or numpy dtype
        Output type.
    calibrate, calibrate_bins
        N2V models: the intensity curve of :func:`predict_blocks` (``calibrate``), fitted here, when this function is
        called, on masked blocks of the default block shape read from ``array``, one image (sample) after the other;
        the workers apply it. The fit runs on this process, not on the cluster (``'auto'``: about 2 megapixels of
        block predictions per image).

    Returns
    -------
    dask.array.Array
        Same shape and chunks as ``array``; ``.compute()``, ``.to_zarr(...)`` or ``da.store`` run it with the current
        scheduler: threads by default, or a ``dask.distributed`` cluster when a ``Client`` is active.

    Notes
    -----
    Built on ``dask.array.map_overlap``: each chunk gets a halo of the receptive field plus ``2**unet_n_depth``
    pixels along the spatial axes (none beyond the image border), and is predicted as :meth:`n2v_tf.N2V.predict`
    predicts that part of the whole image (virtual padding at the borders), so the result equals it up to float32
    rounding. The model is passed to the workers as its folder path and loaded once per worker process.

    On a cluster (SLURM with ``dask_jobqueue.SLURMCluster``, Kubernetes with ``dask_kubernetes``), start the cluster,
    connect a ``dask.distributed.Client`` and call this function as on a laptop; the model folder and the input
    (e.g. a Zarr store) must be readable from every worker.
    """
    from .models import N2V
    from .nets import config_receptive_field
    from .tiling import context
    da = require("dask.array")
    if isinstance(model_folder, N2V):
        if model_folder.basedir is None:
            raise ValueError("predict_dask needs a model folder (the workers load the model from it); this N2V has "
                             "basedir=None: save it with N2V(config, name, basedir) first")
        model_folder = model_folder.logdir
    folder = str(Path(model_folder).resolve())
    model = _load_model(folder)
    c = model.config
    from .models import _check_calibrate
    _check_calibrate(calibrate, calibrate_bins, c.probabilistic)
    array = array if isinstance(array, da.Array) else da.asarray(array)
    layout = BlockLayout(c, array.shape, axes, "array")
    curves = None
    if calibrate:  # as predict_blocks with its default blocks fits them
        block = tuple(min(b, n) for b, n in zip(_default_block(c.n_dim), layout.n))
        grid = _block_grid(layout, block, config_receptive_field(c))
        net = model._inference("mmse", *c.normalization())
        curves = {}
        for sample in np.ndindex(*layout.sample_shape):
            def get(spatial, sample=sample):
                return layout.to_net(np.asarray(array[layout.index(sample, spatial)]))
            curves[tuple(int(i) for i in sample)] = _block_curves(model, layout, get, grid, net, calibrate,
                                                                  calibrate_bins)
    if "C" in layout.axes and len(array.chunks[layout.axes.index("C")]) > 1:
        array = array.rechunk({layout.axes.index("C"): -1})
    ctx = context(config_receptive_field(c), layout.div)
    depth = {layout.axes.index(a): ctx + layout.div for a in layout.spatial}
    # a chunk must be at least the halo deep, or map_overlap would need its neighbours' neighbours
    new_chunks = {}
    for k, d in depth.items():
        sizes = array.chunks[k]
        if len(sizes) > 1 and min(sizes) < d:
            n, parts = array.shape[k], max(1, array.shape[k] // max(d, max(sizes)))
            new_chunks[k] = tuple(n // parts + (i < n % parts) for i in range(parts))
    if new_chunks:
        array = array.rechunk(new_chunks)
    out_dtype = _output_dtype(dtype, array.dtype)
    full_depth = {k: depth.get(k, 0) for k in range(array.ndim)}
    block = functools.partial(_dask_block, folder=folder, axes=layout.axes, shape=layout.shape, chunks=array.chunks,
                              depth=full_depth, tta=tta, out_dtype=str(out_dtype), curves=curves)
    return da.map_overlap(block, array, depth=full_depth, boundary="none", trim=False, dtype=out_dtype,
                          chunks=array.chunks, meta=np.empty((0,) * array.ndim, out_dtype))
