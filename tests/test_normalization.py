"""One normalisation (issue 12): training data, validation data, predict and the exported package agree."""
import zipfile

import keras
import numpy as np
import pytest

from conftest import smooth_image, tiny_config
from n2v_tf import N2V
from n2v_tf.config import denormalize, normalize
from n2v_tf.data import N2VSequence, validation_data


def test_normalize_is_the_formula_everywhere():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (2, 32, 32, 2)).astype(np.float32)
    means, stds = np.array([3.0, 1.0], np.float32), np.array([2.0, 0.5], np.float32)
    np.testing.assert_array_equal(normalize(x, means, stds), ((x - means) / stds).astype(np.float32))
    np.testing.assert_allclose(denormalize(normalize(x, means, stds), means, stds), x, rtol=1e-6, atol=1e-6)
    seq = N2VSequence(x, (32, 32), batch_size=2, perc_pix=5, means=means, stds=stds, seed=0)
    crop = seq.crop_batch(np.random.default_rng(1))
    idx = np.random.default_rng(1).choice(2, size=2, p=seq._p)  # the draw of crop_batch
    np.testing.assert_array_equal(crop, normalize(x[idx], means, stds))
    val_x, val_y = validation_data(x, (32, 32), perc_pix=5, means=means, stds=stds)
    np.testing.assert_array_equal(val_y[..., :2], normalize(x, means, stds))


def test_config_gives_float_arrays_once():
    X = [smooth_image((64, 64))[1][..., None]]
    means, stds = tiny_config(X).normalization()
    assert means.dtype == stds.dtype == np.float64 and means.shape == stds.shape == (1,)


@pytest.mark.slow
def test_package_and_predict_agree_for_tiny_std(tmp_path):
    pytest.importorskip("bioimageio.core")
    from bioimageio.core import predict

    from n2v_tf.export import export_bioimageio
    _, noisy = smooth_image((160, 160))
    img = ((noisy - noisy.mean()) / noisy.std() * 1e-3 + 5e-3).astype(np.float32)  # std 1e-3
    val = img[::-1].copy()
    model = N2V(tiny_config([img[..., None]]), "tiny_std", basedir=tmp_path)
    assert abs(float(model.config.stds[0]) - 1e-3) < 1e-6
    model.train([img[..., None]], [val[..., None]], verbose=0, seed=0)
    path = export_bioimageio(model, tmp_path / "tiny_std.bioimage.io.zip", test_img=img, axes="YX",
                             validate=False, weight_formats=("keras_v3",), authors=["Jane Doe"])
    from n2v_tf.export import package_geometry
    halo = package_geometry(model.config)["halo"]
    x = img[:128, :128]  # a valid input size (min + n * 2**depth)
    # bioimageio.core pads the image by the halo (symmetric) and crops the output: predict the same network input
    padded = np.pad(x, halo, mode="symmetric")
    raw = predict(model=str(path), inputs=x[None, ..., None], skip_postprocessing=True)
    # the package's network, loaded by plain Keras (its batch norm is Keras' own, not the fused kernel our
    # in-memory model runs, which rounds differently in the last bit), on the input our predict computes
    with zipfile.ZipFile(path) as z:
        z.extract("n2v_model.keras", tmp_path / "unzipped")
    plain = keras.saving.load_model(tmp_path / "unzipped" / "n2v_model.keras", compile=False)
    net = plain.predict(normalize(padded, *model.config.normalization())[None, ..., None], verbose=0)
    # the package's pre-processing gives the network exactly the input predict gives it
    np.testing.assert_array_equal(raw.members["output"].data.values[0, ..., 0], net[0, halo:-halo, halo:-halo, 0])
    out = predict(model=str(path), inputs=x[None, ..., None]).members["output"].data.values[0, ..., 0]
    ours = model.predict(padded, "YX")[halo:-halo, halo:-halo]
    err = np.abs(out - ours).max() / (x.max() - x.min())  # of the image's range
    assert err <= 1e-6, err


def test_export_refuses_std_below_the_spec_minimum(tmp_path):
    pytest.importorskip("bioimageio.spec")
    from n2v_tf.export import export_bioimageio
    _, noisy = smooth_image((96, 96))
    img = ((noisy - noisy.mean()) / noisy.std() * 1e-6).astype(np.float32)
    model = N2V(tiny_config([img[..., None]]), "too_small", basedir=tmp_path)
    model.train([img[..., None]], [img[::-1, :, None].copy()], epochs=1, steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=r"config\.stds\[0\] = 1e-06 is too small.*std >= 1e-06.*Rescale"):
        export_bioimageio(model, tmp_path / "x.bioimage.io.zip", test_img=img, axes="YX", validate=False)
    assert not (tmp_path / "x.bioimage.io.zip").exists()
