"""N2VConfig: n2v 0.3.3 defaults, validation messages, JSON round trip."""
import json

import numpy as np
import pytest

from n2v_tf import N2VConfig


@pytest.mark.parametrize("n_dim", (2, 3))
def test_defaults_follow_n2v(n_dim):
    X = np.random.default_rng(0).normal(5, 2, (2,) + (8,) * n_dim + (1,)).astype(np.float32)
    c = N2VConfig(X)
    assert c.n_dim == n_dim and c.axes == ("ZYXC" if n_dim == 3 else "YXC")
    assert c.unet_kern_size == (5 if n_dim == 2 else 3)
    assert (c.unet_n_depth, c.unet_n_first, c.train_batch_size, c.train_epochs) == (2, 32, 16, 100)
    assert c.n2v_manipulator == "uniform_withCP" and c.n2v_neighborhood_radius == 5
    assert c.train_loss == "mae" and c.n2v_perc_pix == 1.5 and c.train_learning_rate == 0.0004
    assert c.train_checkpoint == "weights_best.h5"
    assert c.blurpool is False and c.skip_skipone is False and c.structN2Vmask is None
    assert abs(float(c.means[0]) - X.mean()) < 1e-4 and abs(float(c.stds[0]) - X.std()) < 1e-4
    assert c.is_valid()


def test_list_of_images_statistics():
    rng = np.random.default_rng(1)
    imgs = [rng.normal(3, 1, (40, 50, 2)), rng.normal(3, 1, (64, 33, 2))]
    c = N2VConfig(imgs)
    allpix = np.concatenate([im.reshape(-1, 2) for im in imgs])
    np.testing.assert_allclose([float(m) for m in c.means], allpix.mean(0), rtol=1e-6)
    np.testing.assert_allclose([float(s) for s in c.stds], allpix.std(0), rtol=1e-6)
    assert c.n_channel_in == 2 and c.n_dim == 2


def test_typo_names_closest_valid_name():
    X = np.zeros((1, 8, 8, 1), np.float32) + np.arange(8)[:, None, None]
    with pytest.raises(ValueError, match=r"unet_n_frist.*did you mean 'unet_n_first'"):
        N2VConfig(X, unet_n_frist=8)


def test_all_invalid_fields_in_one_message():
    X = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
    c = N2VConfig(X, unet_n_depth=2, n2v_patch_shape=(30, 30), n2v_manipulator="bogus", train_loss="l3",
                  train_batch_size=0)
    with pytest.raises(ValueError) as e:
        c.validate()
    msg = str(e.value)
    for field in ("n2v_patch_shape", "n2v_manipulator", "train_loss", "train_batch_size"):
        assert field in msg
    assert "(30, 30)" in msg and "'bogus'" in msg and "divisible by" in msg
    ok, bad = c.is_valid(return_invalid=True)
    assert not ok and set(bad) == {"n2v_patch_shape", "n2v_manipulator", "train_loss", "train_batch_size"}


def test_perc_pix_that_masks_nothing_is_invalid():
    X = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
    c = N2VConfig(X, n2v_patch_shape=(8, 8), n2v_perc_pix=0.01)
    with pytest.raises(ValueError, match=r"n2v_perc_pix.*no pixel"):
        c.validate()


def test_bad_struct_mask_and_probabilistic_rejected():
    X = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
    for mask in ([[1, 1]], [[[1]]], [[0, 2, 0]]):
        assert "structN2Vmask" in N2VConfig(X, structN2Vmask=mask).invalid_fields()
    X3 = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    assert "probabilistic" in N2VConfig(X3, probabilistic=True).invalid_fields()  # PN2V: one channel
    assert "pn2v_samples" in N2VConfig(X, probabilistic=True, pn2v_samples=1).invalid_fields()


def test_json_round_trip_and_n2v_config_loads(tmp_path):
    X = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
    c = N2VConfig(X, unet_n_first=4, n2v_patch_shape=[16, 16])
    d = json.loads(json.dumps(vars(c)))
    c2 = N2VConfig(None, **N2VConfig.update_loaded_config(d))
    assert vars(c2) == vars(c)
    from conftest import FIXTURES
    for folder in FIXTURES.iterdir():
        old = json.loads((folder / "config.json").read_text())
        assert N2VConfig(np.array([]), **old).is_valid(), folder.name


def test_batch_norm_momentum_field():
    X = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
    assert N2VConfig(X, batch_norm_momentum=0.9).is_valid()
    with pytest.raises(ValueError, match=r"batch_norm_momentum must be a number in \[0, 1\), got 1.0"):
        N2VConfig(X, batch_norm_momentum=1.0).validate()
    assert "batch_norm_momentum" in N2VConfig(X, batch_norm_momentum="0.9").invalid_fields()
    # a config.json written before the field existed (n2v 0.3.x) loads with the value it was trained with
    from conftest import FIXTURES
    old = json.loads(next(iter(sorted(FIXTURES.glob("*/config.json")))).read_text())
    assert "batch_norm_momentum" not in old
    assert N2VConfig(None, **N2VConfig.update_loaded_config(old)).batch_norm_momentum == 0.99
    new = N2VConfig(X, batch_norm_momentum=0.9)
    again = N2VConfig(None, **N2VConfig.update_loaded_config(json.loads(json.dumps(vars(new)))))
    assert again.batch_norm_momentum == 0.9


@pytest.mark.parametrize("line", [
    "from n2v.models import N2VConfig, N2V",
    "from n2v.utils.n2v_utils import manipulate_val_data, autocorrelation, tta_forward, tta_backward",
    "from n2v.utils.n2v_utils import pm_uniform_withCP, pm_median, pm_mean",
    "from n2v.internals.N2V_DataGenerator import N2V_DataGenerator",
])
def test_n2v_import_lines_work_with_n2v_replaced_by_n2v_tf(line):
    """The ZeroCostDL4Mic/n2v notebooks' import lines, with 'n2v' replaced by 'n2v_tf' (issue 11)."""
    namespace = {}
    exec(line.replace("from n2v.", "from n2v_tf."), namespace)
    names = [n.strip() for n in line.split("import")[1].split(",")]
    assert all(callable(namespace[n]) for n in names)
