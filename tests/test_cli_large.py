"""``n2v-tf predict`` for large images: block-wise to Zarr/OME-Zarr/BigTIFF, Zarr inputs, Dask schedulers, refusal of
existing outputs, missing extras."""
import sys

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from n2v_tf import N2V, N2VConfig
from n2v_tf.cli import main
from n2v_tf.large import predict_blocks
from conftest import random_batch_norm


def _model(tmp_path, seed=0):
    """A tiny untrained 2D model in tmp_path/models/m, with batch-norm statistics that matter (as test_large.py)."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(2, 16, 16, 1)) * 10 + 100).astype(np.float32)
    # n2v's network (nearest upsampling): the images and blocks of these tests are sized for its receptive field
    config = N2VConfig(X, unet_n_depth=2, unet_n_first=4, unet_kern_size=3, n2v_patch_shape=(16, 16),
                       unet_upsampling="nearest")
    model = N2V(config, "m", basedir=str(tmp_path / "models"))
    random_batch_norm(model.keras_model, rng)
    model.keras_model.save_weights(str(tmp_path / "models" / "m" / "weights_best.h5"))
    return model


def _image(shape, seed=1):
    return (np.random.default_rng(seed).normal(size=shape) * 10 + 100).astype(np.float32)


def _close(a, ref):
    np.testing.assert_allclose(np.asarray(a), ref, atol=1e-4 * np.ptp(ref))


def _predict(tmp_path, *args):
    return main(["predict", *map(str, args), "--model-dir", str(tmp_path / "models"), "--name", "m"])


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def model_and_tif(tmp_path):
    model = _model(tmp_path)
    img = _image((90, 75))
    tifffile.imwrite(tmp_path / "big.tif", img)
    return model, img, model.predict(img, "YX")


def test_zarr_and_blockwise_tiff_outputs_equal_in_memory_predict(tmp_path, model_and_tif):
    _, _, ref = model_and_tif
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "out.zarr", "--block-shape", "32,32") == 0
    z = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert z.chunks == (32, 32) and z.dtype == np.float32
    _close(z[...], ref)
    assert not (tmp_path / "out.zarr.partial").exists()
    # --blocks with a .tif output: one BigTIFF file; a Zarr input with an output folder: <name>_n2v.zarr in it
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "out.tif", "--blocks") == 0
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_bigtiff
        _close(tif.asarray(), ref)
    assert _predict(tmp_path, tmp_path / "out.zarr", "--axes", "YX", "--output", tmp_path / "again",
                    "--dtype", "input") == 0
    _close(zarr.open_array(str(tmp_path / "again" / "out_n2v.zarr"), mode="r")[...],
           model_and_tif[0].predict(ref, "YX"))


def test_ome_zarr_output_has_multiscales_and_keeps_pixel_sizes(tmp_path):
    model = _model(tmp_path)
    img = _image((2, 64, 48))
    src = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=2)
    src.create_array("0", shape=img.shape, chunks=(1, 32, 48), dtype=img.dtype)[...] = img
    src.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "t", "type": "time"},
                                                            {"name": "y", "type": "space", "unit": "micrometer"},
                                                            {"name": "x", "type": "space", "unit": "micrometer"}],
                                 "datasets": [{"path": "0", "coordinateTransformations": [
                                     {"type": "scale", "scale": [1.0, 0.25, 0.5]}]}]}]
    assert _predict(tmp_path, tmp_path / "in.ome.zarr", "--output", tmp_path / "out", "--block-shape", "32") == 0
    group = zarr.open_group(str(tmp_path / "out" / "in_n2v.ome.zarr"), mode="r")
    ms = group.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"] and ms["axes"][1]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.25, 0.5]
    _close(group["0"][...], model.predict(img, "TYX"))


def test_dask_threads_to_ome_zarr_and_a_folder_of_tiffs(tmp_path, model_and_tif, capsys):
    model, _, ref = model_and_tif
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "d.ome.zarr", "--dask-scheduler",
                    "threads", "--block-shape", "45,40") == 0
    group = zarr.open_group(str(tmp_path / "d.ome.zarr"), mode="r")
    assert [a["name"] for a in group.attrs["multiscales"][0]["axes"]] == ["y", "x"]
    assert group["0"].chunks == (45, 40)
    _close(group["0"][...], ref)
    # a folder of TIFFs: distributed file by file, one <name>_n2v.tif each
    (tmp_path / "many").mkdir()
    imgs = [_image((48, 40), seed=s) for s in (2, 3)]
    for i, im in enumerate(imgs):
        tifffile.imwrite(tmp_path / "many" / f"im{i}.tif", im)
    assert _predict(tmp_path, tmp_path / "many", "--output", tmp_path / "den", "--dask-scheduler", "threads") == 0
    assert "Wrote 2 denoised image(s)" in capsys.readouterr().out
    for i, im in enumerate(imgs):
        _close(tifffile.imread(tmp_path / "den" / f"im{i}_n2v.tif"), model.predict(im, "YX"))


def test_existing_output_is_refused_without_overwrite(tmp_path, model_and_tif, capsys):
    model, img, ref = model_and_tif
    tifffile.imwrite(tmp_path / "other.tif", 2 * img)
    for extra in ([], ["--dask-scheduler", "threads"]):
        out = tmp_path / f"o{len(extra)}.zarr"
        assert _predict(tmp_path, tmp_path / "big.tif", "--output", out, *extra) == 0
        capsys.readouterr()
        assert _predict(tmp_path, tmp_path / "other.tif", "--output", out, *extra) == 2
        err = _error_line(capsys)
        assert "exists" in err and "--overwrite" in err and "overwrite=True" not in err
        _close(zarr.open_array(str(out), mode="r")[...], ref)  # untouched
        assert _predict(tmp_path, tmp_path / "other.tif", "--output", out, "--overwrite", *extra) == 0
        _close(zarr.open_array(str(out), mode="r")[...], model.predict(2 * img, "YX"))


def test_usage_errors_and_missing_extras_are_one_line(tmp_path, model_and_tif, capsys, monkeypatch):
    tifffile.imwrite(tmp_path / "b.tif", _image((40, 40)))
    cases = [
        ([tmp_path / "big.tif", tmp_path / "b.tif", "--output", tmp_path / "o.zarr"], "names one image"),
        ([tmp_path / "big.tif", "--output", tmp_path / "o.zarr", "--block-shape", "32,32,32"], "2 positive sizes"),
        ([tmp_path / "big.tif", "--output", tmp_path / "o.zarr", "--n-tiles", "2", "2"], "--n-tiles"),
        ([tmp_path / "big.tif", "--output", tmp_path / "o.zarr", "--axes", "ZYX"], "--axes"),
    ]
    for args, message in cases:
        assert _predict(tmp_path, *args) == 2
        assert message in _error_line(capsys)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "o.zarr", "--dask-scheduler",
                    "tcp://127.0.0.1:1") == 2
    assert 'pip install "n2v_tf[large]"' in _error_line(capsys)
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.slow
def test_dask_scheduler_address_of_a_local_cluster(tmp_path, model_and_tif):
    distributed = pytest.importorskip("distributed")
    _, _, ref = model_and_tif
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "c.zarr", "--block-shape", "48,40",
                        "--dask-scheduler", cluster.scheduler_address) == 0
    _close(zarr.open_array(str(tmp_path / "c.zarr"), mode="r")[...], ref)


def test_match_mean_in_memory_and_refused_blockwise(tmp_path, model_and_tif, capsys):
    model, img, plain = model_and_tif
    out = tmp_path / "den"
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", out, "--match-mean") == 0
    got = tifffile.imread(out / "big_n2v.tif")
    _close(got, model.predict(img, "YX", match_mean=True))
    assert abs(float(got.mean()) - float(img.mean())) < 1e-4 * np.ptp(img)
    assert abs(float(plain.mean()) - float(img.mean())) > 1e-2 * np.ptp(img)   # the plain prediction is offset
    capsys.readouterr()
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "out.zarr", "--match-mean") == 2
    assert "--match-mean needs each whole image in memory" in _error_line(capsys)
    assert not (tmp_path / "out.zarr").exists()


def test_calibrate_in_memory_and_blockwise(tmp_path, model_and_tif, capsys):
    """``--calibrate K`` writes ``predict(..., calibrate=K)``, ``--calibrate auto --calibrate-bins N`` the same with
    those arguments; to Zarr, ``predict_blocks(..., calibrate=K)``, with Dask the same; bad values are refused with
    the option's name."""
    model, img, plain = model_and_tif
    out = tmp_path / "den"
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", out, "--calibrate", "2") == 0
    got = tifffile.imread(out / "big_n2v.tif")
    _close(got, model.predict(img, "YX", calibrate=2))
    assert np.abs(got - plain).max() > 1e-3 * np.ptp(plain)  # the calibration changed the prediction
    capsys.readouterr()
    # block-wise: fitted on masked blocks, as predict_blocks does
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "out.zarr", "--calibrate", "2") == 0
    _close(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...],
           predict_blocks(model, img, None, "YX", progress=False, calibrate=2))
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", tmp_path / "out2.zarr", "--calibrate", "2",
                    "--dask-scheduler", "threads") == 0  # the curve fitted the same way, applied on the workers
    _close(zarr.open_array(str(tmp_path / "out2.zarr"), mode="r")[...], zarr.open_array(str(tmp_path / "out.zarr"),
                                                                                       mode="r")[...])
    out2 = tmp_path / "den2"
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", out2, "--calibrate", "auto",
                    "--calibrate-bins", "3") == 0
    _close(tifffile.imread(out2 / "big_n2v.tif"), model.predict(img, "YX", calibrate="auto", calibrate_bins=3))
    capsys.readouterr()
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", out2, "--calibrate-bins", "3") == 2
    assert "--calibrate-bins 3 needs --calibrate K" in _error_line(capsys)
    for bad in ("-1", "many"):
        assert _predict(tmp_path, tmp_path / "big.tif", "--output", out2, "--calibrate", bad) == 2
        assert "must be a number of mask draws >= 0 or 'auto'" in _error_line(capsys)
    assert _predict(tmp_path, tmp_path / "big.tif", "--output", out2, "--calibrate", "2", "--calibrate-bins", "0") == 2
    assert "--calibrate-bins must be a number of curve segments >= 1" in _error_line(capsys)
