"""Behavioural tests for n2v_tf.analysis (structN2V noise analysis): small, seeded, fast."""
import inspect
import json
import warnings

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from n2v_tf import N2VConfig, analysis
from n2v_tf.analysis import (DEFAULT_MIN_CORRELATION, DEFAULT_THRESHOLD, mask_literal, plot_autocorrelation,
                             struct_mask, suggest_struct_mask)
from n2v_tf.masking import mask_batch
from n2v_tf.qc import autocorrelation

NDIMS = (2, 3)
SHAPES = {2: (64, 64), 3: (16, 32, 32)}
NAMES = {2: 'YX', 3: 'ZYX'}


@pytest.fixture(autouse=True)
def _seed():
    """Override conftest's keras seeding: these tests are NumPy-only and pass explicit seeds."""
    yield


def striped_noise(shape, width, axis, seed=0, pixel_sigma=0.1):
    """Unit-variance white noise averaged over ``width`` pixels along ``axis`` plus pixel-wise noise.

    Its autocorrelation along ``axis`` is ``(width - k) / width / (1 + pixel_sigma**2)`` for lags k < width.
    """
    rng = np.random.default_rng(seed)
    x = uniform_filter1d(rng.normal(size=shape), width, axis=axis, mode='wrap') * np.sqrt(width)
    return x + pixel_sigma * rng.normal(size=shape)


def mixed_noise(shape, width, axis, share, seed=0):
    """Box-filtered white noise along ``axis`` holding ``share`` of the (unit) variance, plus pixel-wise noise.

    Its autocorrelation along ``axis`` is ``(width - k) / width * share`` for lags 0 < k < width.
    """
    rng = np.random.default_rng(seed)
    x = uniform_filter1d(rng.normal(size=shape), width, axis=axis, mode='wrap') * np.sqrt(width)
    return np.sqrt(share) * x + np.sqrt(1 - share) * rng.normal(size=shape)


def spans(mask):
    return dict(zip(NAMES[mask.ndim], mask.shape))


# ---------------------------------------------------------------- struct_mask

@pytest.mark.parametrize('n_dim', NDIMS)
def test_struct_mask_lines_along_every_axis(n_dim):
    for i, axis in enumerate(NAMES[n_dim]):
        for span in (1, 5, 17):
            m = struct_mask(axis, span, n_dim)
            expected = [1] * n_dim
            expected[i] = span
            assert m.shape == tuple(expected) and m.dtype.kind == 'i'
            assert (m == 1).all()
    assert struct_mask().shape == (1, 9) and struct_mask('x', 3).shape == (1, 3)


def test_struct_mask_cross():
    m = struct_mask('XY', (3, 5))
    assert m.shape == (5, 3)
    assert m[2].tolist() == [1, 1, 1] and m[:, 1].tolist() == [1] * 5 and m.sum() == 7
    assert struct_mask('ZX', 3, n_dim=3).sum() == 5


@pytest.mark.parametrize('kwargs, name', [
    (dict(span=8), 'span'), (dict(span=0), 'span'), (dict(span=True), 'span'), (dict(span=3.0), 'span'),
    (dict(axis='XY', span=(3, 5, 7)), 'span'), (dict(axis='W'), 'axis'), (dict(axis='XX'), 'axis'),
    (dict(axis=''), 'axis'), (dict(axis='Z', n_dim=2), 'axis'), (dict(n_dim=4), 'n_dim'),
])
def test_struct_mask_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        struct_mask(**kwargs)


# ---------------------------------------------------------------- suggest_struct_mask

def test_suggest_recovers_horizontal_stripes_2d():
    mask, acf = suggest_struct_mask(striped_noise((64, 64), 5, axis=1))
    # box of 5 pixels: acf(k) / acf(1) = (5 - k) / 4 > 0.5 up to lag 2; lag 3 sits at exactly 0.5
    assert mask.shape in ((1, 5), (1, 7)) and (mask == 1).all()
    mask9, acf9 = suggest_struct_mask(striped_noise((64, 64), 9, axis=1, seed=1))
    assert 7 <= spans(mask9)['X'] <= 11 and spans(mask9)['Y'] <= 3
    assert (acf9[32, 32 + 1:32 + 8] > 0.1).all()         # an absolute 0.1 would hide 15-17 pixels


@pytest.mark.parametrize('share', [1.0, 0.5, 0.25])
def test_box_span_is_independent_of_the_noise_mix(share):
    """The acceptance case: a 1x9 box plus pixel-wise noise gives X span 9 +- 2, Y <= 3, at the default arguments."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')                       # neither plain N2V nor truncation
        mask, acf = suggest_struct_mask(mixed_noise((128, 128), 9, axis=1, share=share, seed=12))
    assert 7 <= spans(mask)['X'] <= 11 and spans(mask)['Y'] <= 3, mask.shape
    assert (mask[mask.shape[0] // 2] == 1).all()
    assert acf[64, 65] == pytest.approx(8 / 9 * share, abs=0.05)      # the absolute level does depend on it
    mask5, _ = suggest_struct_mask(mixed_noise((128, 128), 5, axis=1, share=share, seed=13))
    assert 3 <= spans(mask5)['X'] <= 7 and spans(mask5)['Y'] <= 3, mask5.shape


@pytest.mark.parametrize('share', [1.0, 0.5])
def test_box_along_y_in_3d(share):
    mask, _ = suggest_struct_mask(mixed_noise((16, 64, 64), 9, axis=1, share=share, seed=14))
    s = spans(mask)
    assert 7 <= s['Y'] <= 11 and s['Z'] <= 3 and s['X'] <= 3, mask.shape


@pytest.mark.parametrize('n_dim', NDIMS)
@pytest.mark.parametrize('width', [5, 7])
def test_suggest_recovers_line_correlation(n_dim, width):
    axis = n_dim - 2                                     # Y (the first axis in 2D, the middle one in 3D)
    mask, acf = suggest_struct_mask(striped_noise(SHAPES[n_dim], width, axis=axis, seed=width))
    s = spans(mask)
    assert abs(s['Y'] - width) <= 2                      # the full width at half maximum
    assert all(v <= 3 for k, v in s.items() if k != 'Y')
    assert mask[tuple(n // 2 for n in mask.shape)] == 1
    assert acf.shape == SHAPES[n_dim]


@pytest.mark.parametrize('n_dim', NDIMS)
def test_white_noise_gives_plain_n2v_with_warning(n_dim):
    noise = np.random.default_rng(3).normal(size=SHAPES[n_dim])
    with pytest.warns(UserWarning, match='plain N2V'):
        mask, _ = suggest_struct_mask(noise)
    assert mask.shape == (1,) * n_dim and mask.item() == 1


def test_weak_stripes_below_min_correlation_give_plain_n2v():
    noise = mixed_noise((128, 128), 9, axis=1, share=0.05, seed=15)     # acf(1) = 8/9 * 0.05 = 0.044
    with pytest.warns(UserWarning, match='min_correlation=0.1.*plain N2V'):
        mask, acf = suggest_struct_mask(noise)
    assert mask.shape == (1, 1) and acf[64, 65] < 0.1
    with pytest.warns(UserWarning, match='4 standard deviations'):     # a looser floor finds the stripes
        mask, _ = suggest_struct_mask(noise, min_correlation=0.02)
    assert 7 <= spans(mask)['X'] <= 11 and spans(mask)['Y'] <= 3


def test_anticorrelated_residual_gives_plain_n2v():
    rng = np.random.default_rng(16)
    w = rng.normal(size=(64, 64))
    residual = w - uniform_filter1d(w, 3, axis=1, mode='wrap')         # noisy - smoothed: acf(1) < 0
    with pytest.warns(UserWarning, match='plain N2V'):
        mask, _ = suggest_struct_mask(residual)
    assert mask.shape == (1, 1)


@pytest.mark.parametrize('n_dim', NDIMS)
def test_acf_is_qc_autocorrelation(n_dim):
    noise = striped_noise(SHAPES[n_dim], 5, axis=-1, seed=4)
    _, acf = suggest_struct_mask(noise)
    np.testing.assert_allclose(acf, autocorrelation(noise))
    assert acf[tuple(s // 2 for s in acf.shape)] == pytest.approx(1.0)


def test_stacks_and_lists_average_autocorrelations():
    imgs = [striped_noise((48, 64), 5, axis=1, seed=s) for s in (5, 6)]
    mask, acf = suggest_struct_mask(np.stack(imgs), n_dim=2)
    np.testing.assert_allclose(acf, (autocorrelation(imgs[0]) + autocorrelation(imgs[1])) / 2)
    assert mask.shape in ((1, 5), (1, 7))
    mixed, acf_m = suggest_struct_mask([imgs[0], imgs[1][:32, :40]])   # different shapes: common central window
    assert acf_m.shape == (31, 39) and acf_m[15, 19] == pytest.approx(1.0)
    assert mixed.shape in ((1, 5), (1, 7))


def test_diagonal_correlation_is_captured():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(64, 64))
    # 4 diagonal copies: acf(k, k) / acf(1, 1) = (4 - k) / 3 -> lags up to 2 exceed the half maximum
    noise = sum(np.roll(w, (k, k), axis=(0, 1)) for k in range(4)) + 0.1 * rng.normal(size=(64, 64))
    mask, _ = suggest_struct_mask(noise)
    assert mask.shape == (5, 5)
    np.testing.assert_array_equal(mask, np.eye(5, dtype=int))       # a cross of axis lines would miss it


def test_truncation_at_max_span_warns():
    noise = striped_noise((64, 64), 9, axis=1, seed=8)
    with pytest.warns(UserWarning, match='search limit along X'):
        mask, _ = suggest_struct_mask(noise, max_span=7)
    assert mask.shape == (1, 7)
    with pytest.warns(UserWarning, match='search limit'):              # half of a 16-pixel side
        mask, _ = suggest_struct_mask(striped_noise((16, 128), 13, axis=0, seed=8))
    assert spans(mask)['Y'] == 9


@pytest.mark.parametrize('n_dim', NDIMS)
def test_suggested_mask_is_accepted_by_masking_and_config(n_dim):
    mask, _ = suggest_struct_mask(striped_noise(SHAPES[n_dim], 5, axis=-1, seed=9))
    patch = (8, 16, 16)[-n_dim:] if n_dim == 3 else (16, 16)
    X = np.random.default_rng(0).normal(size=(2,) + patch + (1,)).astype(np.float32)
    Xm, Y = mask_batch(X, perc_pix=5.0, rng=0, struct_mask=mask)
    assert Xm.shape == X.shape and Y[..., 1].sum() > 0
    config = N2VConfig(X, structN2Vmask=mask.tolist(), n2v_patch_shape=patch, unet_n_depth=2)
    assert config.is_valid(), config.is_valid(return_invalid=True)
    assert json.loads(mask_literal(mask)) == mask.tolist()


# ---------------------------------------------------------------- mask_literal

@pytest.mark.parametrize('mask', [struct_mask('X', 9), struct_mask('Y', 17, 3), struct_mask('XY', 3),
                                  np.ones((1, 1, 1), dtype=bool), np.array([[0, 1, 1, 1, 0]])])
def test_mask_literal_round_trip(mask):
    literal = mask_literal(mask)
    assert np.array_equal(np.array(json.loads(literal)), mask.astype(int))
    assert 'array' not in literal and 'True' not in literal
    assert mask_literal(struct_mask('X', 9)) == '[[1, 1, 1, 1, 1, 1, 1, 1, 1]]'


@pytest.mark.parametrize('bad', [np.ones((2, 3)), np.ones(9), np.full((1, 3), 2), np.ones((1, 1, 1, 1))])
def test_mask_literal_rejects_bad_masks(bad):
    with pytest.raises(ValueError, match='mask'):
        mask_literal(bad)


# ---------------------------------------------------------------- bad inputs

@pytest.mark.parametrize('kwargs, name', [
    (dict(threshold=0), 'threshold'), (dict(threshold=1.0), 'threshold'), (dict(threshold='0.1'), 'threshold'),
    (dict(threshold=True), 'threshold'), (dict(threshold=None), 'threshold'),
    (dict(min_correlation=0), 'min_correlation'), (dict(min_correlation=1), 'min_correlation'),
    (dict(min_correlation=True), 'min_correlation'), (dict(min_correlation='0.1'), 'min_correlation'),
    (dict(max_span=8), 'max_span'), (dict(max_span=0), 'max_span'), (dict(n_dim=4), 'n_dim'),
])
def test_suggest_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        suggest_struct_mask(np.random.default_rng(0).normal(size=(32, 32)), **kwargs)


@pytest.mark.parametrize('noise', [
    np.full((32, 32), 3.0), np.where(np.eye(32), np.nan, 1.0), np.full((32, 32), np.inf),
    np.zeros((32, 7)), np.zeros(64), np.zeros((2, 2, 16, 16, 16)), [],
])
def test_suggest_rejects_bad_noise(noise):
    with pytest.raises(ValueError, match='noise|n_dim'):
        suggest_struct_mask(noise)


def test_small_images_warn_about_resolution():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        suggest_struct_mask(np.random.default_rng(0).normal(size=(12, 12)), min_correlation=0.2)
    assert any('min_correlation=0.2 is within 4 standard deviations' in str(w.message) for w in caught)


# ---------------------------------------------------------------- plot_autocorrelation

@pytest.mark.parametrize('n_dim', NDIMS)
def test_plot_writes_png(n_dim, tmp_path):
    pytest.importorskip('matplotlib')
    mask, acf = suggest_struct_mask(striped_noise(SHAPES[n_dim], 5, axis=-1, seed=10))
    path = tmp_path / f'acf{n_dim}d.png'
    fig = plot_autocorrelation(acf, mask, path=str(path), max_lag=8, title='noise')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and path.stat().st_size > 5000
    assert len(fig.axes) == (3 if n_dim == 2 else 5)      # maps, colour bar and the profile panel
    assert plot_autocorrelation(acf, threshold=None) is not None     # no mask, no file


def test_plot_draws_the_absolute_level_used():
    pytest.importorskip('matplotlib')
    mask, acf = suggest_struct_mask(striped_noise((64, 64), 9, axis=1, seed=17))
    peak = max(acf[31:34, 31:34].ravel()[[0, 1, 2, 3, 5, 6, 7, 8]])
    fig = plot_autocorrelation(acf, mask, threshold=0.5)
    [line] = [ln for ln in fig.axes[-1].lines if ln.get_label().startswith('threshold')]
    assert line.get_ydata()[0] == pytest.approx(0.5 * peak)
    assert peak > 0.8                                                    # the 1x9 box: 8/9 / 1.01
    fig = plot_autocorrelation(acf, threshold=None)
    assert not [ln for ln in fig.axes[-1].lines if ln.get_label().startswith('threshold')]


def test_plot_rejects_bad_arguments():
    pytest.importorskip('matplotlib')
    acf = autocorrelation(np.random.default_rng(0).normal(size=(16, 16)))
    with pytest.raises(ValueError, match='mask'):
        plot_autocorrelation(acf, struct_mask('X', 3, n_dim=3))
    with pytest.raises(ValueError, match='acf'):
        plot_autocorrelation(np.ones(5))
    with pytest.raises(ValueError, match='max_lag'):
        plot_autocorrelation(acf, max_lag=0)
    with pytest.raises(ValueError, match='threshold'):
        plot_autocorrelation(acf, threshold=1.5)


def test_default_threshold_documented():
    assert DEFAULT_THRESHOLD == 0.5 and DEFAULT_MIN_CORRELATION == 0.1
    assert {'DEFAULT_THRESHOLD', 'DEFAULT_MIN_CORRELATION'} <= set(analysis.__all__)
    doc = suggest_struct_mask.__doc__
    assert 'Relative default threshold 0.5' in doc and 'Absolute ``min_correlation`` 0.1' in doc
    assert 'Default threshold 0.1' not in doc
    params = inspect.signature(suggest_struct_mask).parameters
    assert params['threshold'].default == 0.5 and params['min_correlation'].default == 0.1
    with warnings.catch_warnings():
        warnings.simplefilter('error')                       # a clear case raises no warning
        suggest_struct_mask(striped_noise((64, 64), 3, axis=1, seed=11))
