"""PN2V: loss against a NumPy reference, MMSE on a hand-made example, training and prediction in 2D/3D."""
import numpy as np
import pytest
from conftest import smooth_image, tiny_config
from keras import ops

from n2v_tf import N2V
from n2v_tf.losses import PN2VLoss, pn2v_mmse, pn2v_nll


class GaussianNoise:
    """Closed-form p(x|s) = N(x; s, sigma^2), the simplest noise model (for reference checks)."""

    def __init__(self, sigma):
        self.sigma = sigma

    def log_likelihood(self, observation, signal):
        return -0.5 * ops.square((observation - signal) / self.sigma) - np.log(self.sigma * np.sqrt(2 * np.pi))


def _np_loglik(x, s, sigma):
    return -0.5 * ((x - s) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))


@pytest.mark.parametrize("n_dim", (2, 3))
def test_pn2v_loss_matches_numpy(n_dim):
    rng = np.random.default_rng(0)
    shape = (2,) + (5,) * n_dim
    mean, std, sigma, k = 100.0, 20.0, 15.0, 7
    target = rng.normal(size=shape + (1,)).astype(np.float32)
    mask = (rng.random(shape + (1,)) < 0.3).astype(np.float32)
    samples = rng.normal(size=shape + (k,)).astype(np.float32)
    got = float(pn2v_nll(np.concatenate([target, mask], -1), samples, GaussianNoise(sigma), mean, std))
    x, s = target * std + mean, samples * std + mean
    p = np.exp(_np_loglik(x, s, sigma).astype(np.float64)).mean(-1, keepdims=True)
    expected = -(np.log(p) * mask).sum() / mask.sum()
    assert got == pytest.approx(expected, rel=1e-5)
    loss = PN2VLoss(GaussianNoise(sigma), mean, std)
    assert float(loss(np.concatenate([target, mask], -1), samples)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_pn2v_loss_at_masked_pixels_only_equals_full_loss(n_dim):
    import tensorflow as tf

    from n2v_tf.masking import box_size, mask_batch
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3,) + (16, 20, 12)[-n_dim:] + (1,)).astype(np.float32)
    _, y_true = mask_batch(X, perc_pix=2.0, rng=0)
    samples = rng.normal(size=X.shape[:-1] + (6,)).astype(np.float32)
    box = box_size(2.0, n_dim)
    full = float(pn2v_nll(y_true, samples, GaussianNoise(0.7)))
    fast = float(pn2v_nll(y_true, samples, GaussianNoise(0.7), box=box))
    assert fast == pytest.approx(full, rel=1e-6)
    compiled = tf.function(lambda a, b: pn2v_nll(a, b, GaussianNoise(0.7), box=box), jit_compile=True)
    assert float(compiled(y_true, samples)) == pytest.approx(full, rel=1e-5)


def test_pn2v_loss_is_stable_for_far_samples():
    # likelihoods underflow to 0 in float32; logsumexp keeps the loss finite
    target = np.zeros((1, 4, 4, 1), np.float32)
    y_true = np.concatenate([target, np.ones_like(target)], -1)
    samples = np.full((1, 4, 4, 3), 1e3, np.float32)
    assert np.isfinite(float(pn2v_nll(y_true, samples, GaussianNoise(1.0))))


def test_mmse_hand_made_example():
    # two samples, s = 0 and s = 10, observation 2, sigma 2: weights prop. exp(-0.5) and exp(-8)
    samples = np.array([[0.0, 10.0]], np.float32)
    x = np.array([[2.0]], np.float32)
    w = np.exp([-0.5, -8.0])
    w /= w.sum()
    np.testing.assert_allclose(np.asarray(pn2v_mmse(samples, x, GaussianNoise(2.0))), [[w[1] * 10.0]], rtol=1e-5)
    # equal distances: plain mean
    np.testing.assert_allclose(np.asarray(pn2v_mmse(samples, np.array([[5.0]], np.float32), GaussianNoise(2.0))),
                               [[5.0]], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("n_dim", (2, 3))
def test_pn2v_trains_and_predicts(n_dim, tmp_path):
    _, noisy = smooth_image((64, 64) if n_dim == 2 else (8, 32, 32), sigma=20)
    X = noisy[None, ..., None]
    config = tiny_config(X, probabilistic=True, pn2v_samples=16, unet_n_depth=1, batch_norm=False,
                         n2v_patch_shape=(32, 32) if n_dim == 2 else (8, 16, 16))
    model = N2V(config, None, basedir=None, noise_model=GaussianNoise(20.0))
    hist = model.train(X, X, verbose=0, seed=0)
    assert np.isfinite(hist.history["loss"]).all() and "n2v_mse" not in hist.history
    axes = "YX" if n_dim == 2 else "ZYX"
    mmse = model.predict(noisy, axes)
    prior = model.predict(noisy, axes, pn2v_output="prior_mean")
    samples = model.predict(noisy, axes, pn2v_output="samples")
    assert mmse.shape == prior.shape == noisy.shape and samples.shape == noisy.shape + (16,)
    np.testing.assert_allclose(samples.mean(-1), prior, atol=1e-3 * np.ptp(prior))
    # the MMSE lies between the samples' extremes at every pixel
    assert np.all(mmse >= samples.min(-1) - 1e-3) and np.all(mmse <= samples.max(-1) + 1e-3)
    tiled = model.predict(noisy, axes, n_tiles=(1, 2) if n_dim == 2 else (1, 2, 1))
    assert np.abs(tiled - mmse).max() <= 1e-4 * np.ptp(mmse)


def test_pn2v_without_noise_model_gets_a_clear_error():
    _, noisy = smooth_image((32, 32))
    X = noisy[None, ..., None]
    model = N2V(tiny_config(X, probabilistic=True, pn2v_samples=4), None, basedir=None)
    with pytest.raises(ValueError, match="noise model"):
        model.train(X, X, verbose=0)
    with pytest.raises(ValueError, match="noise model"):
        model.predict(noisy, "YX")
    assert model.predict(noisy, "YX", pn2v_output="prior_mean").shape == noisy.shape


@pytest.mark.parametrize("kind", ("gmm", "histogram"))
def test_pn2v_loss_serialises_with_its_noise_model(kind):
    import keras

    from n2v_tf import GaussianMixtureNoiseModel, HistogramNoiseModel
    rng = np.random.default_rng(0)
    s = rng.uniform(10, 200, 20000)
    x = s + rng.normal(0, np.sqrt(2 * s + 25))
    nm = (GaussianMixtureNoiseModel.fit(s, x, steps=50, batch_size=2000) if kind == "gmm"
          else HistogramNoiseModel.fit(s, x, bins=32))
    loss = PN2VLoss(nm, 100.0, 50.0)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    y_true = np.concatenate([rng.normal(size=(1, 8, 8, 1)), np.ones((1, 8, 8, 1))], -1).astype(np.float32)
    y_pred = rng.normal(size=(1, 8, 8, 5)).astype(np.float32)
    assert float(again(y_true, y_pred)) == pytest.approx(float(loss(y_true, y_pred)), rel=1e-6)


@pytest.mark.slow
def test_pn2v_model_folder_keeps_its_noise_model(tmp_path):
    from n2v_tf import GaussianMixtureNoiseModel
    clean, noisy = smooth_image((64, 64), sigma=15)
    rng = np.random.default_rng(1)
    nm = GaussianMixtureNoiseModel.fit(clean.ravel(), (clean + rng.normal(0, 15, clean.shape)).ravel(), steps=100,
                                       batch_size=4096)
    X = noisy[None, ..., None]
    config = tiny_config(X, probabilistic=True, pn2v_samples=8, unet_n_depth=1)
    model = N2V(config, "pn", basedir=str(tmp_path), noise_model=nm)
    model.train(X, X, verbose=0, seed=0)
    # train_calibrate_output (default): one gain and offset, fitted on the mean of the 8 samples, applied to all
    assert config.train_calibrate_output and len(model.output_calibration["gain"]) == 1
    head = model.keras_model.get_layer("channel_0final")
    assert head.filters == 8
    before = model.predict(noisy, "YX")
    with pytest.raises(ValueError, match="calibrate is for N2V models"):
        model.predict(noisy, "YX", calibrate=2)
    again = N2V(None, "pn", basedir=str(tmp_path))
    assert isinstance(again.noise_model, GaussianMixtureNoiseModel)
    np.testing.assert_allclose(again.predict(noisy, "YX"), before, atol=1e-4 * np.ptp(before))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ("gmm", "histogram"))
def test_bootstrap_end_to_end_on_a_tiny_image(kind, tmp_path):
    from n2v_tf import bootstrap_noise_model
    rng = np.random.default_rng(3)
    clean, _ = smooth_image((64, 64))
    noisy = (clean + rng.normal(0, np.sqrt(0.5 * clean + 25))).astype(np.float32)  # signal-dependent noise
    X = noisy[None, ..., None]
    n2v = N2V(tiny_config(X, unet_n_depth=1, train_steps_per_epoch=5), "n2v", basedir=str(tmp_path))
    n2v.train(X, X, verbose=0, seed=0)
    fit = {"steps": 100, "batch_size": 2048} if kind == "gmm" else {"bins": 32}
    nm = bootstrap_noise_model(n2v, noisy, "YX", kind=kind, **fit)
    s = np.linspace(np.percentile(clean, 10), np.percentile(clean, 90), 5)
    _, var = nm.mean_and_variance(s)
    assert np.all(np.isfinite(var)) and np.all(var > 0)
    pn2v = N2V(tiny_config(X, probabilistic=True, pn2v_samples=8, unet_n_depth=1), "pn2v", basedir=str(tmp_path),
               noise_model=nm)
    pn2v.train(X, X, verbose=0, seed=0)
    out = pn2v.predict(noisy, "YX")
    assert out.shape == noisy.shape and np.isfinite(out).all()
    with pytest.raises(ValueError, match="kind"):
        bootstrap_noise_model(n2v, noisy, "YX", kind="poisson")
    with pytest.raises(ValueError, match="probabilistic"):
        bootstrap_noise_model(pn2v, noisy, "YX")


@pytest.mark.parametrize("kind", ("gmm", "histogram"))
def test_log_likelihood_layers_equal_log_likelihood(kind):
    """The built-in-layer graph of the export computes the noise model's keras.ops log-likelihood, also for
    observations and signals outside the fitted range (extrapolated GMM polynomials, clamped histogram bins)."""
    import keras

    from n2v_tf import GaussianMixtureNoiseModel, HistogramNoiseModel
    rng = np.random.default_rng(0)
    if kind == "gmm":  # 2 components, quadratic polynomials: offsets, log variance coefficients, logits
        weight = [[0, 5, -3], [0, -5, 3], np.log([25, 500, 100]), np.log([50, 1500, 10]), [0, 1, -1], [0.5, -1, 0]]
        nm = GaussianMixtureNoiseModel(np.array(weight), min_signal=10.0, max_signal=1000.0)
    else:
        s = rng.uniform(10, 1000, 100_000)
        nm = HistogramNoiseModel.fit(s, s + rng.normal(0, np.sqrt(2 * s + 25)), bins=48)
    obs, sig = keras.Input((None, None, 1)), keras.Input((None, None, 12))
    graph = keras.Model([obs, sig], nm.log_likelihood_layers(obs, sig))
    assert {type(layer).__module__.split(".")[0] for layer in graph.layers} == {"keras"}
    xs = rng.uniform(-200, 1300, (2, 7, 9, 1)).astype(np.float32)
    ss = rng.uniform(-500, 2500, (2, 7, 9, 12)).astype(np.float32)
    got = graph.predict([xs, ss], verbose=0)
    ref = np.asarray(nm.log_likelihood(xs, ss))
    assert got.shape == ref.shape == ss.shape
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-4)


def test_bootstrap_with_tta_fits_the_augmented_prediction(tmp_path):
    from n2v_tf import HistogramNoiseModel, bootstrap_noise_model
    rng = np.random.default_rng(5)
    clean, _ = smooth_image((48, 48))
    noisy = (clean + rng.normal(0, np.sqrt(0.5 * clean + 25))).astype(np.float32)
    X = noisy[None, ..., None]
    n2v = N2V(tiny_config(X, unet_n_depth=1, train_epochs=1, train_steps_per_epoch=2), "n2v", basedir=str(tmp_path))
    n2v.train(X, X, verbose=0, seed=0)
    for tta in (False, True):
        nm = bootstrap_noise_model(n2v, noisy, "YX", kind="histogram", clip_percent=0, tta=tta, bins=16)
        pseudo = n2v.predict(noisy, "YX", tta=tta)
        expected = HistogramNoiseModel.fit(pseudo.ravel(), noisy.ravel(), bins=16)
        np.testing.assert_array_equal(nm.histogram, expected.histogram)
    assert not np.array_equal(pseudo, n2v.predict(noisy, "YX"))  # the two pseudo ground truths differ
