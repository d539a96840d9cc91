"""structN2V end to end: masking with every manipulator, training through N2V, validation data, config checks.

tests/test_masking.py covers the masking internals (struct_hide_coords, footprints at the patch border,
no leak of the parent's value) with hand-written masks on one channel. Here the masks come from
:func:`n2v_tf.struct_mask` (a line along X, also in 3D), the batches have two channels, and the
mask travels through N2VConfig -> N2V -> the training and validation data -> config.json.
"""
import json

import numpy as np
import pytest
from conftest import smooth_image, tiny_config

import n2v_tf
from n2v_tf import N2V, MANIPULATORS, N2VConfig, mask_batch, stratified_coords, struct_mask, validation_data

NDIMS = (2, 3)
SHAPES = {2: (30, 40), 3: (6, 16, 20)}
PERC = {2: 4.0, 3: 4.0}           # box 5 in 2D, 3 in 3D
SPAN = 5                          # struct_mask('X', 5, n_dim): hides 2 pixels left and right of each blind spot


def unique_batch(B, shape, C=2):
    """Float32 batch whose values are all different (exact in float32), channel c offset by 1e5 * c."""
    base = np.arange(B * int(np.prod(shape)), dtype=np.float32).reshape((B,) + tuple(shape))
    return np.stack([base + 100000 * c for c in range(C)], axis=-1)


def hidden_pixels(active, mask, shape_full):
    """Boolean map of the pixels hidden around ``active`` (bool map ``shape_full``) by ``mask``, not active themselves.

    Written independently of n2v_tf.masking: every 1-entry of the mask other than the centre is an offset;
    offsets that leave the patch are dropped.
    """
    hidden = np.zeros(shape_full, bool)
    centre = np.array(mask.shape) // 2
    coords = np.argwhere(active)                                  # (N, 1 + n_dim)
    for off in np.argwhere(mask == 1) - centre:
        if not off.any():
            continue
        pos = coords + np.concatenate([[0], off])
        inside = np.all((pos[:, 1:] >= 0) & (pos[:, 1:] < np.array(shape_full[1:])), axis=1)
        hidden[tuple(pos[inside].T)] = True
    return hidden & ~active


# ---------------------------------------------------------------- (a) masking: every manipulator x 2D/3D

@pytest.mark.parametrize("manipulator", MANIPULATORS)
@pytest.mark.parametrize("n_dim", NDIMS)
def test_struct_masking_every_manipulator(n_dim, manipulator):
    shape, B, C = SHAPES[n_dim], 3, 2
    X = unique_batch(B, shape, C)
    X0 = X.copy()
    smask = struct_mask("X", SPAN, n_dim)
    assert smask.shape == (1,) * (n_dim - 1) + (SPAN,)
    smask0 = smask.copy()
    Xm, Y = mask_batch(X, PERC[n_dim], manipulator, radius=2, rng=7, struct_mask=smask)

    assert Xm.shape == X.shape and Y.shape == X.shape[:-1] + (2 * C,)
    assert Xm.dtype == Y.dtype == np.float32
    np.testing.assert_array_equal(smask, smask0)                  # the caller's mask is not modified
    np.testing.assert_array_equal(X, X0)                          # nor the input
    np.testing.assert_array_equal(Y[..., :C], X)                  # targets: the unmasked values

    # the blind spots: one per stratification box, the same draw as mask_batch's (same seed, drawn first)
    coords = stratified_coords(B, shape, PERC[n_dim], rng=np.random.default_rng(7))
    active = np.zeros(X.shape[:-1], bool)
    active[coords] = True
    loss = Y[..., C:]
    for c in range(C):
        np.testing.assert_array_equal(loss[..., c], active)       # every active pixel, and only those, in the loss

    hidden = hidden_pixels(active, smask, X.shape[:-1])
    assert hidden.sum() > 3 * active.sum()                        # most blind spots hide 4 neighbours
    assert not loss[hidden].any()                                 # hidden pixels are not in the loss mask
    changed = np.all(Xm[hidden] != X[hidden], axis=-1)            # ... and changed in every channel
    assert changed.mean() > 0.95, changed.mean()
    # the hidden line lies along X only: the Y (and Z) neighbours of a blind spot keep their values
    shifted = np.roll(active, 1, axis=-2) & ~active & ~hidden     # the pixel below each blind spot
    shifted[..., 0, :] = False                                    # no wrap-around across the patch border
    np.testing.assert_array_equal(Xm[shifted], X[shifted])
    assert shifted.sum() > 10


# ---------------------------------------------------------------- (c) validation data are masked with it too

@pytest.mark.parametrize("n_dim", NDIMS)
def test_validation_data_use_the_struct_mask(n_dim):
    patch = (16, 32) if n_dim == 2 else (4, 8, 16)
    X_val = unique_batch(2, patch, C=1)
    smask = struct_mask("X", SPAN, n_dim)
    common = dict(perc_pix=PERC[n_dim], manipulator="uniform_withCP", radius=2, seed=3)
    Xm, Y = validation_data(X_val, patch, struct_mask=smask, **common)
    active = Y[..., 1] == 1
    hidden = hidden_pixels(active, smask, X_val.shape[:-1])
    assert active.sum() > 5 and hidden.sum() > 3 * active.sum()
    assert not Y[..., 1][hidden].any()
    assert (Xm[..., 0][hidden] != X_val[..., 0][hidden]).mean() > 0.95
    # without the struct mask, the same blind spots (same seed) leave the neighbours untouched
    Xp, Yp = validation_data(X_val, patch, **common)
    np.testing.assert_array_equal(Yp[..., 1], Y[..., 1])
    np.testing.assert_array_equal(Xp[..., 0][hidden], X_val[..., 0][hidden])
    # a list of images is cut into patches and masked the same way
    img = unique_batch(1, tuple(2 * p for p in patch), C=1)[0]
    Xl, Yl = validation_data([img], patch, struct_mask=smask, **common)
    assert Xl.shape == (2 ** n_dim,) + patch + (1,)
    active = Yl[..., 1] == 1
    hidden = hidden_pixels(active, smask, Xl.shape[:-1])
    assert hidden.sum() > 3 * active.sum() and not Yl[..., 1][hidden].any()
    assert (Xl[..., 0][hidden] != Yl[..., 0][hidden]).mean() > 0.95


# ---------------------------------------------------------------- (b) training through N2V

def _spy(monkeypatch, module, name, calls, replacements=None):
    """Record the ``struct_mask`` (and ``struct_replacement``) argument of every call of ``module.name``."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(kwargs.get("struct_mask", args[5] if len(args) > 5 else None))
        if replacements is not None:
            replacements.append(kwargs.get("struct_replacement", args[6] if len(args) > 6 else "patch"))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize("n2v2", (False, True), ids=("n2v", "n2v2"))
@pytest.mark.parametrize("n_dim", NDIMS)
def test_struct_training_saves_and_reloads_the_mask(n_dim, n2v2, tmp_path, monkeypatch):
    shape = (48, 48) if n_dim == 2 else (8, 24, 24)
    _, noisy = smooth_image(shape)
    X = noisy[None, ..., None]
    smask = struct_mask("X", SPAN, n_dim)
    extra = dict(blurpool=True, skip_skipone=True, n2v_manipulator="median") if n2v2 else {}
    config = tiny_config(X, unet_n_first=4, unet_n_depth=1, train_epochs=2, train_steps_per_epoch=2,
                         n2v_patch_shape=(16, 16) if n_dim == 2 else (4, 16, 16), structN2Vmask=smask.tolist(),
                         **extra)
    assert config.n2v_struct_replacement == "local"                   # the default of new configs
    train_calls, val_calls, train_repl, val_repl = [], [], [], []
    _spy(monkeypatch, n2v_tf.data, "mask_batch", train_calls, train_repl)       # N2VSequence's training batches
    _spy(monkeypatch, n2v_tf.models, "validation_data", val_calls, val_repl)    # N2V.train's validation data
    model = N2V(config, "struct", basedir=str(tmp_path))
    hist = model.train(X, X, verbose=0, seed=0)

    for key in ("loss", "val_loss"):
        assert len(hist.history[key]) == 2 and np.isfinite(hist.history[key]).all(), hist.history
    assert len(train_calls) >= 4 and all(np.array_equal(m, smask) for m in train_calls)
    assert len(val_calls) == 1 and np.array_equal(val_calls[0], smask)
    assert set(train_repl) == {"local"} and val_repl == ["local"]

    saved = json.loads((tmp_path / "struct" / "config.json").read_text())
    assert saved["structN2Vmask"] == smask.tolist()
    again = N2V(None, "struct", basedir=str(tmp_path))
    assert np.array_equal(again.config.structN2Vmask, smask)
    assert saved["n2v_struct_replacement"] == "local" and again.config.n2v_struct_replacement == "local"
    assert again.config.blurpool is n2v2


# ---------------------------------------------------------------- (d) bad masks are rejected by N2V(config)

@pytest.mark.parametrize("n_dim", NDIMS)
@pytest.mark.parametrize("bad", ["even", "rank_low", "rank_high", "value_2", "value_neg", "larger", "ragged"])
def test_bad_struct_masks_are_rejected(n_dim, bad, tmp_path):
    patch = (16, 16) if n_dim == 2 else (8, 16, 16)
    line = lambda n: np.ones((1,) * (n_dim - 1) + (n,), int)       # noqa: E731 - a line of n ones along X
    masks = {
        "even": line(4),
        "rank_low": np.ones((1,) * (n_dim - 1) + (3,), int)[0] if n_dim == 2 else np.ones((1, 3), int),
        "rank_high": np.ones((1,) * n_dim + (3,), int),
        "value_2": line(3) * 2,
        "value_neg": line(3) - 2 * (np.arange(3) == 1),
        "larger": line(17),
        "ragged": [[1, 1, 1], [1]] if n_dim == 2 else [[[1, 1, 1]], [[1]]],
    }
    mask = masks[bad]
    _, noisy = smooth_image(patch)
    config = tiny_config(noisy[None, ..., None], n2v_patch_shape=patch, unet_n_depth=1,
                         structN2Vmask=mask.tolist() if isinstance(mask, np.ndarray) else mask)
    with pytest.raises(ValueError, match="structN2Vmask"):
        N2V(config, "bad", basedir=str(tmp_path))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("n_dim, axis, span", [(2, "X", 17), (2, "Y", 17), (3, "Z", 9), (3, "Y", 17)])
def test_mask_spanning_the_whole_patch_axis_is_rejected(n_dim, axis, span, tmp_path):
    """A line at least as long as the patch side hides every pixel of that axis from the blind spot.

    Patch sides are multiples of 2**unet_n_depth (even) and mask sides odd, so "span >= side" means
    "span > side": the config rule "not larger than n2v_patch_shape" already catches it.
    """
    patch = (16, 16) if n_dim == 2 else (8, 16, 16)
    _, noisy = smooth_image(patch)
    mask = struct_mask(axis, span, n_dim)
    config = tiny_config(noisy[None, ..., None], n2v_patch_shape=patch, unet_n_depth=1, structN2Vmask=mask.tolist())
    with pytest.raises(ValueError, match="structN2Vmask.*n2v_patch_shape"):
        N2V(config, "whole", basedir=str(tmp_path))
    assert not (tmp_path / "whole").exists()
    # one pixel shorter than the side is accepted (context remains along the other axes)
    ok = struct_mask(axis, span - 2, n_dim)
    assert N2VConfig(noisy[None, ..., None], n2v_patch_shape=patch, unet_n_depth=1,
                     structN2Vmask=ok.tolist()).is_valid()
