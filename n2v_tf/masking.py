"""Blind-spot masking for Noise2Void, N2V2 and structN2V (pure NumPy).

Everything here works on whole batches ``(B, *spatial, C)`` with 2 or 3 spatial
axes through one code path, using flat indices and fancy indexing (no Python
loop over pixels). Randomness comes only from a ``numpy.random.Generator``
(``rng``: a Generator, an int seed, or None for fresh entropy).

References
----------
.. [1] Krull, Buchholz, Jug, "Noise2Void - Learning Denoising from Single Noisy
   Images", CVPR 2019.
.. [2] Höck, Buchholz, Jug et al., "N2V2 - Fixing Noise2Void Checkerboard
   Artifacts with Modified Sampling Strategies and a Tweaked Network
   Architecture", ECCV Workshops 2022.
.. [3] Broaddus, Krull, Weigert, Schmidt, Myers, "Removing Structured Noise with
   Self-Supervised Blind-Spot Networks" (structN2V), ISBI 2020.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

MANIPULATORS: tuple[str, ...] = ('uniform_withCP', 'uniform_withoutCP', 'normal_withoutCP', 'normal_additive',
                                 'normal_fitted', 'identity', 'mean', 'median')
Coords = tuple[np.ndarray, ...]
RngLike = Union[np.random.Generator, int, None]
_NORMAL_SIGMA = 4.0     # n2v's fixed sigma of normal_withoutCP (the radius is ignored there)
_MAX_ROUNDS = 64        # re-draw rounds of normal_withoutCP before the uniform fallback


def _as_rng(rng: RngLike) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _check_batch(X: np.ndarray, name: str = 'X') -> np.ndarray:
    if not isinstance(X, np.ndarray) or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise TypeError(f"{name} must be a numeric numpy array, got {type(X).__name__} "
                        f"{getattr(X, 'dtype', '')}".rstrip())
    if X.ndim not in (4, 5) or 0 in X.shape:
        raise ValueError(f"{name} must have shape (B, *spatial, C) with 2 or 3 non-empty spatial axes, got {X.shape}")
    return X


@dataclass(frozen=True)
class Manipulator:
    """A named pixel manipulator with its radius (n2v ``pm_*`` compatibility).

    Accepted wherever a manipulator name is accepted; its ``radius`` then replaces
    the ``radius`` argument (for ``normal_additive`` it is the noise sigma).
    Calling it like an n2v 0.3.3 manipulator, ``m(patch, coords, dims)`` with a
    spatial-only ``patch`` and a tuple of spatial index arrays, returns the ``(N,)``
    replacement values.
    """

    name: str
    radius: float = 5

    def __post_init__(self) -> None:
        _resolve(self.name, self.radius)

    def __call__(self, patch: np.ndarray, coords: Coords, dims: int, structN2Vmask=None) -> np.ndarray:
        if structN2Vmask is not None:
            warnings.warn("Manipulator.__call__ ignores structN2Vmask; use mask_batch(struct_mask=...)", stacklevel=2)
        if np.ndim(patch) != dims:
            raise ValueError(f"patch must have dims={dims} (spatial-only) axes, got shape {np.shape(patch)}")
        X = np.asarray(patch)[None, ..., None]
        full = (np.zeros(len(coords[0]), dtype=np.intp),) + tuple(np.asarray(c) for c in coords)
        return replacement_values(X, full, self.name, self.radius)[:, 0]


def _resolve(manipulator: Union[str, Manipulator], radius: float) -> tuple[str, float]:
    if isinstance(manipulator, Manipulator):
        manipulator, radius = manipulator.name, manipulator.radius
    if not isinstance(manipulator, str):
        raise TypeError(f"manipulator must be a name or a Manipulator (pm_* factory), got {type(manipulator).__name__}")
    if manipulator not in _STRATEGIES:
        raise ValueError(f"manipulator must be one of {MANIPULATORS}, got {manipulator!r}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)):
        raise TypeError(f"radius must be a number, got {type(radius).__name__}")
    if not (np.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    if manipulator != 'normal_additive' and radius != int(radius):
        raise ValueError(f"radius must be an integer for manipulator {manipulator!r}, got {radius}")
    return manipulator, radius


def box_size(perc_pix: float, n_dim: int) -> int:
    """Side of the stratification box that masks ``perc_pix`` percent of the pixels.

    Parameters
    ----------
    perc_pix : float
        Percentage of masked pixels, in (0, 100].
    n_dim : int
        Number of spatial dimensions.

    Returns
    -------
    int
        ``round((100 / perc_pix) ** (1 / n_dim))``, at least 1.

    Notes
    -----
    One pixel is masked per box of ``box**n_dim`` pixels. n2v 0.3.3 used the
    square root also in 3D, masking far fewer pixels than requested.
    """
    if isinstance(perc_pix, bool) or not isinstance(perc_pix, (int, float, np.integer, np.floating)):
        raise TypeError(f"perc_pix must be a number, got {type(perc_pix).__name__}")
    if not 0 < perc_pix <= 100:
        raise ValueError(f"perc_pix must be in (0, 100], got {perc_pix}")
    if isinstance(n_dim, bool) or not isinstance(n_dim, (int, np.integer)) or n_dim < 1:
        raise ValueError(f"n_dim must be a positive int, got {n_dim!r}")
    return max(1, int(np.round((100.0 / perc_pix) ** (1.0 / n_dim))))


def stratified_coords(n_patches: int, shape: Sequence[int], perc_pix: float, rng: RngLike = None) -> Coords:
    """Draw one uniformly random pixel per stratification box, for a whole batch.

    Parameters
    ----------
    n_patches : int
        Batch size B.
    shape : sequence of int
        Spatial patch shape (2 or 3 axes).
    perc_pix : float
        Percentage of pixels to mask, in (0, 100].
    rng : numpy.random.Generator, int or None
        Random generator or seed.

    Returns
    -------
    tuple of numpy.ndarray
        ``(batch_idx, idx_axis0, idx_axis1[, idx_axis2])``, 1-D int arrays of equal length.

    Notes
    -----
    Each patch is tiled by ``ceil(shape / box)`` boxes per axis; a point is drawn
    uniformly in every box and kept if inside the patch, so masked pixels are
    spread evenly over the patch (stratified sampling of [1]_).

    References
    ----------
    .. [1] Krull et al., "Noise2Void", CVPR 2019.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must have 2 or 3 positive sides, got {shape}")
    if isinstance(n_patches, bool) or not isinstance(n_patches, (int, np.integer)) or n_patches < 0:
        raise ValueError(f"n_patches must be an int >= 0, got {n_patches!r}")
    n_dim, box = len(shape), box_size(perc_pix, len(shape))
    expected = np.prod(shape) / box ** n_dim
    if expected < 1:
        raise ValueError(f"perc_pix (n2v_perc_pix)={perc_pix} masks no pixel in a patch of shape {shape}: box side "
                         f"{box} gives {expected:.3g} < 1 expected masked pixels per patch; increase it")
    rng = _as_rng(rng)
    origins = np.indices([-(-s // box) for s in shape]).reshape(n_dim, 1, -1) * box     # (n_dim, 1, M)
    pts = origins + rng.integers(0, box, size=(n_dim, n_patches, origins.shape[-1]))   # (n_dim, B, M)
    inside = np.all(pts < np.array(shape).reshape(n_dim, 1, 1), axis=0)
    batch = np.broadcast_to(np.arange(n_patches)[:, None], inside.shape)[inside]
    return (batch,) + tuple(p[inside] for p in pts)


def _window(shape_full: tuple[int, ...], coords: Coords, radius: int):
    """Flat start index (N,), flat in-patch offsets (n,) and local centre index (N,) of each window."""
    spatial = np.array(shape_full[1:])
    c = np.stack(coords[1:])
    widths = np.minimum(2 * int(radius) + 1, spatial)
    starts = np.clip(c - int(radius), 0, (spatial - widths)[:, None])
    flat_start = np.ravel_multi_index((coords[0],) + tuple(starts), shape_full)
    offsets = np.ravel_multi_index(tuple(np.indices(widths).reshape(len(widths), -1)), tuple(spatial))
    return flat_start, offsets, np.ravel_multi_index(tuple(c - starts), tuple(widths))


def _gather_window(Xf, shape_full, coords, radius, with_centre: bool) -> np.ndarray:
    """Window values as (C, N, n) (order inside a window is arbitrary)."""
    start, offsets, centre = _window(shape_full, coords, radius)
    idx = start[:, None] + offsets[None, :]                                     # (N, n) flat indices
    if not with_centre:                                                          # swap-remove the centre
        rows = np.arange(idx.shape[0])
        idx[rows, centre] = idx[:, -1]
        idx = idx[:, :-1]
    return Xf.T[:, idx]


def _median_last(w: np.ndarray) -> np.ndarray:
    """Median along the last axis with one partition (np.median partitions twice for even sizes)."""
    m = w.shape[-1]
    part = np.partition(w, m // 2, axis=-1)
    return part[..., m // 2] if m % 2 else (part[..., :m // 2].max(axis=-1) + part[..., m // 2]) / 2


def _uniform(Xf, shape_full, coords, radius, rng, with_centre: bool) -> np.ndarray:
    start, offsets, centre = _window(shape_full, coords, radius)
    if with_centre:
        k = rng.integers(0, offsets.size, size=start.size)
    else:
        k = rng.integers(0, offsets.size - 1, size=start.size)
        k += k >= centre                                                         # skip the centre's index
    return Xf[start + offsets[k]]


def _normal_without_cp(Xf, shape_full, coords, radius, rng) -> np.ndarray:
    spatial = np.array(shape_full[1:])[:, None]
    c = np.stack(coords[1:])
    pos, todo = c.copy(), np.arange(c.shape[1])
    for _ in range(_MAX_ROUNDS):                                                 # rounds, not pixels
        if todo.size == 0:
            break
        draw = np.clip(c[:, todo] + np.rint(rng.normal(0.0, _NORMAL_SIGMA, size=(c.shape[0], todo.size))).astype(np.intp),
                       0, spatial - 1)
        pos[:, todo] = draw
        todo = todo[np.all(draw == c[:, todo], axis=0)]
    flat = np.ravel_multi_index((coords[0],) + tuple(pos), shape_full)
    if todo.size:
        warnings.warn(f"normal_withoutCP: {todo.size} coordinates fell back to a uniform non-centre patch pixel "
                      f"after {_MAX_ROUNDS} rounds", RuntimeWarning, stacklevel=3)
        n_pix = int(np.prod(spatial))
        centre = np.ravel_multi_index(tuple(c[:, todo]), tuple(spatial[:, 0]))
        k = rng.integers(0, n_pix - 1, size=todo.size)
        flat[todo] = coords[0][todo] * n_pix + k + (k >= centre)
    return Xf[flat]


def _fitted(Xf, shape_full, coords, radius, rng) -> np.ndarray:
    win = _gather_window(Xf, shape_full, coords, radius, True)
    return rng.normal(win.mean(axis=-1), win.std(axis=-1)).T


def _centre(Xf, shape_full, coords) -> np.ndarray:
    return Xf[np.ravel_multi_index(coords, shape_full)]


_STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    'uniform_withCP': lambda Xf, s, c, r, rng: _uniform(Xf, s, c, r, rng, True),
    'uniform_withoutCP': lambda Xf, s, c, r, rng: _uniform(Xf, s, c, r, rng, False),
    'normal_withoutCP': _normal_without_cp,
    'normal_additive': lambda Xf, s, c, r, rng: _centre(Xf, s, c) + rng.normal(0.0, r, size=(c[0].size, Xf.shape[1])),
    'normal_fitted': _fitted,
    'identity': lambda Xf, s, c, r, rng: _centre(Xf, s, c).copy(),
    'mean': lambda Xf, s, c, r, rng: _gather_window(Xf, s, c, r, False).mean(axis=-1).T,
    'median': lambda Xf, s, c, r, rng: _median_last(_gather_window(Xf, s, c, r, False)).T,
}


def replacement_values(X: np.ndarray, coords: Coords, manipulator: Union[str, Manipulator] = 'uniform_withCP',
                       radius: float = 5, rng: RngLike = None) -> np.ndarray:
    """Values that replace the pixels at ``coords`` (the N2V blind spots).

    Parameters
    ----------
    X : numpy.ndarray
        Batch ``(B, *spatial, C)`` with 2 or 3 spatial axes; not modified.
    coords : tuple of numpy.ndarray
        ``(batch_idx, idx_axis0, ...)`` as returned by :func:`stratified_coords`.
    manipulator : str or Manipulator
        One of :data:`MANIPULATORS` or a ``pm_*`` object (whose radius wins).
    radius : float
        Window radius; the noise sigma for ``normal_additive``.
    rng : numpy.random.Generator, int or None
        Random generator or seed.

    Returns
    -------
    numpy.ndarray
        ``(N, C)`` values (X's float dtype, else float32).

    Notes
    -----
    The window is ``(2r+1)**n_dim`` pixels shifted to lie inside the patch: per
    axis ``start = clip(c - r, 0, s - w)`` with ``w = min(2r+1, s)``, so every
    window has the same size. Strategies:

    - ``uniform_withCP``: a uniform window pixel, centre allowed ([1]_).
    - ``uniform_withoutCP``: a uniform window pixel other than the centre.
    - ``normal_withoutCP``: offsets ``round(N(0, 4))`` per axis, clipped to the
      patch; draws landing on the centre are re-drawn (in vectorised rounds).
    - ``normal_additive``: centre value plus ``N(0, radius)`` noise per channel.
    - ``normal_fitted``: ``N(mean, std)`` of the window including the centre.
    - ``identity``: the centre value (no blind spot; for debugging only).
    - ``mean`` / ``median``: of the shifted window *excluding* the centre (N2V2, [2]_).

    Neighbour-picking strategies use the same neighbour position for all channels.

    References
    ----------
    .. [1] Krull et al., "Noise2Void", CVPR 2019.
    .. [2] Höck et al., "N2V2", ECCV Workshops 2022.
    """
    X = _check_batch(X)
    name, radius = _resolve(manipulator, radius)
    shape_full = X.shape[:-1]
    if not isinstance(coords, (tuple, list)) or len(coords) != len(shape_full):
        raise ValueError(f"coords must be a tuple of {len(shape_full)} index arrays (batch + spatial), "
                         f"got {type(coords).__name__} of length {len(coords) if hasattr(coords, '__len__') else '?'}")
    coords = tuple(np.asarray(c, dtype=np.intp).ravel() for c in coords)
    if len({c.size for c in coords}) != 1:
        raise ValueError(f"coords arrays must have equal lengths, got {[c.size for c in coords]}")
    for axis, (c, s) in enumerate(zip(coords, shape_full)):
        if c.size and (c.min() < 0 or c.max() >= s):
            raise ValueError(f"coords[{axis}] must lie in [0, {s}), got values in [{c.min()}, {c.max()}]")
    needs_neighbour = (name in ('uniform_withoutCP', 'mean', 'median')
                       and np.prod(np.minimum(2 * int(radius) + 1, shape_full[1:])) < 2)
    if needs_neighbour or (name == 'normal_withoutCP' and np.prod(shape_full[1:]) < 2):
        raise ValueError(f"manipulator {name!r} needs a neighbour pixel but radius={radius} on patches of shape "
                         f"{shape_full[1:]} leaves only the centre")
    out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float32
    Xf = X.reshape(-1, X.shape[-1])
    return np.asarray(_STRATEGIES[name](Xf, shape_full, coords, radius, _as_rng(rng)), dtype=out_dtype)


def struct_hide_coords(coords: Coords, struct_mask: np.ndarray, shape: Sequence[int]) -> tuple[Coords, np.ndarray]:
    """Coordinates hidden by a structN2V mask around every active coordinate.

    Parameters
    ----------
    coords : tuple of numpy.ndarray
        ``(batch_idx, idx_axis0, ...)`` of the N active pixels.
    struct_mask : numpy.ndarray
        0/1 array with one axis per spatial axis, odd sides; its centre is the active pixel.
    shape : sequence of int
        Spatial patch shape.

    Returns
    -------
    coords_hidden : tuple of numpy.ndarray
        ``(batch_idx, idx_axis0, ...)`` of the hidden pixels that fall inside the patch.
    parent_index : numpy.ndarray
        For every hidden pixel, the index (into ``coords``) of its active pixel.

    Notes
    -----
    Every 1-entry of the mask other than the centre gives an offset; the hidden
    pixels are the active pixels shifted by those offsets ([1]_). The caller's
    mask is never modified (n2v 0.3.3 zeroed its centre in place).

    References
    ----------
    .. [1] Broaddus et al., "Removing Structured Noise with Self-Supervised Blind-Spot Networks", ISBI 2020.
    """
    shape = tuple(int(s) for s in shape)
    m = np.asarray(struct_mask)
    if m.ndim != len(shape):
        raise ValueError(f"struct_mask must have {len(shape)} axes (one per spatial axis), got shape {m.shape}")
    if any(s % 2 == 0 for s in m.shape):
        raise ValueError(f"struct_mask must have odd sides, got shape {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"struct_mask values must be 0 or 1, got {np.unique(m)[:10].tolist()}")
    if len(coords) != len(shape) + 1:
        raise ValueError(f"coords must hold {len(shape) + 1} arrays (batch + spatial), got {len(coords)}")
    centre = np.array(m.shape) // 2
    offsets = np.argwhere(m == 1) - centre
    offsets = offsets[np.any(offsets != 0, axis=1)]                              # (K, n_dim)
    c = np.stack([np.asarray(a, dtype=np.intp).ravel() for a in coords[1:]])    # (n_dim, N)
    pos = c[:, None, :] + offsets.T[:, :, None]                                  # (n_dim, K, N)
    inside = np.all((pos >= 0) & (pos < np.array(shape).reshape(-1, 1, 1)), axis=0)
    parent = np.broadcast_to(np.arange(c.shape[1]), inside.shape)[inside]
    return (np.asarray(coords[0], dtype=np.intp).ravel()[parent],) + tuple(p[inside] for p in pos), parent


#: How ``mask_batch`` fills the pixels a structN2V mask hides (``N2VConfig.n2v_struct_replacement``).
STRUCT_REPLACEMENTS = ('patch', 'local')
#: rejection-sampling rounds of the 'local' struct replacement before a pixel falls back to 'patch'
_LOCAL_ROUNDS = 32


def _local_sources(hidden: Coords, blocked: np.ndarray, radius: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of a random pixel within ``radius`` (box) of every hidden pixel, not ``blocked``; -1 where none.

    Vectorised rejection sampling: every round redraws the offsets of the pixels still without a source.
    """
    shape_full = blocked.shape
    spatial = np.array(shape_full[1:]).reshape(-1, 1)
    pos = np.stack(hidden[1:])                                                   # (n_dim, H)
    src = np.full(pos.shape[1], -1, dtype=np.intp)
    todo = np.arange(pos.shape[1])
    for _ in range(_LOCAL_ROUNDS):
        if not todo.size:
            break
        cand = pos[:, todo] + rng.integers(-radius, radius + 1, size=(pos.shape[0], todo.size))
        inside = np.all((cand >= 0) & (cand < spatial), axis=0)
        flat = np.full(todo.size, -1, dtype=np.intp)
        flat[inside] = np.ravel_multi_index((hidden[0][todo[inside]],) + tuple(cand[:, inside]), shape_full)
        ok = inside.copy()
        ok[inside] = ~blocked.ravel()[flat[inside]]
        src[todo[ok]] = flat[ok]
        todo = todo[~ok]
    return src


def mask_batch(X: np.ndarray, perc_pix: float = 0.198, manipulator: Union[str, Manipulator] = 'uniform_withCP',
               radius: float = 5, rng: RngLike = None, struct_mask: np.ndarray | None = None,
               struct_replacement: str = 'patch') -> tuple[np.ndarray, np.ndarray]:
    """Mask a training batch: N2V input and ``[target, mask]`` output.

    Parameters
    ----------
    X : numpy.ndarray
        Batch ``(B, *spatial, C)``, 2 or 3 spatial axes; not modified.
    perc_pix : float
        Percentage of masked pixels (n2v ``n2v_perc_pix``).
    manipulator : str or Manipulator
        Replacement strategy, see :func:`replacement_values`.
    radius : float
        Neighbourhood radius (sigma for ``normal_additive``).
    rng : numpy.random.Generator, int or None
        Random generator or seed (same seed, same batch).
    struct_mask : numpy.ndarray, optional
        structN2V mask, see :func:`struct_hide_coords`.
    struct_replacement : {'patch', 'local'}
        What a hidden pixel gets: ``'patch'``, the value of a uniformly drawn pixel of the same patch;
        ``'local'``, the value of a uniformly drawn pixel within ``radius`` along every axis (a box centred on the
        hidden pixel, cut at the patch border) that is neither active nor hidden by any mask in the batch (a pixel
        with no such source within 32 draws falls back to ``'patch'``).

    Returns
    -------
    X_masked : numpy.ndarray
        float32 copy of X with replacement values at the active pixels.
    Y : numpy.ndarray
        float32 ``concatenate([X, mask], axis=-1)``; ``mask`` has C channels, 1 at
        the active pixels (from the sampled coordinates) and 0 elsewhere.

    Notes
    -----
    With ``struct_mask`` every hidden pixel (mask offsets around an active pixel,
    inside the patch) gets the value of another pixel (all channels of that pixel) that carries no
    information about the noise at the active pixel; hidden pixels are not in the loss mask. With
    ``'patch'`` that is a uniformly drawn pixel of the same patch other than its active pixel and
    itself, which keeps the patch's intensity distribution but makes the footprint stand out: a
    row of values from all over the patch marks where the blind spots are, so the network can learn
    one behaviour for masked pixels (the only ones in the loss) and another for the unmasked pixels
    it sees at prediction. With ``'local'`` the source is a random pixel near the hidden one and
    outside every footprint, so the masked input looks like an unmasked one, as N2V's own
    ``uniform_withCP`` replacement does (``benchmarks/README.md``, issue 15, fourth session). The replacement
    values of the active pixels are computed after hiding, so a neighbour picked inside a footprint
    is already hidden; an active pixel lying in another one's footprint keeps
    its hidden value but stays in the loss mask. (n2v 0.3.3 instead
    wrote ``U(-2, 2)`` noise and clipped footprints to the patch.)

    References
    ----------
    .. [1] Krull et al., "Noise2Void", CVPR 2019.
    .. [2] Broaddus et al., "structN2V", ISBI 2020.
    """
    X32 = np.asarray(_check_batch(X), dtype=np.float32)
    name, radius = _resolve(manipulator, radius)
    rng = _as_rng(rng)
    shape_full, C = X32.shape[:-1], X32.shape[-1]
    coords = stratified_coords(shape_full[0], shape_full[1:], perc_pix, rng)
    active = np.ravel_multi_index(coords, shape_full)
    Xm = np.array(X32, dtype=np.float32, order='C', copy=True)
    Xm_f = Xm.reshape(-1, C)
    keep = slice(None)
    if struct_replacement not in STRUCT_REPLACEMENTS:
        raise ValueError(f"struct_replacement must be one of {STRUCT_REPLACEMENTS}, got {struct_replacement!r}")
    if struct_mask is not None:
        hidden, parent = struct_hide_coords(coords, struct_mask, shape_full[1:])
        hidden_flat = np.ravel_multi_index(hidden, shape_full)
        n_pix = int(np.prod(shape_full[1:]))
        if hidden_flat.size and n_pix < 3:
            raise ValueError(f"struct_mask needs patches of >= 3 pixels to draw hidden values, got shape {shape_full[1:]}")
        src = np.full(hidden_flat.size, -1, dtype=np.intp)
        if hidden_flat.size and struct_replacement == 'local':
            blocked = np.zeros(shape_full, dtype=bool)                         # blind spots and footprints
            blocked.ravel()[np.concatenate([active, hidden_flat])] = True
            src = _local_sources(hidden, blocked, max(1, int(np.ceil(radius))), rng)
        rest = src < 0
        if rest.any():                            # a uniform pixel of the patch other than the parent and itself
            skip = np.sort(np.stack([active[parent[rest]], hidden_flat[rest]]) - hidden[0][rest] * n_pix, axis=0)
            k = rng.integers(0, n_pix - 2, size=int(rest.sum()))
            k += k >= skip[0]
            k += k >= skip[1]
            src[rest] = hidden[0][rest] * n_pix + k
        if hidden_flat.size:
            Xm_f[hidden_flat] = Xm_f[src]
        keep = ~np.isin(active, hidden_flat)
    values = replacement_values(Xm, coords, name, radius, rng)
    Xm_f[active[keep]] = values[keep]
    Y = np.empty(shape_full + (2 * C,), dtype=np.float32)
    Y[..., :C] = X32
    Y[..., C:] = 0.0
    Y.reshape(-1, 2 * C)[active, C:] = 1.0                                      # mask from coords, not values
    return Xm, Y


def manipulate_val_data(X_val: np.ndarray, Y_val: np.ndarray, perc_pix: float = 0.198, shape: Sequence[int] = (64, 64),
                        value_manipulation: Union[str, Manipulator] = 'uniform_withCP', rng: RngLike = None) -> None:
    """Mask validation data in place (n2v 0.3.3 API).

    Parameters
    ----------
    X_val : numpy.ndarray
        Float batch ``(B, *spatial, C)``; replacement values are written into it.
    Y_val : numpy.ndarray
        Array ``(B, *spatial, 2C)`` filled with ``[target, mask]``.
    perc_pix : float
        Percentage of masked pixels.
    shape : sequence of int
        Patch shape; only its length (2 or 3) is used, as in n2v, and must match X_val.
    value_manipulation : str or Manipulator
        Manipulator name (radius 5) or ``pm_*`` object.
    rng : numpy.random.Generator, int or None
        Random generator or seed; None means seed 0, so validation masking is reproducible.

    Notes
    -----
    As in n2v, the target channels are zero outside the mask (``target = X * mask``),
    which suits both n2v's loss ``sum((target - pred*mask)**2)`` and a masked MSE.
    """
    X_val = _check_batch(X_val, 'X_val')
    if not np.issubdtype(X_val.dtype, np.floating):
        raise TypeError(f"X_val must be a float array (written in place), got dtype {X_val.dtype}")
    if len(shape) != X_val.ndim - 2:
        raise ValueError(f"shape must have one entry per spatial axis of X_val {X_val.shape}, got {tuple(shape)}")
    C = X_val.shape[-1]
    if not isinstance(Y_val, np.ndarray) or Y_val.shape != X_val.shape[:-1] + (2 * C,):
        raise ValueError(f"Y_val must be an array of shape {X_val.shape[:-1] + (2 * C,)}, "
                         f"got {getattr(Y_val, 'shape', type(Y_val).__name__)}")
    name, radius = _resolve(value_manipulation, 5)
    X_masked, Y = mask_batch(X_val, perc_pix, name, radius, np.random.default_rng(0) if rng is None else rng)
    Y_val[..., :C] = Y[..., :C] * Y[..., C:]
    Y_val[..., C:] = Y[..., C:]
    X_val[...] = X_masked


def pm_uniform_withCP(local_sub_patch_radius: int) -> Manipulator:
    """n2v factory: uniform neighbour, centre allowed."""
    return Manipulator('uniform_withCP', local_sub_patch_radius)


def pm_uniform_withoutCP(local_sub_patch_radius: int) -> Manipulator:
    """n2v factory: uniform neighbour, centre excluded."""
    return Manipulator('uniform_withoutCP', local_sub_patch_radius)


def pm_normal_withoutCP(local_sub_patch_radius: int) -> Manipulator:
    """n2v factory: Gaussian (sigma 4) neighbour, centre excluded; the radius is unused, as in n2v."""
    return Manipulator('normal_withoutCP', local_sub_patch_radius)


def pm_normal_additive(pixel_gauss_sigma: float) -> Manipulator:
    """n2v factory: centre value plus Gaussian noise of the given sigma."""
    return Manipulator('normal_additive', pixel_gauss_sigma)


def pm_normal_fitted(local_sub_patch_radius: int) -> Manipulator:
    """n2v factory: draw from N(mean, std) of the window."""
    return Manipulator('normal_fitted', local_sub_patch_radius)


def pm_identity(local_sub_patch_radius: int) -> Manipulator:
    """n2v factory: keep the centre value."""
    return Manipulator('identity', local_sub_patch_radius)


def pm_mean(local_sub_patch_radius: int) -> Manipulator:
    """N2V2 factory: mean of the window without the centre."""
    return Manipulator('mean', local_sub_patch_radius)


def pm_median(local_sub_patch_radius: int) -> Manipulator:
    """N2V2 factory: median of the window without the centre."""
    return Manipulator('median', local_sub_patch_radius)


def _yx(x: np.ndarray, yx_axes: Sequence[int]) -> tuple[int, int]:
    if np.ndim(x) < 2 or len(yx_axes) != 2:
        raise ValueError(f"yx_axes must name 2 axes of an array with >= 2 axes, got {tuple(yx_axes)} for ndim {np.ndim(x)}")
    axes = tuple(int(a) % np.ndim(x) if -np.ndim(x) <= int(a) < np.ndim(x) else -1 for a in yx_axes)
    if -1 in axes or axes[0] == axes[1]:
        raise ValueError(f"yx_axes must be 2 distinct valid axes for ndim {np.ndim(x)}, got {tuple(yx_axes)}")
    return axes


def tta_forward(x: np.ndarray, yx_axes: Sequence[int] = (-3, -2)) -> list[np.ndarray]:
    """The 8 rotations/flips of the YX plane (test-time augmentation).

    Parameters
    ----------
    x : numpy.ndarray
        Image, e.g. ``(Y, X, C)`` or ``(Z, Y, X, C)``.
    yx_axes : pair of int
        The Y and X axes (default: the two before the channel axis).

    Returns
    -------
    list of numpy.ndarray
        ``rot90(x, k)`` for k = 0..3, then the same four flipped along X.

    Notes
    -----
    Only the YX plane is transformed; Z is never mixed with Y (n2v 0.3.3 rotated
    the first two axes, i.e. Z and Y, on 3D data).
    """
    axes = _yx(x, yx_axes)
    rots = [np.rot90(x, k, axes=axes) for k in range(4)]
    return rots + [np.flip(r, axis=axes[1]) for r in rots]


def tta_backward(x_aug: Sequence[np.ndarray], yx_axes: Sequence[int] = (-3, -2)) -> np.ndarray:
    """Undo :func:`tta_forward` on the 8 (processed) arrays and average them.

    Parameters
    ----------
    x_aug : sequence of 8 numpy.ndarray
        Outputs for the arrays of :func:`tta_forward`, in the same order.
    yx_axes : pair of int
        The Y and X axes used in :func:`tta_forward`.

    Returns
    -------
    numpy.ndarray
        Mean of the de-augmented arrays.
    """
    if len(x_aug) != 8:
        raise ValueError(f"x_aug must hold the 8 arrays of tta_forward, got {len(x_aug)}")
    axes = _yx(x_aug[0], yx_axes)
    back = [np.rot90(np.flip(a, axis=axes[1]) if i >= 4 else a, -(i % 4), axes=axes) for i, a in enumerate(x_aug)]
    return np.mean(back, axis=0)
