"""N2VSequence, validation masking and N2V_DataGenerator."""
import numpy as np
import pytest
import tifffile

from n2v_tf import N2V_DataGenerator, N2VSequence, validation_data
from n2v_tf.masking import box_size


@pytest.mark.parametrize("n_dim", (2, 3))
def test_sequence_batches_are_fresh_reproducible_and_masked(n_dim):
    rng = np.random.default_rng(0)
    X = rng.normal(10, 2, (3,) + (24,) * n_dim + (2,)).astype(np.float32)
    before = X.copy()
    patch = (16,) * n_dim
    seq = N2VSequence(X, patch, batch_size=4, perc_pix=2.0, steps_per_epoch=3, seed=7, means=[10, 10], stds=[2, 2])
    assert len(seq) == 3
    x1, y1 = seq[1]
    x1b, y1b = seq[1]
    assert x1.shape == (4,) + patch + (2,) and y1.shape == (4,) + patch + (4,)
    assert x1 is not x1b and not np.shares_memory(x1, x1b)  # fresh arrays (safe with workers)
    np.testing.assert_array_equal(x1, x1b)
    np.testing.assert_array_equal(y1, y1b)
    assert not np.array_equal(seq[0][0], x1)
    seq.on_epoch_end()
    assert not np.array_equal(seq[1][0], x1)  # new epoch, new batches
    np.testing.assert_array_equal(X, before)
    # targets are normalised crops of X, masks come from the stratified coordinates
    assert abs(y1[..., :2].mean()) < 0.5 and 0.5 < y1[..., :2].std() < 1.5
    per_patch = y1[..., 2].reshape(4, -1).sum(1)
    expected = np.prod(patch) / box_size(2.0, n_dim) ** n_dim
    assert np.all(np.abs(per_patch - expected) <= 0.5 * expected + 1)
    np.testing.assert_array_equal(y1[..., 2], y1[..., 3])
    with pytest.raises(IndexError):
        seq[3]


def test_sequence_without_seed_follows_the_global_seed():
    import keras
    X = np.random.default_rng(0).normal(size=(3, 24, 24, 1)).astype(np.float32)
    firsts = []
    for global_seed in (4, 4, 5):
        keras.utils.set_random_seed(global_seed)  # what a notebook calls for a reproducible run
        seq = N2VSequence(X, (16, 16), batch_size=2, perc_pix=2.0, steps_per_epoch=2)
        firsts.append((seq.seed, seq[0][0]))
    assert firsts[0][0] == firsts[1][0] != firsts[2][0]
    np.testing.assert_array_equal(firsts[0][1], firsts[1][1])
    assert not np.array_equal(firsts[0][1], firsts[2][1])


def test_sequence_from_list_crops_every_image():
    imgs = [np.full((20 + 10 * i, 30, 1), float(i), np.float32) for i in range(3)]
    seq = N2VSequence(imgs, (16, 16), batch_size=64, perc_pix=5.0, steps_per_epoch=1, seed=0)
    _, y = seq[0]
    assert set(np.unique(y[..., 0])) == {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="smaller than n2v_patch_shape"):
        N2VSequence(imgs, (32, 32), batch_size=2)


def test_sequence_works_with_keras_workers():
    import keras
    X = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype(np.float32)
    seq = N2VSequence(X, (16, 16), batch_size=2, perc_pix=5.0, steps_per_epoch=4, seed=0, workers=2)
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp))
    from n2v_tf import n2v_mse
    model.compile("adam", n2v_mse)
    hist = model.fit(seq, epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()


def test_validation_is_masked_once_with_a_fixed_seed():
    X = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype(np.float32)
    a = validation_data(X, (32, 32), perc_pix=1.5, div_by=4)
    b = validation_data(X, (32, 32), perc_pix=1.5, div_by=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1][..., 1].sum() > 0
    patches = validation_data([X[0], X[1, :20]], (16, 16), perc_pix=1.5)
    assert patches[0].shape == (4 + 2, 16, 16, 1)


def test_data_generator_loads_and_patches(tmp_path):
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "a.tif", rng.normal(size=(3, 64, 64)).astype(np.float32))
    tifffile.imwrite(tmp_path / "b.tif", rng.normal(size=(3, 64, 96)).astype(np.float32))
    gen = N2V_DataGenerator()
    imgs = gen.load_imgs_from_directory(str(tmp_path), dims="TYX")
    assert [im.shape for im in imgs] == [(3, 64, 64, 1), (3, 64, 96, 1)]
    patches = gen.generate_patches_from_list(imgs, shape=(32, 32), augment=True)
    assert patches.shape == (8 * (3 * 4 + 3 * 6), 32, 32, 1)
    rand = gen.generate_patches(imgs[0], num_patches=5, shape=(16, 16), augment=False, seed=1)
    assert rand.shape == (15, 16, 16, 1)
    with pytest.raises(ValueError, match="dims"):
        gen.load_imgs([str(tmp_path / "a.tif")], dims="YX")
    with pytest.raises(ValueError, match="no files"):
        gen.load_imgs_from_directory(str(tmp_path), filter="*.png")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="cannot read"):
        gen.load_imgs([str(tmp_path / "broken.tif")], dims="YX")


def _orientations(patch: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of the YX plane of ``patch`` (axes ``(..., Y, X, C)``) that keep its shape."""
    out = []
    for k in range(4):
        for flip in (False, True):
            p = np.rot90(patch, k, axes=(-3, -2))
            p = p[..., ::-1, :] if flip else p
            if p.shape == patch.shape and not any(np.array_equal(p, q) for q in out):
                out.append(p)
    return out


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("yx", ((8, 8), (8, 12)))
def test_sequence_augment_draws_every_orientation_of_the_yx_plane(n_dim, yx):
    shape = (4,) * (n_dim - 2) + yx
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape + (1,))  # every pixel different
    expected = _orientations(img)
    assert len(expected) == (8 if yx[0] == yx[1] else 4)
    seq = N2VSequence([img], shape, batch_size=64, perc_pix=5.0, steps_per_epoch=2, seed=3, augment=True)
    seen = set()
    for i in range(len(seq)):
        _, y = seq[i]
        for patch in y[..., :1]:  # the targets: the (augmented) crops, not normalised (means 0, stds 1)
            match = [j for j, e in enumerate(expected) if np.array_equal(patch, e)]
            assert len(match) == 1, "an augmented patch is not an orientation of the image"
            seen.add(match[0])
    assert seen == set(range(len(expected)))  # 128 draws: every orientation appears
    plain = N2VSequence([img], shape, batch_size=8, perc_pix=5.0, steps_per_epoch=1, seed=3)
    assert all(np.array_equal(p, img) for p in plain[0][1][..., :1])
