"""Behavioural tests for n2v_tf.noise_models (PN2V noise models): seeded, small, fast."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import norm

from n2v_tf.noise_models import GMM_TOL, GaussianMixtureNoiseModel, HistogramNoiseModel

GAIN, READ = 2.0, 5.0            # Var[x|s] = GAIN * s + READ**2


def shot_noise_pairs(n=50_000, seed=0, lo=10.0, hi=1000.0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(lo, hi, n)
    return s, s + rng.normal(size=n) * np.sqrt(GAIN * s + READ ** 2)


@pytest.fixture(scope='module')
def gmm():
    """The default K=3 linear mixture, fitted on signal-dependent Gaussian noise (shortened schedule)."""
    s, x = shot_noise_pairs()
    return GaussianMixtureNoiseModel.fit(s, x, steps=200, batch_size=5_000, seed=0)


@pytest.fixture(scope='module')
def hist():
    """Histogram model of unit Gaussian noise on signals in [0, 10]."""
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 10, 400_000)
    return HistogramNoiseModel.fit(s, s + rng.normal(size=s.size), bins=100)


def ll(model, x, s):
    return np.asarray(model.log_likelihood(x, s), dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------------
# Gaussian sanity
# ---------------------------------------------------------------------------------------------------------------------

def test_single_gaussian_mixture_is_the_closed_form_density():
    sigma = 3.0
    const = GaussianMixtureNoiseModel(np.array([[0.7], [np.log(sigma ** 2)], [0.0]]), min_signal=0, max_signal=100)
    s = np.linspace(0, 100, 11)[:, None]
    x = s + np.linspace(-3, 3, 13) * sigma
    np.testing.assert_allclose(ll(const, x, s), norm.logpdf(x, s, sigma), atol=1e-4)
    np.testing.assert_allclose(np.asarray(const.likelihood(x, s)), norm.pdf(x, s, sigma), rtol=1e-4)

    # linear variance law var = READ**2 + GAIN * (s - 10) on [10, 110]: coefficients are logs
    linear = GaussianMixtureNoiseModel(np.array([[1.0, -2.0], [np.log(READ ** 2), np.log(GAIN * 100)], [0.0, 0.0]]),
                                       min_signal=10, max_signal=110)
    s = np.linspace(10, 110, 7)[:, None]
    sd = np.sqrt(READ ** 2 + GAIN * (s - 10))
    x = s + np.linspace(-3, 3, 9) * sd
    np.testing.assert_allclose(ll(linear, x, s), norm.logpdf(x, s, sd), atol=1e-4)
    mean, var = linear.mean_and_variance(s)
    np.testing.assert_allclose(mean, s, atol=1e-9)
    np.testing.assert_allclose(var, sd ** 2, rtol=1e-9)


def test_mixture_layout_matches_ppn2v_formula():
    """Rows: K mean polys, K log-variance-coefficient polys, K weight logits; means re-centred on s."""
    rng = np.random.default_rng(0)
    k, c = 2, 3
    w = rng.normal(0, 0.5, (3 * k, c))
    m = GaussianMixtureNoiseModel(w, min_signal=5.0, max_signal=25.0, min_sigma=1e-3)
    s, x = rng.uniform(0, 30, 50), rng.uniform(-5, 35, 50)
    t = (s - 5.0) / 20.0
    poly = lambda coef: sum(coef[i] * t ** i for i in range(c))
    offsets = np.stack([poly(w[i]) for i in range(k)], -1)
    var = np.maximum(np.stack([poly(np.exp(w[k + i])) for i in range(k)], -1), 1e-3)
    logits = np.stack([poly(w[2 * k + i]) for i in range(k)], -1)
    alpha = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    mu = offsets - (alpha * offsets).sum(-1, keepdims=True) + s[:, None]
    p = (alpha * norm.pdf(x[:, None], mu, np.sqrt(var))).sum(-1) + GMM_TOL
    np.testing.assert_allclose(ll(m, x, s), np.log(p), atol=1e-4)


def test_histogram_approximates_the_gaussian_density(hist):
    xs = np.linspace(-1, 11, 241)
    for s in (2.0, 5.0, 7.3):
        p = np.asarray(hist.likelihood(xs, s), dtype=np.float64)
        l1 = np.sum(np.abs(p - norm.pdf(xs, s))) * (xs[1] - xs[0])
        assert l1 < 0.1, (s, l1)                                     # total variation < 0.05
    mean, var = hist.mean_and_variance(np.array([2.0, 5.0, 8.0]))
    np.testing.assert_allclose(mean, [2.0, 5.0, 8.0], atol=0.05)
    np.testing.assert_allclose(var, 1.0, rtol=0.05)                 # bin width 0.18 adds ~h**2/12 = 0.003


# ---------------------------------------------------------------------------------------------------------------------
# GMM fit
# ---------------------------------------------------------------------------------------------------------------------

def test_gmm_fit_recovers_signal_dependent_variance(gmm):
    s, _ = shot_noise_pairs()
    q = np.linspace(*np.percentile(s, [5, 95]), 50)
    mean, var = gmm.mean_and_variance(q)
    np.testing.assert_allclose(mean, q, rtol=1e-6)
    rel = np.abs(var / (GAIN * q + READ ** 2) - 1)
    assert rel.max() < 0.10, rel.max()
    assert gmm.n_gaussian == 3 and gmm.n_coeff == 2 and gmm.weight.shape == (9, 2)
    assert gmm.signal_range[0] == pytest.approx(s.min()) and gmm.signal_range[1] == pytest.approx(s.max())
    assert gmm.history.shape == (200,) and np.isfinite(gmm.history).all()
    # the fitted model explains held-out data as well as the true density does (nats per pixel)
    s2, x2 = shot_noise_pairs(20_000, seed=5)
    true = norm.logpdf(x2, s2, np.sqrt(GAIN * s2 + READ ** 2)).mean()
    assert ll(gmm, x2, s2).mean() > true - 0.01


def test_gmm_fit_divergence_reports_last_finite_loss(monkeypatch):
    from n2v_tf import noise_models
    monkeypatch.setattr(noise_models, '_JIT_MIN_WORK', 0)          # also exercise the XLA-compiled step
    s, x = shot_noise_pairs(2_000)
    with pytest.raises(ValueError, match=r"GMM fit diverged.*last finite loss [-+0-9.e]+ at step \d+"):
        GaussianMixtureNoiseModel.fit(s, x, steps=10, learning_rate=1e6)


@pytest.mark.parametrize('kwargs, err, match', [
    ({'n_gaussian': 0}, ValueError, 'n_gaussian'),
    ({'n_coeff': 2.0}, TypeError, 'n_coeff'),
    ({'steps': 0}, ValueError, 'steps'),
    ({'learning_rate': -1.0}, ValueError, 'learning_rate'),
    ({'lower_clip': 60, 'upper_clip': 40}, ValueError, 'lower_clip'),
])
def test_gmm_fit_rejects_bad_arguments(kwargs, err, match):
    s, x = shot_noise_pairs(1_000)
    with pytest.raises(err, match=match):
        GaussianMixtureNoiseModel.fit(s, x, **kwargs)


def test_gmm_fit_rejects_bad_data():
    s, x = shot_noise_pairs(1_000)
    with pytest.raises(ValueError, match='same shape'):
        GaussianMixtureNoiseModel.fit(s, x[:-1])
    with pytest.raises(ValueError, match='observation must be finite'):
        GaussianMixtureNoiseModel.fit(s, np.where(np.arange(s.size) == 3, np.nan, x))
    with pytest.raises(ValueError, match='at least 180'):
        GaussianMixtureNoiseModel.fit(s[:50], x[:50])
    with pytest.raises(ValueError, match='constant signal'):
        GaussianMixtureNoiseModel.fit(np.full(500, 3.0), x[:500])
    with pytest.raises(ValueError, match='no noise'):
        GaussianMixtureNoiseModel.fit(s, s)


def test_gmm_constructor_checks():
    with pytest.raises(ValueError, match='n_gaussian must be 2'):
        GaussianMixtureNoiseModel(np.zeros((6, 2)), n_gaussian=3)
    with pytest.raises(ValueError, match=r'\(3 \* n_gaussian, n_coeff\)'):
        GaussianMixtureNoiseModel(np.zeros((4, 2)))
    with pytest.raises(ValueError, match='max_signal must be larger'):
        GaussianMixtureNoiseModel(min_signal=1.0, max_signal=1.0)
    default = GaussianMixtureNoiseModel(min_signal=0, max_signal=10)
    assert default.weight.shape == (9, 2) and np.isfinite(ll(default, [1.0, 50.0], [2.0, 2.0])).all()


# ---------------------------------------------------------------------------------------------------------------------
# calibration stacks
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('cls', [HistogramNoiseModel, GaussianMixtureNoiseModel])
def test_from_calibration_rejects_single_frames_and_nan(cls):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='at least 2 noisy frames'):
        cls.from_calibration(rng.normal(size=(1, 16, 16)))
    with pytest.raises(ValueError, match='at least 2 noisy frames'):
        cls.from_calibration(rng.normal(size=(16, 16, 1)), axis=-1)
    stack = rng.normal(size=(4, 16, 16))
    stack[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match='stack must be finite'):
        cls.from_calibration(stack)


def test_histogram_from_calibration_corrects_the_mean_shrinkage():
    """With n frames, frames scatter around their mean with (1 - 1/n) of the noise variance."""
    rng = np.random.default_rng(3)
    ramp = np.tile(np.linspace(20, 80, 128), (128, 1))
    stack = ramp + 4.0 * rng.normal(size=(4, 128, 128))
    q = np.array([35.0, 50.0, 65.0])
    _, var = HistogramNoiseModel.from_calibration(stack, bins=60).mean_and_variance(q)
    np.testing.assert_allclose(var, 16.0, rtol=0.1)
    _, raw = HistogramNoiseModel.from_calibration(stack, bins=60, correct_variance=False).mean_and_variance(q)
    np.testing.assert_allclose(raw, 12.0, rtol=0.1)


# ---------------------------------------------------------------------------------------------------------------------
# histogram details
# ---------------------------------------------------------------------------------------------------------------------

def test_histogram_empty_rows_get_a_gaussian_fallback_and_clamping():
    rng = np.random.default_rng(2)
    s = rng.uniform(0, 5, 50_000)
    h = HistogramNoiseModel.fit(s, s + rng.normal(size=s.size), bins=40, min_value=-5, max_value=35)
    assert h.filled_rows.size > 20 and np.allclose(h.histogram.sum(1), 1.0)
    mean, var = h.mean_and_variance(np.array([20.0]))
    assert abs(mean[0] - 20.0) < 0.1 and 0.7 < var[0] < 1.5              # centred, std of the nearest data row
    values = ll(h, np.array([-100.0, 0.0, 20.0, 100.0]), np.array([-50.0, 2.0, 20.0, 60.0]))
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values[[0, 3]], [ll(h, -5.0, -5.0), ll(h, 35.0, 35.0)], rtol=1e-6)  # edge bins
    assert values.min() >= np.log(1e-10 / h.bin_width) - 1e-6


def test_histogram_constructor_checks():
    with pytest.raises(ValueError, match=r'square \(B, B\)'):
        HistogramNoiseModel(np.ones((3, 4)), 0, 1)
    with pytest.raises(ValueError, match='non-negative'):
        HistogramNoiseModel(-np.ones((3, 3)), 0, 1)
    with pytest.raises(ValueError, match='at least one non-empty row'):
        HistogramNoiseModel(np.zeros((3, 3)), 0, 1)
    with pytest.raises(TypeError, match='bins'):
        HistogramNoiseModel.fit([1.0, 2.0], [1.0, 2.0], bins=2.5)


def test_histogram_loads_pn2v_arrays(tmp_path, hist):
    b = hist.bins
    edges = hist.min_value + np.arange(b + 1) * hist.bin_width
    pn2v = np.stack([hist.histogram, np.tile(edges[:-1][:, None], (1, b)), np.tile(edges[1:][:, None], (1, b))])
    np.save(tmp_path / 'hist.npy', pn2v)
    loaded = HistogramNoiseModel.load(tmp_path / 'hist.npy')
    x, s = np.linspace(-2, 12, 20), np.linspace(0, 10, 20)
    np.testing.assert_allclose(ll(loaded, x, s), ll(hist, x, s), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# both models: files, gradients, broadcasting, coverage, plots
# ---------------------------------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, gmm, hist):
    rng = np.random.default_rng(4)
    for model, lo, hi in ((gmm, 0.0, 1100.0), (hist, -2.0, 12.0)):
        path = tmp_path / f"{type(model).__name__}.npz"
        model.save(path)
        loaded = type(model).load(path)
        x, s = rng.uniform(lo, hi, 200), rng.uniform(lo, hi, 200)
        np.testing.assert_array_equal(ll(loaded, x, s), ll(model, x, s))
    with np.load(tmp_path / 'GaussianMixtureNoiseModel.npz') as f:             # ppn2v/CAREamics layout
        assert f['trained_weight'].shape == (9, 2) and f['min_signal'].shape == (1,) and f['min_sigma'].shape == ()
    with pytest.raises(ValueError, match='missing key'):
        GaussianMixtureNoiseModel.load(tmp_path / 'HistogramNoiseModel.npz')


@pytest.mark.parametrize('which', ['gmm', 'hist'])
def test_log_likelihood_gradient_is_finite(which, gmm, hist):
    model = gmm if which == 'gmm' else hist
    lo, hi = model.signal_range
    span = hi - lo
    signal = tf.Variable(np.array([lo - 0.2 * span, lo, lo + 0.37 * span, hi, hi + 0.2 * span] * 2, np.float32))
    obs = tf.constant(np.array([lo, lo - 3 * span, hi + 3 * span, lo + 0.4 * span, hi] * 2, np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(model.log_likelihood(obs, signal))
    grad = tape.gradient(value, signal)
    assert np.isfinite(value.numpy()) and np.isfinite(grad.numpy()).all()
    # inside the range the gradient is the derivative (central difference, float64)
    s0, x0, eps = lo + 0.37 * span, lo + 0.4 * span, 1e-4 * span
    sv = tf.Variable(s0, dtype=tf.float64)
    with tf.GradientTape() as tape:
        v = model.log_likelihood(tf.constant(x0, tf.float64), sv)
    numeric = (ll(model, x0, s0 + eps) - ll(model, x0, s0 - eps)) / (2 * eps)
    assert tape.gradient(v, sv).numpy() == pytest.approx(numeric, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize('which', ['gmm', 'hist'])
def test_broadcasting_over_samples(which, gmm, hist):
    model = gmm if which == 'gmm' else hist
    lo, hi = model.signal_range
    rng = np.random.default_rng(0)
    obs = rng.uniform(lo, hi, (2, 8, 8, 1)).astype(np.float32)
    samples = rng.uniform(lo, hi, (5, 2, 8, 8, 1)).astype(np.float32)
    out = model.log_likelihood(obs, samples)
    assert tuple(out.shape) == (5, 2, 8, 8, 1) and str(out.dtype) in ('float32', "<dtype: 'float32'>")
    np.testing.assert_allclose(np.asarray(out)[3], ll(model, obs, samples[3]), rtol=1e-6)


def test_coverage(gmm, hist):
    assert hist.coverage(np.linspace(0, 10, 101)) == 1.0
    lo, hi = gmm.signal_range
    assert gmm.coverage(np.array([lo - 1, lo, (lo + hi) / 2, hi, hi + 1, np.nan])) == pytest.approx(0.6)


def test_plot_writes_png(tmp_path, gmm, hist):
    s, x = shot_noise_pairs(20_000)
    fig = gmm.plot(tmp_path / 'gmm.png', observation=x, signal=s, title='GMM')
    assert len(fig.axes) >= 2
    hist.plot(tmp_path / 'hist.png', signals=[2.0, 8.0])
    for name in ('gmm.png', 'hist.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError, match='together'):
        hist.plot(observation=x)
