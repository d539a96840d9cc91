"""BioImage.IO export/import (issue 5): packages pass bioimageio.core's test for every weight format.

Exports tiny trained models (2D N2V2, 3D N2V, 2-channel structN2V, 2D PN2V with a Gaussian mixture noise
model) with validation on: ``export_bioimageio``
runs ``bioimageio.core.test_model`` per weight format in a fresh process that never imports n2v_tf
(``KERAS_BACKEND=tensorflow``) and raises if one fails. Then: ONNX weights in onnxruntime match the Keras
output, ``import_bioimageio`` rebuilds a model folder that predicts the same, bad input raises and leaves
nothing behind, and the shipped demo package in ``models/`` still passes the zoo test (``bioimageio test``).

The tests that need the ``bioimageio`` extra skip without it; argument checks run always.
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import random_batch_norm, smooth_image, tiny_config

from n2v_tf import N2V
from n2v_tf.export import (
    INSTALL_HINT,
    WEIGHT_FORMATS,
    BioImageIOValidationError,
    export_bioimageio,
    export_tf_compat,
    import_bioimageio,
    package_geometry,
    pn2v_mmse_network,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_PACKAGE = REPO / "models" / "n2v2_nuclei_demo.bioimage.io.zip"


class GaussianNoise:
    """A closed-form noise model object: trains a PN2V model but cannot be written into a package."""

    def log_likelihood(self, observation, signal):
        from keras import ops
        return -0.5 * ops.square(observation - signal)


def _need_extra():
    for mod in ("bioimageio.core", "tf2onnx", "onnxruntime"):
        pytest.importorskip(mod, reason=f"needs the bioimageio extra ({INSTALL_HINT})")


def _train(model, imgs):
    model.train(imgs, imgs, epochs=1, steps_per_epoch=2, verbose=0, seed=0)
    return model


def _export_dirs():
    return {p.name for p in Path(tempfile.gettempdir()).glob("n2v_tf_export_*")}


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory):
    """Tiny N2V2 model (depth 2, 4 filters) with a model folder holding its (initial) weights: built + saved,
    not trained, so the argument checks stay fast (the 3D and 2-channel tests below train their models)."""
    import keras
    keras.utils.set_random_seed(0)
    _, noisy = smooth_image((96, 100))
    cfg = tiny_config([noisy[..., None]], unet_n_first=4, unet_n_depth=2, blurpool=True, skip_skipone=True,
                      n2v_manipulator="median")
    model = N2V(cfg, "n2v2_2d", basedir=str(tmp_path_factory.mktemp("models")))
    # untrained batch norms are the identity and new networks have no bias before them: without statistics the
    # output would be nearly constant, and the 1e-4-of-range comparisons would test float32 rounding only
    random_batch_norm(model.keras_model, np.random.default_rng(0))
    model.keras_model.save_weights(str(model.logdir / "weights_best.h5"))
    return model, noisy


def _zip_names(path):
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


def _load_descr(path):
    from bioimageio.spec import load_model_description
    return load_model_description(path, perform_io_checks=False)


def _onnx_matches_keras(path):
    """ONNX weights in onnxruntime reproduce the package's test output (computed with Keras) within 1e-4 of its
    range."""
    import onnxruntime as ort
    descr = _load_descr(path)
    with zipfile.ZipFile(path) as zf:
        x = np.load(zf.open("test_input.npy"))
        y = np.load(zf.open("test_output.npy"))
        session = ort.InferenceSession(zf.read("n2v_model.onnx"), providers=["CPUExecutionProvider"])
    pre = descr.inputs[0].preprocessing[1].kwargs
    post = descr.outputs[0].postprocessing[0].kwargs
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    out = session.run(None, {"input": ((x - mean) / std).astype(np.float32)})[0]
    out = out * np.asarray(post.gain, np.float32) + np.asarray(post.offset, np.float32)
    assert out.shape == y.shape
    assert np.abs(out - y).max() <= 1e-4 * (y.max() - y.min())


def _core_prediction_is_seamless(path, halo):
    """bioimageio.core (ONNX weights): whole-image prediction (padded by the halo) and tiled prediction agree, and
    match the test output away from the image border (U-Net pooling grids stay aligned: halo multiple of step)."""
    from bioimageio.core import create_prediction_pipeline, predict
    descr = _load_descr(path)
    with zipfile.ZipFile(path) as zf:
        x = np.load(zf.open("test_input.npy"))
        y = np.load(zf.open("test_output.npy"))
    size = descr.inputs[0].axes[1].size  # ParameterizedSize of the spatial axes
    n = (min(x.shape[1:-1]) - size.min) // size.step  # largest blocks that fit: a few tiles, each with halos
    assert n >= 1, f"test image {x.shape} too small for blocked prediction (minimum {size.min}, step {size.step})"
    pipeline = create_prediction_pipeline(descr, weight_format="onnx")
    whole = np.asarray(predict(model=pipeline, inputs={"input": x}).members["output"].data)
    tiled = np.asarray(predict(model=pipeline, inputs={"input": x}, blocksize_parameter=n).members["output"].data)
    tol = 1e-4 * (y.max() - y.min())
    inner = (slice(None),) + (slice(halo, -halo),) * (y.ndim - 2) + (slice(None),)
    assert whole.shape == tiled.shape == y.shape
    assert np.abs(tiled - whole).max() <= tol
    assert np.abs(whole[inner] - y[inner]).max() <= tol


# --------------------------------------------------------------------------- exports that pass the zoo test

@pytest.mark.slow
def test_export_2d_n2v2_passes_bioimageio_and_reimports(model_2d, tmp_path):
    _need_extra()
    model, noisy = model_2d
    path = export_bioimageio(model, tmp_path / "n2v2.bioimage.io.zip", test_img=noisy, axes="YX",
                             authors=["Jane Doe"], tags=["nuclei"])  # validate=True: raises unless all pass
    assert path == tmp_path / "n2v2.bioimage.io.zip" and path.is_file()
    names = _zip_names(path)
    assert {"n2v_model.keras", "n2v_model.h5", "tf_saved_model_bundle.zip", "n2v_model.onnx", "test_input.npy",
            "test_output.npy", "cover.png", "README.md", "config.json", "rdf.yaml"} <= names
    descr = _load_descr(path)
    assert set(descr.weights.available_formats) == set(WEIGHT_FORMATS)
    assert descr.weights.onnx.opset_version == 17
    geo = package_geometry(model.config)
    assert (geo["step"], geo["halo"], geo["min"]) == (4, 32, 68)  # receptive-field radius 29 -> multiple of 4
    assert descr.inputs[0].axes[1].size.min == geo["min"] and descr.inputs[0].axes[1].size.step == 4
    assert descr.outputs[0].axes[1].halo == geo["halo"]
    assert [str(a.id) for a in descr.inputs[0].axes] == ["batch", "y", "x", "channel"]
    dois = {str(c.doi) for c in descr.cite}
    assert dois == {"10.1109/CVPR.2019.00223", "10.1007/978-3-031-25069-9_33"}  # N2V + N2V2, no structN2V
    assert "n2v2" in descr.tags and "nuclei" in descr.tags and str(descr.license) == "BSD-3-Clause"
    with zipfile.ZipFile(path) as zf:
        x = np.load(zf.open("test_input.npy"))
        assert x.dtype == np.float32 and x.shape == (1, 96, 100, 1)  # sizes 68 + n*4 (halo 32)
        assert "# Validation" in zf.read("README.md").decode()
        assert json.loads(zf.read("config.json")) == json.loads(json.dumps(vars(model.config)))
        with zipfile.ZipFile(zf.open("tf_saved_model_bundle.zip")) as bundle:  # SavedModel contents, no folder
            assert "saved_model.pb" in bundle.namelist()
    _onnx_matches_keras(path)
    _core_prediction_is_seamless(path, geo["halo"])

    imported = import_bioimageio(path, tmp_path / "imported")
    assert imported.name == "n2v2" and {"config.json", "weights_best.h5", "weights_last.h5"} <= {
        p.name for p in (tmp_path / "imported" / "n2v2").iterdir()}
    np.testing.assert_allclose(imported.predict(noisy, "YX"), model.predict(noisy, "YX"), rtol=0, atol=1e-4)
    _train(imported, [noisy[..., None]])  # training continues from the imported folder
    with pytest.raises(FileExistsError):
        import_bioimageio(path, tmp_path / "imported")


@pytest.mark.slow
def test_export_3d_n2v_in_memory_model(tmp_path):
    _need_extra()
    import keras
    keras.utils.set_random_seed(1)
    _, noisy = smooth_image((30, 40, 44))  # > the package's minimum input (26 with linear upsampling) + one step
    cfg = tiny_config([noisy[..., None]], unet_n_first=4, unet_n_depth=1, n2v_patch_shape=(16, 16, 16))
    model = _train(N2V(cfg, "n2v_3d", basedir=None), [noisy[..., None]])
    path = export_bioimageio(model, tmp_path / "n2v_3d.zip", test_img=noisy, authors="Jane Doe, John Doe")
    descr = _load_descr(path)
    assert [str(a.id) for a in descr.outputs[0].axes] == ["batch", "z", "y", "x", "channel"]
    assert [a.name for a in descr.authors] == ["Jane Doe", "John Doe"]
    assert {str(c.doi) for c in descr.cite} == {"10.1109/CVPR.2019.00223"}
    _onnx_matches_keras(path)
    _core_prediction_is_seamless(path, package_geometry(model.config)["halo"])
    imported = import_bioimageio(path, tmp_path / "imported", name="again")
    np.testing.assert_allclose(imported.predict(noisy, "ZYX"), model.predict(noisy, "ZYX"), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_export_two_channel_structn2v(tmp_path):
    _need_extra()
    import keras
    keras.utils.set_random_seed(2)
    _, a = smooth_image((64, 72), seed=1)
    _, b = smooth_image((64, 72), seed=2)
    img = np.stack([a, 2 * b + 10], axis=-1)
    cfg = tiny_config([img], unet_n_first=4, unet_n_depth=1, structN2Vmask=[[0, 1, 1, 1, 0]],
                      n2v_patch_shape=(32, 32), batch_norm_momentum=0.9)
    model = _train(N2V(cfg, "struct_2c", basedir=str(tmp_path / "models")), [img])
    path = export_bioimageio(model, tmp_path / "struct_2c.bioimage.io.zip", test_img=np.moveaxis(img, -1, 0),
                             axes="CYX", authors=["Jane Doe"])
    descr = _load_descr(path)
    assert len(descr.inputs[0].axes[-1].channel_names) == 2
    assert list(descr.inputs[0].preprocessing[1].kwargs.mean) == [float(m) for m in model.config.means]
    assert "10.1109/ISBI45749.2020.9098336" in {str(c.doi) for c in descr.cite}
    assert "structn2v" in descr.tags
    _onnx_matches_keras(path)
    imported = import_bioimageio(path, tmp_path / "imported")
    np.testing.assert_allclose(imported.predict(img, "YXC"), model.predict(img, "YXC"), rtol=0, atol=1e-4)


def _hand_made_gmm(lo, hi):
    """Two Gaussians centred on the signal, variances 150 + 100 t and 250 + 100 t (t = (s - lo) / (hi - lo))."""
    from n2v_tf import GaussianMixtureNoiseModel
    weight = np.array([[0, 0], [0, 0], np.log([150, 100]), np.log([250, 100]), [0, 0], [0.3, 0]])
    return GaussianMixtureNoiseModel(weight, min_signal=lo, max_signal=hi)


@pytest.mark.slow
def test_export_pn2v_gmm_package_returns_the_mmse_estimate(tmp_path):
    """A PN2V package computes the MMSE estimate in its graph (every weight format passes the zoo test), attaches
    its noise model, cites PN2V and the GMM paper, and imports back into a PN2V model folder."""
    _need_extra()
    import keras
    keras.utils.set_random_seed(4)
    clean, noisy = smooth_image((72, 76), sigma=15)
    nm = _hand_made_gmm(float(clean.min()), float(clean.max()))
    X = noisy[None, ..., None]
    cfg = tiny_config(X, probabilistic=True, pn2v_samples=8, unet_n_first=4, unet_n_depth=1)
    model = N2V(cfg, "pn2v", basedir=str(tmp_path / "models"), noise_model=nm)
    model.train(X, X, verbose=0, seed=0)  # 2 epochs x 2 steps
    path = export_bioimageio(model, tmp_path / "pn2v.bioimage.io.zip", test_img=noisy, axes="YX",
                             authors=["Jane Doe"])  # validate=True: raises unless all formats pass
    assert {"n2v_model.keras", "n2v_model.h5", "tf_saved_model_bundle.zip", "n2v_model.onnx",
            "noise_model_gmm.npz", "config.json"} <= _zip_names(path)
    descr = _load_descr(path)
    assert set(descr.weights.available_formats) == set(WEIGHT_FORMATS)
    assert {str(c.doi) for c in descr.cite} == {"10.1109/CVPR.2019.00223", "10.3389/fcomp.2020.00005",
                                                  "10.1109/ISBI45749.2020.9098612"}
    assert {"pn2v", "gmm"} <= set(descr.tags)
    assert {Path(str(a.source)).name for a in descr.attachments} >= {"config.json", "noise_model_gmm.npz"}
    assert "MMSE" in descr.outputs[0].description
    with zipfile.ZipFile(path) as zf:
        x = np.load(zf.open("test_input.npy"))[0, ..., 0]
        y = np.load(zf.open("test_output.npy"))[0, ..., 0]
        assert "MMSE estimate" in zf.read("README.md").decode()
    mmse = model.predict(x, "YX", pn2v_output="mmse")
    assert np.abs(y - mmse).max() <= 1e-4 * np.ptp(mmse)  # the package's graph output is the MMSE estimate
    assert np.abs(y - model.predict(x, "YX", pn2v_output="prior_mean")).max() > 1e-2 * np.ptp(mmse)
    _onnx_matches_keras(path)

    imported = import_bioimageio(path, tmp_path / "imported")
    assert imported.config.probabilistic and type(imported.noise_model) is type(nm)
    np.testing.assert_array_equal(imported.noise_model.weight, nm.weight)
    assert (tmp_path / "imported" / "pn2v" / "noise_model_gmm.npz").is_file()
    np.testing.assert_allclose(imported.predict(noisy, "YX"), model.predict(noisy, "YX"), rtol=0,
                               atol=1e-4 * np.ptp(mmse))


@pytest.mark.slow
def test_pn2v_histogram_mmse_network_is_predict_and_reloads(tmp_path):
    """With a histogram noise model (table look-ups), the exported PN2V network (U-Net + MMSE layers) reproduces
    predict(pn2v_output='mmse'), consists of Keras built-in layers only and reloads from .keras and legacy .h5
    (whose loader resolves keras.layers classes only). The GMM network passes the zoo test above, in a process
    that never imports n2v_tf."""
    from n2v_tf import HistogramNoiseModel
    from n2v_tf.export import _clean_network
    clean, noisy = smooth_image((40, 44), sigma=15)
    rng = np.random.default_rng(5)
    nm = HistogramNoiseModel.fit(clean, clean + rng.normal(0, 15, clean.shape), bins=24)
    cfg = tiny_config(noisy[None, ..., None], probabilistic=True, pn2v_samples=6, unet_n_first=4, unet_n_depth=1)
    model = N2V(cfg, "pn2v", basedir=None, noise_model=nm)  # untrained: random samples are fine here
    mean, std = float(cfg.means[0]), float(cfg.stds[0])
    net = pn2v_mmse_network(_clean_network(model), nm, mean, std)
    assert {type(layer).__module__.split(".")[0] for layer in net.layers} == {"keras"}
    x = ((noisy - mean) / std)[None, ..., None].astype(np.float32)
    y = net.predict(x, verbose=0)[0, ..., 0] * std + mean
    mmse = model.predict(noisy, "YX")
    assert np.abs(y - mmse).max() <= 1e-4 * np.ptp(mmse)
    import keras
    net.save(tmp_path / "net.keras")
    keras.saving.save_model(net, str(tmp_path / "net.h5"), include_optimizer=False)
    for f in ("net.keras", "net.h5"):
        again = keras.models.load_model(tmp_path / f, compile=False).predict(x, verbose=0)[0, ..., 0] * std + mean
        assert np.abs(again - y).max() <= 1e-6 * np.ptp(mmse), f


@pytest.mark.slow
def test_shipped_demo_package_passes_zoo_test(tmp_path):
    """`bioimageio test` (a process that never imports n2v_tf) passes every weight format of models/."""
    _need_extra()
    assert DEMO_PACKAGE.is_file(), f"missing {DEMO_PACKAGE}: run models/build_demo_package.py"
    assert DEMO_PACKAGE.stat().st_size < 5e6
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "bioimageio.core", "test", str(DEMO_PACKAGE)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert set(_load_descr(DEMO_PACKAGE).weights.available_formats) == set(WEIGHT_FORMATS)


def test_package_geometry_keeps_tiles_aligned():
    from n2v_tf import N2VConfig
    from n2v_tf.nets import config_receptive_field, receptive_field_radius
    for (n_dim, depth, kern, blurpool), up in itertools.product(
            [(2, 1, 3, False), (2, 2, 3, True), (2, 2, 5, False), (3, 2, 3, True), (2, 3, 3, False),
             (3, 1, 3, False)], ("nearest", "linear")):
        cfg = N2VConfig(None, n_dim=n_dim, unet_n_depth=depth, unet_kern_size=kern, blurpool=blurpool,
                        unet_upsampling=up)
        geo = package_geometry(cfg)
        radius = config_receptive_field(cfg)
        assert radius == receptive_field_radius(depth, kern, blurpool, upsampling=up)
        assert geo["step"] == 2 ** depth and geo["halo"] % geo["step"] == 0
        assert radius <= geo["halo"] < radius + geo["step"]
        assert geo["min"] % geo["step"] == 0 and 2 * geo["halo"] < geo["min"] <= 2 * geo["halo"] + geo["step"]


# --------------------------------------------------------------------------- bad input: clear errors, no files

def _assert_nothing_written(tmp_path, before_dirs, allowed=()):
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in allowed) == []
    assert _export_dirs() <= before_dirs


def test_export_refuses_bad_input(model_2d, tmp_path):
    model, noisy = model_2d
    before = _export_dirs()
    out = tmp_path / "out.bioimage.io.zip"
    with pytest.raises(ValueError, match="test_img is required"):
        export_bioimageio(model, out)
    with pytest.raises(ValueError, match="too small"):
        export_bioimageio(model, out, test_img=noisy[:40, :40], axes="YX")
    with pytest.raises(ValueError, match="do not fit this 2D model"):
        export_bioimageio(model, out, test_img=noisy[None], axes="SYX")
    with pytest.raises(ValueError, match="do not fit"):
        export_bioimageio(model, out, test_img=noisy, axes="ZYX")
    with pytest.raises(ValueError, match="channel"):
        export_bioimageio(model, out, test_img=np.stack([noisy, noisy], -1), axes="YXC")
    with pytest.raises(ValueError, match="NaN"):
        export_bioimageio(model, out, test_img=np.full_like(noisy, np.nan), axes="YX")
    with pytest.raises(ValueError, match=r"\.zip"):
        export_bioimageio(model, tmp_path / "out.yaml", test_img=noisy)
    with pytest.raises(ValueError, match="weight_formats"):
        export_bioimageio(model, out, test_img=noisy, weight_formats=("pytorch_state_dict",))
    with pytest.raises(TypeError, match="N2V"):
        export_bioimageio(model.keras_model, out, test_img=noisy)
    _assert_nothing_written(tmp_path, before)

    existing = tmp_path / "existing.bioimage.io.zip"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_bioimageio(model, existing, test_img=noisy)
    assert existing.read_bytes() == b"keep me"
    _assert_nothing_written(tmp_path, before, allowed=("existing.bioimage.io.zip",))


def test_export_refuses_untrained_and_pn2v_models(tmp_path):
    _, noisy = smooth_image((64, 64))
    cfg = tiny_config([noisy[..., None]], unet_n_first=4, unet_n_depth=1)
    for basedir in (None, str(tmp_path / "models")):
        with pytest.raises(ValueError, match="never trained"):
            export_bioimageio(N2V(cfg, "fresh", basedir=basedir), tmp_path / "x.zip", test_img=noisy)
    pn2v = N2V(tiny_config([noisy[..., None]], unet_n_first=4, unet_n_depth=1, probabilistic=True,
                           pn2v_samples=4), "pn2v", basedir=None)
    with pytest.raises(ValueError, match="PN2V model .* noise model"):
        export_bioimageio(pn2v, tmp_path / "x.zip", test_img=noisy)
    pn2v.noise_model = GaussianNoise()  # any object with log_likelihood trains, but has no exportable parameters
    with pytest.raises(TypeError, match="GaussianMixtureNoiseModel or HistogramNoiseModel"):
        export_bioimageio(pn2v, tmp_path / "x.zip", test_img=noisy)
    assert not (tmp_path / "x.zip").exists()


def test_missing_optional_dependency_names_the_extra(model_2d, tmp_path, monkeypatch):
    model, noisy = model_2d
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r'pip install "n2v_tf\[bioimageio\]"'):
        export_bioimageio(model, tmp_path / "x.zip", test_img=noisy)
    assert not (tmp_path / "x.zip").exists()


def test_export_tf_compat_checks_patch_shape(model_2d, tmp_path):
    model, noisy = model_2d
    with pytest.raises(ValueError, match="patch_shape"):
        export_tf_compat(model, "N2V2 test", "d", "Jane Doe", noisy, "YX", (64, 64, 64), result_path=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_failed_validation_leaves_nothing(model_2d, tmp_path, monkeypatch):
    """If bioimageio.core rejects one weight format, the error carries the summary and nothing is written."""
    _need_extra()
    from n2v_tf import export
    model, noisy = model_2d
    before = _export_dirs()

    def fake_validate(path, weight_formats=None, **kwargs):
        assert Path(path).is_file()  # the package was built completely before testing
        return {wf: {"status": "failed" if wf == "onnx" else "passed", "summary": f"{wf}: simulated failure"}
                for wf in weight_formats}

    monkeypatch.setattr(export, "validate_bioimageio", fake_validate)
    out = tmp_path / "sub" / "x.bioimage.io.zip"
    with pytest.raises(BioImageIOValidationError, match="onnx: simulated failure") as info:
        export_bioimageio(model, out, test_img=noisy, weight_formats=("keras_v3", "onnx"), authors=["Jane Doe"])
    assert info.value.summaries["onnx"]["status"] == "failed"
    assert not out.exists() and not out.parent.exists()
    _assert_nothing_written(tmp_path, before)


def test_import_refuses_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        import_bioimageio(tmp_path / "missing.zip", tmp_path)
    not_zip = tmp_path / "not_a.zip"
    not_zip.write_text("plain text")
    with pytest.raises(ValueError, match="not a zip file"):
        import_bioimageio(not_zip, tmp_path / "models")
    foreign = tmp_path / "foreign.bioimage.io.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("rdf.yaml", "type: model\n")
    with pytest.raises(ValueError, match="only packages exported by n2v_tf"):
        import_bioimageio(foreign, tmp_path / "models")
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_export_tf_compat_writes_into_model_folder(model_2d):
    """n2v's export_TF signature: comma-separated authors, result in <model folder>/export.bioimage.io.zip."""
    pytest.importorskip("bioimageio.spec", reason=f"needs the bioimageio extra ({INSTALL_HINT})")
    model, noisy = model_2d
    path = export_tf_compat(model, "N2V2 compat", "n2v-style export", "Jane Doe, John Doe", noisy, "YX", (32, 32),
                            validate=False, weight_formats=("keras_v3",))
    try:
        assert path == model.logdir / "export.bioimage.io.zip"
        descr = _load_descr(path)
        assert descr.name == "N2V2 compat" and [a.name for a in descr.authors] == ["Jane Doe", "John Doe"]
        assert set(descr.weights.available_formats) == {"keras_v3"}
        with pytest.raises(FileExistsError):
            export_tf_compat(model, "N2V2 compat", "again", "Jane Doe", noisy, "YX", (32, 32), validate=False)
    finally:
        path.unlink()
