"""Every n2v 0.3.3 model folder of tests/data/n2v033 loads and predicts what n2v 0.3.3 predicted.

The folders cover the settings that change n2v's layer graph or layer names (2D/3D, depth 1-4, kernel 3/5,
residual, relu output, batch norm off, N2V2 blur-pool/skip-one, one net per channel or one joint net,
1-3 channels); ``tests/data/make_n2v033_fixtures.py`` lists them and says how they were made.
"""
import json
import shutil
from contextlib import nullcontext

import numpy as np
import pytest
from conftest import FIXTURES

from n2v_tf import N2V

FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").exists())
# the four first folders are also checked by test_models.py (marked slow there): slow here too, which keeps the
# default run of this file at ~15 s on two CPU cores
OLDER = ("n2v_2d", "n2v2_2d", "n2v_3d", "n2v_2d_rgb")


def test_fixture_folders_are_complete():
    assert len(FOLDERS) >= 24  # 4 older folders + 20 from make_n2v033_fixtures.py
    for name in FOLDERS:
        files = {p.name for p in (FIXTURES / name).iterdir()}
        assert {"config.json", "weights_best.h5", "weights_last.h5", "test_input.npy", "test_output.npy",
                "axes.txt"} <= files, name


@pytest.mark.parametrize("folder", [pytest.param(f, marks=pytest.mark.slow) if f in OLDER else f for f in FOLDERS])
def test_n2v033_folder_predicts_the_same(folder, tmp_path):
    shutil.copytree(FIXTURES / folder, tmp_path / folder)  # loading must not need write access to tests/
    x = np.load(tmp_path / folder / "test_input.npy")
    expected = np.load(tmp_path / folder / "test_output.npy")
    axes = (tmp_path / folder / "axes.txt").read_text().strip()
    config = json.loads((tmp_path / folder / "config.json").read_text())
    # n2v 0.3.x fed the last channel to every per-channel network; n2v_tf reproduces that and warns
    lambda_bug = config["single_net_per_channel"] and config["n_channel_in"] > 1
    with pytest.warns(UserWarning, match="last input channel") if lambda_bug else nullcontext():
        model = N2V(None, folder, basedir=str(tmp_path))
    got = model.predict(x, axes)
    assert got.shape == expected.shape and got.dtype == np.float32
    err = np.abs(got - expected).max() / (expected.max() - expected.min())
    assert err <= 1e-4, f"{folder}: max abs diff / range = {err:.2e}"


@pytest.mark.parametrize("folder, joint", [("n2v_2d_joint_c2_d3_k5", False), ("n2v_2d_perch_c2_d1", True)])
def test_weights_of_the_other_network_kind_are_refused(folder, joint):
    from n2v_tf.nets import build_unet, load_weights_h5
    config = json.loads((FIXTURES / folder / "config.json").read_text())
    model = build_unet(n_dim=2, n_channel_in=2, n_depth=config["unet_n_depth"], kern_size=config["unet_kern_size"],
                       n_first=config["unet_n_first"], single_net_per_channel=not joint)
    with pytest.raises(ValueError, match="single_net_per_channel"):
        load_weights_h5(model, FIXTURES / folder / "weights_best.h5")
