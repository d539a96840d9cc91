"""train_pn2v_bootstrapped (fully unsupervised PN2V in one call) and qc.plot_noise_model: tiny, seeded, offline."""
import hashlib
import importlib.util
import warnings

import numpy as np
import pytest
from conftest import tiny_config

from n2v_tf import N2V, GaussianMixtureNoiseModel, HistogramNoiseModel, N2VConfig, qc, train_pn2v_bootstrapped
from n2v_tf.models import PN2V_SHARED_FIELDS, PN2VBootstrapResult

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
PNG = b"\x89PNG\r\n\x1a\n"
GMM_FIT = {"steps": 60, "batch_size": 4096}


def photons(shape, seed=0, peak=30.0, low=2.0):
    """Poisson-Gaussian noise (gain 1, read noise 1) on a smooth image of ``low`` to ``peak`` photons."""
    grids = np.meshgrid(*[np.linspace(0, 3, s) for s in shape], indexing="ij")
    clean = low + (peak - low) * np.prod([np.sin(g) ** 2 for g in grids], axis=0)
    rng = np.random.default_rng(seed)
    return (rng.poisson(clean) + rng.normal(0, 1.0, shape)).astype(np.float32)


def data(n_dim):
    """Two noisy images (training, validation) as channel-last lists, and both with axes 'YX'/'ZYX'."""
    shape = (64, 64) if n_dim == 2 else (16, 32, 32)
    imgs = [photons(shape, seed) for seed in (1, 2)]
    return [imgs[0][..., None]], [imgs[1][..., None]], imgs, "ZYX" if n_dim == 3 else "YX"


def configs(X, n_dim, **pn2v):
    patch = (32, 32) if n_dim == 2 else (8, 16, 16)
    common = dict(unet_n_depth=1, unet_n_first=4, n2v_patch_shape=patch)
    n2v = tiny_config(X, **common)
    return n2v, tiny_config(X, probabilistic=True, pn2v_samples=pn2v.get("pn2v_samples", 8), **common)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_likelihoods(a, b, lo, hi):
    s, x = np.meshgrid(np.linspace(lo, hi, 7), np.linspace(lo - 5, hi + 5, 9))
    np.testing.assert_allclose(np.asarray(a.log_likelihood(x, s)), np.asarray(b.log_likelihood(x, s)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.slow
def test_bootstrap_pipeline_2d_then_reuse_n2v(tmp_path, monkeypatch):
    """N2V -> GMM -> PN2V; then reuse_n2v=True: a histogram, the default PN2V config, N2V left as it was."""
    X, X_val, imgs, axes = data(2)
    n2v_config, pn2v_config = configs(X, 2)
    r = train_pn2v_bootstrapped(X, X_val, imgs, axes, "pn", tmp_path, n2v_config=n2v_config, pn2v_config=pn2v_config,
                                noise_model_kwargs=GMM_FIT, seed=0, verbose=0)
    assert isinstance(r, PN2VBootstrapResult) and isinstance(r.noise_model, GaussianMixtureNoiseModel)
    assert set(r.seconds) == {"n2v", "noise_model", "pn2v"} and all(v > 0 for v in r.seconds.values())
    assert len(r.n2v_history.history["loss"]) == 2 and len(r.pn2v_history.history["loss"]) == 2
    assert 0.9 < r.coverage <= 1.0
    n2v_dir, pn_dir = tmp_path / "pn_n2v", tmp_path / "pn"

    # the N2V folder: a plain N2V model, no noise model
    n2v = N2V(None, "pn_n2v", basedir=str(tmp_path))
    assert not n2v.config.probabilistic and n2v.noise_model is None
    assert not list(n2v_dir.glob("noise_model*"))
    np.testing.assert_allclose(n2v.predict(imgs[0], axes), r.n2v_model.predict(imgs[0], axes), rtol=1e-5, atol=1e-4)
    # the PN2V folder: probabilistic, with the returned noise model, predicting the MMSE estimate
    pn = N2V(None, "pn", basedir=str(tmp_path))
    assert pn.config.probabilistic and pn.config.pn2v_samples == 8
    assert isinstance(pn.noise_model, GaussianMixtureNoiseModel) and (pn_dir / "noise_model_gmm.npz").is_file()
    same_likelihoods(pn.noise_model, r.noise_model, *r.noise_model.signal_range)
    mmse = pn.predict(imgs[1], axes)
    assert mmse.shape == imgs[1].shape and np.isfinite(mmse).all()
    np.testing.assert_allclose(mmse, r.pn2v_model.predict(imgs[1], axes), rtol=1e-4, atol=1e-3)
    assert not np.allclose(mmse, pn.predict(imgs[1], axes, pn2v_output="prior_mean"))
    if HAVE_MPL:
        assert r.figure == pn_dir / "noise_model.png" and r.figure.read_bytes()[:8] == PNG
    else:
        assert r.figure is None

    # reuse: N2V weights untouched, no N2V history; histogram; default pn2v_config from the reused model's budget;
    # without matplotlib the figure is a warning (and the old one is gone)
    weights = {f.name: digest(f) for f in n2v_dir.glob("*.h5")}

    def no_matplotlib(func):
        raise ImportError(f'{func} needs matplotlib: pip install "n2v_tf[plot]"')

    monkeypatch.setattr(qc, "_figure_class", no_matplotlib)
    with pytest.warns(UserWarning, match="matplotlib"):
        r2 = train_pn2v_bootstrapped(X, X_val, imgs, axes, "pn", tmp_path, kind="histogram",
                                     noise_model_kwargs={"bins": 24}, reuse_n2v=True, overwrite=True, seed=0,
                                     verbose=0)
    assert {f.name: digest(f) for f in n2v_dir.glob("*.h5")} == weights
    assert r2.n2v_history is None and r2.seconds["n2v"] == 0 and r2.figure is None
    assert not (pn_dir / "noise_model.png").exists()
    assert isinstance(r2.noise_model, HistogramNoiseModel)
    assert sorted(f.name for f in pn_dir.glob("noise_model*")) == ["noise_model_histogram.npz"]
    c = N2V(None, "pn", basedir=str(tmp_path)).config
    assert all(getattr(c, f) == getattr(n2v_config, f) for f in PN2V_SHARED_FIELDS)
    preset = N2VConfig.preset("pn2v", X)
    assert c.probabilistic and c.pn2v_samples == preset.pn2v_samples
    assert (c.n2v_manipulator, c.unet_upsampling) == (preset.n2v_manipulator, preset.unet_upsampling)


@pytest.mark.slow
def test_bootstrap_pipeline_3d(tmp_path):
    X, X_val, imgs, axes = data(3)
    n2v_config, pn2v_config = configs(X, 3)
    r = train_pn2v_bootstrapped(X, X_val, np.stack(imgs), "S" + axes, "pn3", tmp_path, n2v_name="first",
                                n2v_config=n2v_config, pn2v_config=pn2v_config, noise_model_kwargs=GMM_FIT,
                                qc_figure=False, seed=0, verbose=0)
    assert r.figure is None and not (tmp_path / "pn3" / "noise_model.png").exists()
    assert not N2V(None, "first", basedir=str(tmp_path)).config.probabilistic
    pn = N2V(None, "pn3", basedir=str(tmp_path))
    assert pn.config.n_dim == 3 and pn.config.probabilistic
    same_likelihoods(pn.noise_model, r.noise_model, *r.noise_model.signal_range)
    out = pn.predict(imgs[0], axes)
    assert out.shape == imgs[0].shape and np.isfinite(out).all()


def test_bad_input_is_refused_before_training(tmp_path):
    X, X_val, imgs, axes = data(2)
    n2v_config, pn2v_config = configs(X, 2)
    kw = dict(n2v_config=n2v_config, pn2v_config=pn2v_config, verbose=0)

    def run(*args, **extra):
        return train_pn2v_bootstrapped(*(args or (X, X_val, imgs, axes, "pn", tmp_path)), **{**kw, **extra})

    with pytest.raises(ValueError, match="n2v_name must differ"):
        run(n2v_name="pn")
    with pytest.raises(FileNotFoundError, match="no model 'pn_n2v'"):
        run(reuse_n2v=True)
    with pytest.raises(ValueError, match="single-channel"):
        run(X, X_val, [np.stack([imgs[0]] * 2, -1)], "YXC", "pn", tmp_path)
    with pytest.raises(ValueError, match="single-channel"):
        run([np.concatenate([X[0]] * 2, -1)], X_val, imgs, axes, "pn", tmp_path, n2v_config=None, pn2v_config=None)
    with pytest.raises(ValueError, match="do not fit the 2D"):
        run(X, X_val, imgs, "ZYX", "pn", tmp_path)
    with pytest.raises(ValueError, match="probabilistic=True"):
        run(pn2v_config=n2v_config)
    with pytest.raises(ValueError, match="probabilistic=False"):
        run(n2v_config=pn2v_config)
    with pytest.raises(ValueError, match="kind"):
        run(kind="poisson")
    with pytest.raises(ValueError, match="clip_percent"):
        run(clip_percent=50)
    with pytest.raises(TypeError, match="noise_model_kwargs"):
        run(noise_model_kwargs={"bins": 10})        # a histogram option for the GMM
    # existing folders: named, with what to pass
    (tmp_path / "pn_n2v").mkdir()
    (tmp_path / "pn_n2v" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="reuse_n2v=True") as e:
        run()
    assert str(tmp_path / "pn_n2v") in str(e.value) and "overwrite=True" in str(e.value)
    (tmp_path / "pn").mkdir()
    (tmp_path / "pn" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite=True") as e:
        run()
    assert f"'{tmp_path / 'pn'}'" in str(e.value)
    assert not list(tmp_path.glob("*/*.h5"))        # nothing was trained


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib")
def test_plot_noise_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    s = rng.uniform(2, 30, 20_000)
    x = rng.poisson(s) + rng.normal(0, 1, s.shape)
    nm = GaussianMixtureNoiseModel.fit(s, x, **GMM_FIT)
    sizes, plot = [], nm.plot

    def spy(*args, signal=None, observation=None, **kwargs):
        sizes.append((signal.size, observation.size))
        return plot(*args, signal=signal, observation=observation, **kwargs)

    monkeypatch.setattr(nm, "plot", spy)
    monkeypatch.setattr(qc, "NOISE_MODEL_PAIRS", 5000)
    fig = qc.plot_noise_model(nm, s.reshape(100, 200), x.reshape(100, 200), path=tmp_path / "a" / "nm.png",
                              title="GMM")
    assert sizes == [(5000, 5000)]                          # a subset of the pairs
    assert (tmp_path / "a" / "nm.png").read_bytes()[:8] == PNG
    assert fig.get_suptitle() == "GMM" and len(fig.axes) == 3    # density (+ colour bar) and slices
    with pytest.raises(ValueError, match="same size"):
        qc.plot_noise_model(nm, s, x[:-1])
    with pytest.raises(TypeError, match="noise_model"):
        qc.plot_noise_model("gmm", s, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qc.plot_noise_model(nm, s, x)       # no path: nothing written, no warning
