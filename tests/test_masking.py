"""Behavioural tests for n2v_tf.masking (pure NumPy; small, seeded, fast)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# masking.py is pure NumPy: load it by path so that these tests neither pay for nor depend on the
# TensorFlow import done by n2v_tf/__init__.py (the package re-exports the same code).
_PATH = Path(__file__).resolve().parents[1] / 'n2v_tf' / 'masking.py'
_spec = importlib.util.spec_from_file_location('n2v_tf_masking_standalone', _PATH)
M = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)


@pytest.fixture(autouse=True)
def _seed():
    """Override conftest's keras seeding fixture: these tests are pure NumPy and pass explicit seeds."""
    yield

NDIMS = (2, 3)
SHAPES = {2: (32, 40), 3: (8, 16, 20)}
PERC = {2: 1.0, 3: 2.0}          # box 10 in 2D, round(50**(1/3)) = 4 in 3D


def unique_batch(B, shape, C=1):
    """Float32 batch whose values encode the pixel position (exact in float32)."""
    n = B * int(np.prod(shape))
    base = np.arange(n, dtype=np.float32).reshape((B,) + tuple(shape))
    return np.stack([base + 100000 * c for c in range(C)], axis=-1)


def decode(values, shape_full):
    """Position tuple (batch, *spatial) of values produced from unique_batch channel 0."""
    return np.unravel_index(np.asarray(values).astype(np.int64), shape_full)


def window_bounds(c, s, r):
    w = min(2 * r + 1, s)
    start = int(np.clip(c - r, 0, s - w))
    return start, start + w


def edge_coords(B, shape, rng):
    """Random coords plus the patch corners, to exercise the shifted windows."""
    n = 40
    coords = [rng.integers(0, B, n)] + [rng.integers(0, s, n) for s in shape]
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape], indexing='ij')).reshape(len(shape), -1)
    coords = [np.concatenate([coords[0], np.zeros(corners.shape[1], int)])] + \
             [np.concatenate([c, k]) for c, k in zip(coords[1:], corners)]
    return tuple(coords)


# ---------------------------------------------------------------- box size and stratification
def test_box_size_values():
    assert M.box_size(0.198, 2) == 22
    assert M.box_size(0.198, 3) == 8            # n2v 0.3.3 used sqrt -> 22 in 3D
    assert M.box_size(100, 2) == 1
    assert M.box_size(1.0, 2) == 10
    for bad in (0, -1, 100.5):
        with pytest.raises(ValueError, match='perc_pix'):
            M.box_size(bad, 2)


@pytest.mark.parametrize('n_dim', NDIMS)
def test_one_point_per_box_when_shape_is_multiple(n_dim):
    box = M.box_size(PERC[n_dim], n_dim)
    nb = (2, 3) if n_dim == 2 else (2, 1, 3)
    shape = tuple(b * box for b in nb)
    coords = M.stratified_coords(5, shape, PERC[n_dim], rng=1)
    assert len(coords) == n_dim + 1 and len({c.size for c in coords}) == 1
    assert coords[0].size == 5 * int(np.prod(nb))
    box_id = np.ravel_multi_index(tuple(c // box for c in coords[1:]), nb)
    for b in range(5):
        assert sorted(box_id[coords[0] == b]) == list(range(int(np.prod(nb))))   # exactly one per box


@pytest.mark.parametrize('n_dim', NDIMS)
def test_masked_fraction_and_spread(n_dim):
    shape = SHAPES[n_dim]                       # not a multiple of the box
    box = M.box_size(PERC[n_dim], n_dim)
    B = 400
    coords = M.stratified_coords(B, shape, PERC[n_dim], rng=2)
    for c, s in zip(coords[1:], shape):
        assert c.min() >= 0 and c.max() < s
    per_patch = np.bincount(coords[0], minlength=B)
    assert per_patch.min() >= 1
    assert abs(per_patch.mean() / (np.prod(shape) / box ** n_dim) - 1) < 0.05
    # every box of every patch, partial ones included, receives points over the batch
    nb = [-(-s // box) for s in shape]
    hit = np.bincount(np.ravel_multi_index(tuple(c // box for c in coords[1:]), nb), minlength=np.prod(nb))
    assert hit.min() > 0


def test_stratified_rejects_useless_perc_pix():
    with pytest.raises(ValueError, match=r'perc_pix.*\(16, 16\).*increase'):
        M.stratified_coords(2, (16, 16), 0.198)
    with pytest.raises(ValueError, match='perc_pix'):
        M.mask_batch(np.zeros((1, 8, 8, 8, 1), np.float32), perc_pix=0.01)
    with pytest.raises(ValueError, match='shape'):
        M.stratified_coords(2, (16,), 10)


# ---------------------------------------------------------------- mask_batch, all manipulators
@pytest.mark.parametrize('manipulator', M.MANIPULATORS)
@pytest.mark.parametrize('n_dim', NDIMS)
def test_mask_batch_contract(n_dim, manipulator):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3,) + SHAPES[n_dim] + (2,)).astype(np.float32)
    X0 = X.copy()
    Xm, Y = M.mask_batch(X, PERC[n_dim], manipulator, radius=2, rng=4)
    np.testing.assert_array_equal(X, X0)                        # input untouched
    assert Xm.dtype == Y.dtype == np.float32
    assert Xm.shape == X.shape and Y.shape == X.shape[:-1] + (4,)
    np.testing.assert_array_equal(Y[..., :2], X)                # targets = X
    mask = Y[..., 2:]
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask[..., 0], mask[..., 1])   # same coords in all channels
    np.testing.assert_array_equal((Xm != X).any(-1) & (mask[..., 0] == 0), False)   # only masked pixels change
    coords = M.stratified_coords(3, SHAPES[n_dim], PERC[n_dim], rng=np.random.default_rng(4))
    expected = np.zeros(X.shape[:-1], np.float32)
    expected[coords] = 1
    np.testing.assert_array_equal(mask[..., 0], expected)       # mask written from the sampled coords


@pytest.mark.parametrize('manipulator', ['uniform_withoutCP', 'normal_withoutCP'])
@pytest.mark.parametrize('n_dim', NDIMS)
def test_changed_pixels_equal_mask(n_dim, manipulator):
    X = unique_batch(2, SHAPES[n_dim])
    Xm, Y = M.mask_batch(X, PERC[n_dim], manipulator, rng=5)
    np.testing.assert_array_equal(Xm[..., 0] != X[..., 0], Y[..., 1] == 1)


@pytest.mark.parametrize('manipulator', M.MANIPULATORS)
def test_reproducible_with_seed(manipulator):
    X = np.random.default_rng(0).normal(size=(4, 24, 24, 1)).astype(np.float32)
    a = M.mask_batch(X, 2.0, manipulator, rng=7)
    b = M.mask_batch(X, 2.0, manipulator, rng=np.random.default_rng(7))
    c = M.mask_batch(X, 2.0, manipulator, rng=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])


# ---------------------------------------------------------------- replacement semantics
@pytest.mark.parametrize('n_dim', NDIMS)
@pytest.mark.parametrize('manipulator,radius', [('uniform_withCP', 2), ('uniform_withoutCP', 2),
                                                ('uniform_withoutCP', 1), ('normal_withoutCP', 5)])
def test_neighbour_positions(n_dim, manipulator, radius):
    shape = SHAPES[n_dim]
    X = unique_batch(3, shape)
    coords = edge_coords(3, shape, np.random.default_rng(9))
    coords = tuple(np.tile(c, 50) for c in coords)              # many draws per coordinate
    vals = M.replacement_values(X, coords, manipulator, radius, rng=10)
    assert vals.shape == (coords[0].size, 1)
    src = decode(vals[:, 0], X.shape[:-1])
    np.testing.assert_array_equal(src[0], coords[0])            # same patch
    at_centre = np.all([s == c for s, c in zip(src[1:], coords[1:])], axis=0)
    if manipulator == 'uniform_withCP':
        assert 0 < at_centre.mean() < 0.2                       # centre allowed, ~1/n of the draws
    else:
        assert not at_centre.any()
    if manipulator.startswith('uniform'):
        for s_ax, c_ax, size in zip(src[1:], coords[1:], shape):
            lo, hi = np.array([window_bounds(c, size, radius) for c in c_ax]).T
            assert np.all((s_ax >= lo) & (s_ax < hi))
        if radius == 1 and manipulator == 'uniform_withoutCP':  # every neighbour of an inner pixel is drawn
            inner = np.all([(c > 0) & (c < s - 1) for c, s in zip(coords[1:], shape)], axis=0)
            d = np.stack([s - c for s, c in zip(src[1:], coords[1:])], 1)[inner]
            assert len(np.unique(d, axis=0)) == 3 ** n_dim - 1


def test_normal_withoutcp_tiny_patches():
    for shape in [(1, 2), (2, 2, 1)]:
        X = unique_batch(2, shape)
        coords = M.stratified_coords(2, shape, 100, rng=0)
        coords = tuple(np.tile(c, 30) for c in coords)
        src = decode(M.replacement_values(X, coords, 'normal_withoutCP', rng=1)[:, 0], X.shape[:-1])
        assert not np.all([s == c for s, c in zip(src, coords)], axis=0).any()
    with pytest.raises(ValueError, match='neighbour'):
        M.replacement_values(np.zeros((1, 1, 1, 1)), (np.zeros(1, int),) * 3, 'normal_withoutCP')
    with pytest.raises(ValueError, match='radius=0'):
        M.replacement_values(np.zeros((1, 4, 4, 1)), (np.zeros(1, int),) * 3, 'median', radius=0)


@pytest.mark.parametrize('n_dim', NDIMS)
def test_same_neighbour_for_all_channels(n_dim):
    X = unique_batch(2, SHAPES[n_dim], C=3)
    for manipulator in ('uniform_withCP', 'uniform_withoutCP', 'normal_withoutCP'):
        Xm, Y = M.mask_batch(X, PERC[n_dim], manipulator, rng=11)
        m = Y[..., 3] == 1
        for c in (1, 2):
            np.testing.assert_array_equal(Xm[..., c][m] - 100000 * c, Xm[..., 0][m])


@pytest.mark.parametrize('n_dim', NDIMS)
def test_identity_returns_original(n_dim):
    X = np.random.default_rng(12).normal(size=(2,) + SHAPES[n_dim] + (3,)).astype(np.float32)
    coords = edge_coords(2, SHAPES[n_dim], np.random.default_rng(13))
    np.testing.assert_array_equal(M.replacement_values(X, coords, 'identity'), X[coords])
    Xm, _ = M.mask_batch(X, PERC[n_dim], 'identity', rng=0)
    np.testing.assert_array_equal(Xm, X)


@pytest.mark.parametrize('manipulator', ['mean', 'median'])
@pytest.mark.parametrize('shape,radius', [((12, 13), 2), ((4, 5), 5), ((6, 7), 5), ((5, 9, 6), 1), ((3, 4, 9), 2)])
def test_mean_median_match_loop_reference(manipulator, shape, radius):
    rng = np.random.default_rng(14)
    X = rng.normal(size=(2,) + shape + (2,)).astype(np.float32)
    coords = edge_coords(2, shape, rng)
    vals = M.replacement_values(X, coords, manipulator, radius)
    func = np.mean if manipulator == 'mean' else np.median
    for i in range(coords[0].size):                             # plain reference loop
        c = [int(a[i]) for a in coords[1:]]
        bounds = [window_bounds(ci, s, radius) for ci, s in zip(c, shape)]
        win = X[(int(coords[0][i]),) + tuple(slice(lo, hi) for lo, hi in bounds)]
        keep = np.ones(win.shape[:-1], bool)
        keep[tuple(ci - lo for ci, (lo, _) in zip(c, bounds))] = False
        np.testing.assert_allclose(vals[i], func(win[keep], axis=0), rtol=1e-5, atol=1e-6)


def test_normal_additive_and_fitted_statistics():
    X = np.zeros((1, 16, 16, 1), np.float32)
    coords = (np.zeros(20000, int), np.full(20000, 5), np.full(20000, 7))
    v = M.replacement_values(X, coords, 'normal_additive', radius=2, rng=15)
    assert abs(v.mean()) < 0.05 and abs(v.std() - 2) < 0.05
    v = M.replacement_values(X, coords, M.pm_normal_additive(0.5), radius=99, rng=15)   # object's sigma wins
    assert abs(v.std() - 0.5) < 0.02
    X = np.random.default_rng(16).normal(3, 2, size=(1, 16, 16, 1)).astype(np.float32)
    win = X[0, 3:8, 5:10, 0]                                    # radius 2 around (5, 7)
    v = M.replacement_values(X, coords, 'normal_fitted', radius=2, rng=17)
    assert abs(v.mean() - win.mean()) < 0.05 and abs(v.std() - win.std()) < 0.05
    np.testing.assert_array_equal(M.replacement_values(np.ones((1, 8, 8, 1)), coords[:1] + (coords[1] % 8,) * 2,
                                                       'normal_fitted'), 1.0)   # constant window, std 0


def test_argument_errors():
    X = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match='uniform_withCP.*median'):
        M.mask_batch(X, 10, 'bogus')
    with pytest.raises(TypeError, match='rng'):
        M.mask_batch(X, 10, rng='seed')
    with pytest.raises(ValueError, match=r'X must have shape'):
        M.mask_batch(np.zeros((16, 16, 1)), 10)
    with pytest.raises(TypeError, match='X'):
        M.mask_batch([[[[0.0]]]], 10)
    with pytest.raises(ValueError, match='radius'):
        M.mask_batch(X, 10, 'median', radius=-1)
    with pytest.raises(ValueError, match=r'coords\[1\]'):
        M.replacement_values(X, (np.zeros(1, int), np.full(1, 16), np.zeros(1, int)))
    with pytest.raises(ValueError, match='radius'):
        M.mask_batch(X, 10, 'median', radius=np.inf)
    with pytest.raises(ValueError, match='manipulator'):
        M.Manipulator('bogus', 5)


@pytest.mark.parametrize('dtype', [np.float64, np.uint16])
def test_other_dtypes_give_float32_and_stay_untouched(dtype):
    X = (np.random.default_rng(23).random((2, 24, 24, 1)) * 1000).astype(dtype)
    X0 = X.copy()
    Xm, Y = M.mask_batch(X, 2.0, 'median', rng=0)
    np.testing.assert_array_equal(X, X0)
    assert Xm.dtype == Y.dtype == np.float32
    np.testing.assert_array_equal(Y[..., :1], X0.astype(np.float32))


# ---------------------------------------------------------------- structN2V
STRUCT = {2: np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]),
          3: np.array([[[0, 1, 0], [0, 1, 0], [0, 1, 0]]])}


@pytest.mark.parametrize('n_dim', NDIMS)
def test_struct_hide_coords(n_dim):
    shape = SHAPES[n_dim]
    coords = edge_coords(2, shape, np.random.default_rng(18))
    mask = STRUCT[n_dim].copy()
    hidden, parent = M.struct_hide_coords(coords, mask, shape)
    np.testing.assert_array_equal(mask, STRUCT[n_dim])
    offsets = np.stack([h - c[parent] for h, c in zip(hidden[1:], coords[1:])], 1)
    allowed = {tuple(o) for o in np.argwhere(mask == 1) - np.array(mask.shape) // 2 if any(o)}
    assert {tuple(o) for o in offsets} == allowed
    np.testing.assert_array_equal(hidden[0], coords[0][parent])
    for h, s in zip(hidden[1:], shape):
        assert h.min() >= 0 and h.max() < s
    # corners lose the offsets that leave the patch: count = in-patch offsets per coordinate
    n_expected = sum(int(np.all([(0 <= c + o) & (c + o < s) for c, o, s in zip(cc, off, shape)]))
                     for cc in zip(*coords[1:]) for off in allowed)
    assert parent.size == n_expected


@pytest.mark.parametrize('bad,msg', [(np.ones((1, 4)), 'odd'), (np.ones(5), 'axes'),
                                     (np.array([[1, 2, 1]]), '0 or 1'), (np.ones((1, 3, 3)), 'axes')])
def test_struct_mask_validation(bad, msg):
    coords = M.stratified_coords(1, (16, 16), 10, rng=0)
    with pytest.raises(ValueError, match=f'struct_mask.*{msg}'):
        M.struct_hide_coords(coords, bad, (16, 16))
    with pytest.raises(ValueError, match='struct_mask'):
        M.mask_batch(np.zeros((1, 16, 16, 1), np.float32), 10, struct_mask=bad)


@pytest.mark.parametrize('manipulator', M.MANIPULATORS)
@pytest.mark.parametrize('n_dim', NDIMS)
def test_struct_mask_batch(n_dim, manipulator):
    shape = SHAPES[n_dim]
    X = unique_batch(3, shape)
    smask = STRUCT[n_dim].copy()
    Xm, Y = M.mask_batch(X, PERC[n_dim], manipulator, radius=1, rng=19, struct_mask=smask)
    np.testing.assert_array_equal(smask, STRUCT[n_dim])         # caller's mask untouched
    np.testing.assert_array_equal(Y[..., 0], X[..., 0])
    active = np.nonzero(Y[..., 1])
    coords = M.stratified_coords(3, shape, PERC[n_dim], rng=np.random.default_rng(19))
    np.testing.assert_array_equal(np.ravel_multi_index(active, X.shape[:-1]),
                                  np.sort(np.ravel_multi_index(coords, X.shape[:-1])))   # active all in loss mask
    hidden, parent = M.struct_hide_coords(coords, smask, shape)
    hflat = np.ravel_multi_index(hidden, X.shape[:-1])
    aflat = np.ravel_multi_index(coords, X.shape[:-1])
    only_hidden = ~np.isin(hflat, aflat)
    assert only_hidden.sum() > 20
    assert np.all(Y[..., 1][hidden][only_hidden] == 0)          # hidden pixels not in the loss mask
    assert np.all(Xm[..., 0][hidden] != X[..., 0][hidden])      # hidden pixels replaced ...
    src = decode(Xm[..., 0][hidden], X.shape[:-1])
    np.testing.assert_array_equal(src[0], hidden[0])            # ... by pixels of the same patch
    if manipulator not in ('uniform_withCP', 'uniform_withoutCP', 'normal_withoutCP'):
        return
    # no active pixel's input is a value from its own footprint (the correlated-noise leak)
    src_a = np.ravel_multi_index(decode(Xm[..., 0][coords], X.shape[:-1]), X.shape[:-1])
    own = np.zeros(aflat.size, bool)
    own[parent[src_a[parent] == hflat]] = True
    assert own.mean() < 0.02


@pytest.mark.parametrize('n_dim', NDIMS)
def test_struct_hidden_active_pixels_do_not_leak_their_parent(n_dim):
    """Dense masking with footprint {+1 along X}: an active pixel hidden by its left neighbour b must not
    show b's noisy value (a neighbour pick at radius 1 would, 1 time in 3**n_dim - 1)."""
    shape, B = SHAPES[n_dim], 4 * n_dim ** 2
    X = unique_batch(B, shape)
    smask = np.zeros((1,) * (n_dim - 1) + (3,), int)
    smask[..., 2] = 1
    perc = 100 / 2 ** n_dim                                     # box 2
    Xm, Y = M.mask_batch(X, perc, 'uniform_withoutCP', radius=1, rng=22, struct_mask=smask)
    coords = M.stratified_coords(B, shape, perc, rng=np.random.default_rng(22))
    hidden, parent = M.struct_hide_coords(coords, smask, shape)
    hidden_active = Y[..., 1][hidden] == 1
    assert hidden_active.sum() > 100
    shows_parent = Xm[..., 0][hidden] == X[..., 0][tuple(c[parent] for c in coords)]
    assert not shows_parent.any()


@pytest.mark.parametrize('mode', ['patch', 'local'])
@pytest.mark.parametrize('shape', [(4, 4), (3, 3, 3)])
def test_struct_hidden_values_never_own_or_parent_value(shape, mode):
    """Tiny patches (one active pixel each) make a draw of the pixel itself or its parent likely if allowed; with
    'local', hidden pixels without a free pixel within the radius fall back to the whole patch."""
    X = unique_batch(300, shape)
    smask = np.ones((1,) * (len(shape) - 1) + (3,), int)
    Xm, Y = M.mask_batch(X, 100 / np.prod(shape), 'uniform_withoutCP', 1, rng=24, struct_mask=smask,
                         struct_replacement=mode)
    coords = M.stratified_coords(300, shape, 100 / np.prod(shape), rng=np.random.default_rng(24))
    hidden, parent = M.struct_hide_coords(coords, smask, shape)
    assert hidden[0].size > 300
    assert np.all(Xm[..., 0][hidden] != X[..., 0][hidden])
    assert np.all(Xm[..., 0][hidden] != X[..., 0][tuple(c[parent] for c in coords)])
    src = decode(Xm[..., 0][hidden], X.shape[:-1])
    np.testing.assert_array_equal(src[0], hidden[0])


@pytest.mark.parametrize('n_dim', NDIMS)
def test_struct_local_replacement_draws_nearby_pixels_outside_every_footprint(n_dim):
    """'local': every hidden pixel shows a pixel of its own patch within `radius` (per axis) that is neither active
    nor hidden; 'patch' (the default, bit-identical to before) draws from the whole patch."""
    shape, radius = SHAPES[n_dim], 2
    X = unique_batch(3, shape)
    full = X.shape[:-1]
    coords = M.stratified_coords(3, shape, PERC[n_dim], rng=np.random.default_rng(31))
    hidden, parent = M.struct_hide_coords(coords, STRUCT[n_dim], shape)
    hflat, aflat = (np.ravel_multi_index(c, full) for c in (hidden, coords))
    only_hidden = ~np.isin(hflat, aflat)
    assert only_hidden.sum() > 20
    dist = {}
    for mode in ('local', 'patch'):
        Xm, Y = M.mask_batch(X, PERC[n_dim], 'uniform_withCP', radius, rng=31, struct_mask=STRUCT[n_dim],
                             struct_replacement=mode)
        np.testing.assert_array_equal(Y[..., 1][coords], 1.0)
        assert np.all(Y[..., 1][hidden][only_hidden] == 0)
        src = decode(Xm[..., 0][hidden], full)
        np.testing.assert_array_equal(src[0], hidden[0])                      # same patch
        dist[mode] = np.max(np.abs(np.stack(src[1:]) - np.stack(hidden[1:])), axis=0)
        if mode == 'local':
            assert dist[mode].max() <= radius and dist[mode].min() >= 1
            assert not np.isin(np.ravel_multi_index(src, full), np.concatenate([hflat, aflat])).any()
    assert (dist['patch'] > radius).mean() > 0.5                             # the test tells the two apart
    default = M.mask_batch(X, PERC[n_dim], 'uniform_withCP', radius, rng=31, struct_mask=STRUCT[n_dim])
    patch = M.mask_batch(X, PERC[n_dim], 'uniform_withCP', radius, rng=31, struct_mask=STRUCT[n_dim],
                         struct_replacement='patch')
    for a, b in zip(default, patch):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="struct_replacement must be one of.*'random'"):
        M.mask_batch(X, PERC[n_dim], struct_mask=STRUCT[n_dim], struct_replacement='random')


# ---------------------------------------------------------------- n2v-compatible API
@pytest.mark.parametrize('n_dim', NDIMS)
def test_manipulate_val_data_in_place(n_dim):
    X_val = unique_batch(3, SHAPES[n_dim], C=2)
    X0 = X_val.copy()
    Y_val = np.full(X_val.shape[:-1] + (4,), 7.0, np.float32)
    assert M.manipulate_val_data(X_val, Y_val, PERC[n_dim], SHAPES[n_dim], M.pm_uniform_withoutCP(3)) is None
    mask = Y_val[..., 2:]
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask[..., 0], mask[..., 1])
    np.testing.assert_array_equal(Y_val[..., :2], X0 * mask)    # n2v: target zero outside the mask
    np.testing.assert_array_equal(X_val[..., 0] != X0[..., 0], mask[..., 0] == 1)
    X2, Y2 = X0.copy(), np.zeros_like(Y_val)                    # default seed: reproducible
    M.manipulate_val_data(X2, Y2, PERC[n_dim], SHAPES[n_dim], 'uniform_withoutCP')
    X3, Y3 = X0.copy(), np.zeros_like(Y_val)
    M.manipulate_val_data(X3, Y3, PERC[n_dim], SHAPES[n_dim], 'uniform_withoutCP')
    np.testing.assert_array_equal(X2, X3)
    np.testing.assert_array_equal(Y2, Y3)
    with pytest.raises(ValueError, match='shape'):
        M.manipulate_val_data(X0.copy(), Y2, PERC[n_dim], (64,) * (5 - n_dim))


def test_pm_factories_and_call_compat():
    factories = [M.pm_uniform_withCP, M.pm_uniform_withoutCP, M.pm_normal_withoutCP, M.pm_normal_additive,
                 M.pm_normal_fitted, M.pm_identity, M.pm_mean, M.pm_median]
    assert [f(3).name for f in factories] == list(M.MANIPULATORS)
    m = M.pm_median(3)
    with pytest.raises(Exception):
        m.radius = 4                                            # frozen
    patch = np.random.default_rng(20).normal(size=(16, 16)).astype(np.float32)
    coords = (np.array([0, 5, 15]), np.array([3, 5, 15]))
    np.testing.assert_array_equal(M.pm_identity(5)(patch, coords, 2), patch[coords])
    ref = M.replacement_values(patch[None, ..., None], (np.zeros(3, int),) + coords, 'median', 3)[:, 0]
    np.testing.assert_array_equal(m(patch, coords, 2), ref)


# ---------------------------------------------------------------- test-time augmentation
@pytest.mark.parametrize('shape', [(6, 9, 2), (4, 6, 9, 2)])
def test_tta_round_trip_and_no_z_rotation(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    aug = M.tta_forward(x)
    assert len(aug) == 8
    assert len({a.tobytes() + bytes(a.shape) for a in aug}) == 8
    for a in aug:
        assert a.shape[-1] == shape[-1] and sorted(a.shape[-3:-1]) == sorted(shape[-3:-1])
        assert a.shape[:-3] == shape[:-3]                       # Z untouched
    np.testing.assert_array_equal(M.tta_backward(aug), x)       # identity "model" -> exact input
    if len(shape) == 4:                                         # each Z slice augmented on its own
        for z in range(shape[0]):
            for a, a2d in zip(aug, M.tta_forward(x[z])):
                np.testing.assert_array_equal(a[z], a2d)
    y = np.random.default_rng(21).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(M.tta_backward(M.tta_forward(y)), y, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match='yx_axes'):
        M.tta_forward(x, yx_axes=(1, 1))


# ---------------------------------------------------------------- module hygiene
def test_module_imports_neither_keras_nor_tensorflow():
    path = _PATH
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('masking_only', {str(path)!r}); "
            "m = sys.modules['masking_only'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'n2v_tf')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    src = path.read_text()
    assert 'print(' not in src and 'eval(' not in src
