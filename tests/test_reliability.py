"""Reliability (issue 11): optional TensorBoard, clear errors for bad files and values, nothing half-written,
interrupted training that resumes, reproducible seeded runs, n2v's export_TF calls, TIFF metadata in the CLI."""
import importlib.util
import json

import keras
import numpy as np
import pytest
import tifffile

from conftest import smooth_image, tiny_config
from n2v_tf import N2V
from n2v_tf.io import atomic_path, read_tiff_metadata, write_text_atomic


def _data(n_dim=2, seed=0):
    shape = (24, 48, 48) if n_dim == 3 else (96, 96)
    _, noisy = smooth_image(shape, seed=seed)
    return [noisy[..., None]], [smooth_image(shape, seed=seed + 1)[1][..., None]]


def _trained(tmp_path, name="m", **kwargs):
    X, X_val = _data()
    model = N2V(tiny_config(X, **kwargs), name, basedir=tmp_path)
    model.train(X, X_val, verbose=0, seed=1)
    return model, X, X_val


def _weights(model):
    return [np.array(w) for w in model.keras_model.get_weights()]


# --------------------------------------------------------------------------- TensorBoard

def test_missing_tensorboard_warns_and_trains(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    X, X_val = _data()
    model = N2V(tiny_config(X, train_tensorboard=True), "tb", basedir=tmp_path)
    with pytest.warns(UserWarning, match="TensorBoard is not installed: pip install tensorboard.*continues"):
        history = model.train(X, X_val, verbose=0)
    assert len(history.history["loss"]) == 2
    assert not any(isinstance(cb, keras.callbacks.TensorBoard) for cb in model.callbacks)
    assert (tmp_path / "tb" / "weights_best.h5").exists()


# --------------------------------------------------------------------------- bad files and values

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_weight_file_names_the_file(tmp_path, damage):
    model, _, _ = _trained(tmp_path)
    assert not model.config.train_restore_best  # a new config: the folder loads its final weights
    path = model.logdir / "weights_last.h5"
    raw = path.read_bytes()
    path.write_bytes(b"not an hdf5 file" * 10 if damage == "garbage" else raw[: len(raw) // 3])
    with pytest.raises(OSError, match=r"weights_last\.h5.*corrupt or truncated.*weights_best\.h5"):
        N2V(None, "m", basedir=tmp_path)


def test_bad_config_json_gets_clear_errors(tmp_path):
    model, _, _ = _trained(tmp_path)
    path = model.logdir / "config.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*line 1.*corrupt or truncated"):
        N2V(None, "m", basedir=tmp_path)
    cfg = json.loads(text)
    del cfg["means"]
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json lacks the required field\(s\) means"):
        N2V(None, "m", basedir=tmp_path)
    cfg = json.loads(text)
    cfg["unet_n_first"] = 16  # the weights were trained with 8 filters
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"weights_last\.h5.*shapes.*different architecture"):
        N2V(None, "m", basedir=tmp_path)
    cfg = json.loads(text)
    cfg["n2v_neighborhood_radius"] = 0
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json.*n2v_neighborhood_radius must be an integer >= 1"):
        N2V(None, "m", basedir=tmp_path)


def test_bad_values_are_refused():
    X, _ = _data()
    with pytest.raises(ValueError, match=r"n2v_neighborhood_radius must be an integer >= 1.*identity\), got 0"):
        N2V(tiny_config(X, n2v_neighborhood_radius=0), "m", basedir=None)
    with pytest.raises(ValueError, match="structN2Vmask .*not larger than n2v_patch_shape"):
        N2V(tiny_config(X, structN2Vmask=[[1] * 35]), "m", basedir=None)


def test_predict_refuses_nan_or_fills_it_with_a_warning():
    X, _ = _data()
    model = N2V(tiny_config(X), "m", basedir=None)
    img = X[0][..., 0].copy()
    img[40, 50], img[3, 3] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"2 NaN/Inf value\(s\).*nan_policy='fill'"):
        model.predict(img, "YX")
    with pytest.warns(UserWarning, match="NaN/Inf.*nan_policy='fill'"):
        out = model.predict(img, "YX", nan_policy="fill")
    bad = ~np.isfinite(img)
    assert np.isnan(out[bad]).all() and np.isfinite(out[~bad]).all()
    stack = np.stack([img, X[0][..., 0]])  # the policy reaches every image of a stack
    with pytest.raises(ValueError, match="NaN/Inf"):
        model.predict(stack, "SYX")
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        model.predict(X[0][..., 0], "YX", nan_policy="ignore")


def test_too_many_tiles_are_refused():
    X, _ = _data()
    model = N2V(tiny_config(X), "m", basedir=None)  # depth 2: tiles need >= 4 px
    img = X[0][..., 0]
    with pytest.raises(ValueError, match=r"48 tiles along Y \(96 px\) would be 2 px each.*at most 24 tiles along Y"):
        model.predict(img, "YX", n_tiles=(48, 1))
    assert model.predict(img, "YX", n_tiles=(4, 2)).shape == img.shape


# --------------------------------------------------------------------------- nothing half-written

def test_atomic_path_keeps_the_previous_file(tmp_path):
    target = tmp_path / "weights.weights.h5"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".weights.h5") and tmp.parent == tmp_path and tmp != target
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    write_text_atomic(target, "complete")
    assert target.read_text() == "complete"


def test_crash_while_saving_weights_keeps_the_previous_file(tmp_path, monkeypatch):
    import csbdeep.models.base_model as base_model
    model, _, _ = _trained(tmp_path)
    path = model.logdir / "weights_best.h5"
    before = path.read_bytes()

    def crash(f, keras_model):
        f.create_group("half_written")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing the file

    monkeypatch.setattr(base_model, "save_weights_to_hdf5_group", crash)
    with pytest.raises(KeyboardInterrupt):
        model.keras_model.save_weights(str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in model.logdir.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    N2V(None, "m", basedir=tmp_path)  # still loads


def test_crash_while_writing_config_keeps_the_previous_file(tmp_path, monkeypatch):
    import os
    model, X, _ = _trained(tmp_path)
    path = model.logdir / "config.json"
    before = path.read_text()

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space left"):
        N2V(tiny_config(X, unet_n_first=4), "m", basedir=tmp_path, overwrite=True)
    assert path.read_text() == before


def test_crash_while_saving_a_noise_model_keeps_the_previous_file(tmp_path, monkeypatch):
    from n2v_tf import HistogramNoiseModel
    rng = np.random.default_rng(0)
    signal = rng.uniform(0, 100, (4, 32, 32))
    nm = HistogramNoiseModel.fit(signal, signal + rng.normal(0, 5, signal.shape), bins=16)
    path = tmp_path / "nm.npz"
    nm.save(path)
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError):
        nm.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["nm.npz"]


# --------------------------------------------------------------------------- interruption, resume, seeds

class _StopAt(keras.callbacks.Callback):
    """Press Ctrl-C at the first batch of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current, self.saved = epoch, 0, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        self.saved[epoch] = [np.array(w) for w in self.model.get_weights()]


def _fresh(tmp_path, name, X, seed=7, **kwargs):
    keras.utils.set_random_seed(seed)  # the same initial weights for every model of a test
    return N2V(tiny_config(X, train_epochs=3, train_steps_per_epoch=3, **kwargs), name, basedir=tmp_path)


@pytest.mark.slow
def test_ctrl_c_keeps_the_completed_epochs_and_resume_continues_exactly(tmp_path):
    X, X_val = _data()
    reference = _fresh(tmp_path, "uninterrupted", X)
    reference.train(X, X_val, verbose=0, seed=3)

    model = _fresh(tmp_path, "interrupted", X)
    model.prepare_for_training()
    stop = _StopAt(epoch=2)
    model.callbacks.append(stop)
    with pytest.warns(UserWarning, match=r"interrupted after 2 completed epoch\(s\).*resume=True"):
        history = model.train(X, X_val, verbose=0, seed=3)
    assert len(history.history["loss"]) == 2
    last = N2V(None, "interrupted", basedir=tmp_path)
    last.load_weights("weights_last.h5")
    for a, b in zip(_weights(last), stop.saved[1]):
        np.testing.assert_array_equal(a, b)  # weights_last.h5 = end of the last completed epoch
    assert not list(model.logdir.glob(".*"))  # no temporary file left behind

    resumed = N2V(None, "interrupted", basedir=tmp_path)  # a new session
    history = resumed.train(X, X_val, verbose=0, resume=True)
    assert len(history.history["loss"]) == 1  # only epoch 3 was left
    assert int(resumed.keras_model.optimizer.iterations) == 9
    resumed.load_weights("weights_last.h5")
    reference.load_weights("weights_last.h5")
    for a, b in zip(_weights(resumed), _weights(reference)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"already trained for 3 epoch\(s\).*epochs=6"):
        resumed.train(X, X_val, verbose=0, resume=True)
    more = resumed.train(X, X_val, epochs=4, verbose=0, resume=True)
    assert len(more.history["loss"]) == 1


def test_resume_without_state_says_why(tmp_path):
    X, X_val = _data()
    model = N2V(tiny_config(X), "m", basedir=tmp_path)
    with pytest.raises(FileNotFoundError, match="training_state.npz does not exist.*train without resume"):
        model.train(X, X_val, verbose=0, resume=True)


@pytest.mark.slow
def test_resume_continues_the_learning_rate_schedule(tmp_path):
    X, X_val = _data()
    model = _fresh(tmp_path, "lr", X, train_reduce_lr={"factor": 0.5, "patience": 1, "min_delta": 1e9})
    model.train(X, X_val, epochs=2, verbose=0, seed=0)   # every epoch "fails to improve": lr halves after each
    lr = float(keras.ops.convert_to_numpy(model.keras_model.optimizer.learning_rate))
    resumed = N2V(None, "lr", basedir=tmp_path)
    history = resumed.train(X, X_val, epochs=3, verbose=0, resume=True)
    assert history.history["lr"][0] <= lr < model.config.train_learning_rate


@pytest.mark.slow
def test_seeded_training_is_reproducible(tmp_path):
    X, X_val = _data()
    runs = []
    for name in ("a", "b"):
        model = _fresh(tmp_path, name, X)
        history = model.train(X, X_val, epochs=2, verbose=0, seed=11)
        runs.append((_weights(model), history.history["val_loss"]))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]  # the same validation masks and batches
    other = _fresh(tmp_path, "c", X)
    other.train(X, X_val, epochs=2, verbose=0, seed=12)
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0][0], _weights(other)))


# --------------------------------------------------------------------------- export_TF as n2v calls it

def test_export_tf_to_a_new_folder_with_a_small_test_image(tmp_path):
    pytest.importorskip("bioimageio.spec")
    import zipfile
    from n2v_tf.export import package_geometry
    model, X, X_val = _trained(tmp_path)
    n = package_geometry(model.config)["min"]  # depth 2, kernel 3: 60
    patch = X_val[0][:32, :32, 0]  # a training patch, as notebooks pass X_val[0]
    folder = tmp_path / "export" / "my_model"
    path = model.export_TF("N2V small", "test", "Jane Doe, John Doe", patch, "YX", (32, 32), result_path=folder,
                           validate=False, weight_formats=("keras_v3",))
    assert path == folder / "my_model.bioimage.io.zip" and path.is_file()
    with zipfile.ZipFile(path) as zf:
        readme = zf.read("README.md").decode()
        test_in = np.load(zf.open("test_input.npy"))
    assert f"reflect-padded to {n} x {n}" in readme and "(32 x 32 pixels" in readme
    assert test_in.shape == (1, n, n, 1)
    lo = (n - 32) // 2
    np.testing.assert_allclose(test_in[0, lo:lo + 32, lo:lo + 32, 0], patch)


# --------------------------------------------------------------------------- CLI: metadata, dtype, bad files

@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_model")
    keras.utils.set_random_seed(0)
    _trained(base, name="m")
    return base


def test_cli_predict_keeps_imagej_calibration_and_dtype(cli_model, tmp_path):
    from n2v_tf.cli import main
    img = np.clip(smooth_image((3, 64, 64))[1] * 100, 0, 65535).astype(np.uint16)
    src = tmp_path / "in" / "stack.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, img, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TYX", "unit": "um", "finterval": 2.5})
    for dtype, expected in (("float32", np.float32), ("input", np.uint16)):
        out = tmp_path / f"out_{dtype}"
        assert main(["predict", str(src), "--model-dir", str(cli_model), "--name", "m", "--axes", "TYX",
                     "--output", str(out), "--dtype", dtype]) == 0
        res = out / "stack_n2v.tif"
        meta_in, meta_out = read_tiff_metadata(src), read_tiff_metadata(res)
        assert meta_out["kind"] == "imagej" and meta_out["axes"] == meta_in["axes"]
        assert meta_out["imagej"]["unit"] == "um" and meta_out["imagej"]["finterval"] == 2.5
        assert meta_out["resolution"] == meta_in["resolution"]
        data = tifffile.imread(res)
        assert data.dtype == expected and data.shape == img.shape
    assert data.min() >= 0


def test_cli_predict_keeps_ome_physical_sizes(cli_model, tmp_path):
    from n2v_tf.cli import main
    src = tmp_path / "in.ome.tif"
    tifffile.imwrite(src, smooth_image((64, 64))[1], ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.13, "PhysicalSizeY": 0.14,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    assert main(["predict", str(src), "--model-dir", str(cli_model), "--name", "m", "--output", str(tmp_path / "o")]) == 0
    meta = read_tiff_metadata(tmp_path / "o" / "in.ome_n2v.tif")
    assert meta["kind"] == "ome"
    assert meta["ome"]["PhysicalSizeX"] == 0.13 and meta["ome"]["PhysicalSizeY"] == 0.14
    assert meta["ome"]["PhysicalSizeXUnit"] == "µm"


def test_cli_predict_names_bad_files_and_skips_them_if_asked(cli_model, tmp_path, capsys):
    from n2v_tf.cli import main
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a_good.tif", smooth_image((64, 64))[1])
    (folder / "b_broken.tif").write_bytes(b"II*\x00garbage" * 3)
    tifffile.imwrite(folder / "c_empty.tif", np.zeros((0, 64), np.float32))
    args = ["predict", str(folder), "--model-dir", str(cli_model), "--name", "m", "--output", str(tmp_path / "o")]
    assert main(args) == 2
    assert "b_broken.tif" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 1
    captured = capsys.readouterr()
    assert "b_broken.tif" in captured.err and "c_empty.tif" in captured.err
    assert "skipped 2 file(s)" in captured.out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_good_n2v.tif"]


def test_cli_output_is_not_half_written(cli_model, tmp_path, monkeypatch):
    from n2v_tf.cli import main
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, smooth_image((64, 64))[1])
    out = tmp_path / "o"
    out.mkdir()
    (out / "a_n2v.tif").write_bytes(b"previous result")
    real = tifffile.imwrite

    def crash(path, data, **kw):
        real(path, data[: len(data) // 2], **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(tifffile, "imwrite", crash)
    assert main(["predict", str(src), "--model-dir", str(cli_model), "--name", "m", "--output", str(out)]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["a_n2v.tif"]
    assert (out / "a_n2v.tif").read_bytes() == b"previous result"


def test_export_tf_without_the_bioimageio_extra_warns_and_goes_on(tmp_path, monkeypatch):
    import n2v_tf.export as export

    def missing(*modules, purpose):
        raise ImportError(f"{purpose} needs the optional dependencies of n2v_tf's 'bioimageio' extra; missing: "
                          f"bioimageio.spec. Install them with: {export.INSTALL_HINT}")

    monkeypatch.setattr(export, "_require", missing)
    model, X, _ = _trained(tmp_path)
    with pytest.warns(UserWarning, match=r"export_TF skipped, nothing was written: .*pip install \"n2v_tf\[bioimageio\]\""):
        assert model.export_TF("N2V test", "d", "Jane Doe", X[0][..., 0], "YX", (32, 32),
                               result_path=tmp_path / "out") is None
    assert not (tmp_path / "out").exists()
    with pytest.raises(ImportError, match="bioimageio"):  # the explicit API still says it
        model.export_bioimageio(tmp_path / "x.bioimage.io.zip", test_img=X[0][..., 0], axes="YX")
