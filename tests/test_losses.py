"""Masked losses: NumPy reference, registration for saved models."""
import keras
import numpy as np
import pytest

from n2v_tf import loss_mae, loss_mse, n2v_abs, n2v_mse


@pytest.mark.parametrize("fn,ref", ((n2v_mse, lambda d: d ** 2), (n2v_abs, np.abs)))
@pytest.mark.parametrize("n_dim", (2, 3))
def test_loss_matches_numpy_reference(fn, ref, n_dim):
    rng = np.random.default_rng(0)
    shape = (2,) + (6,) * n_dim
    target = rng.normal(size=shape + (2,)).astype(np.float32)
    mask = (rng.random(shape + (2,)) < 0.2).astype(np.float32)
    pred = rng.normal(size=shape + (2,)).astype(np.float32)
    got = float(fn(np.concatenate([target, mask], -1), pred))
    expected = (ref(target - pred) * mask).sum() / mask.sum()
    assert got == pytest.approx(expected, rel=1e-5)
    # unmasked pixels do not matter
    pred2 = np.where(mask > 0, pred, 1e3).astype(np.float32)
    assert float(fn(np.concatenate([target, mask], -1), pred2)) == pytest.approx(expected, rel=1e-5)


def test_n2v_factories_return_the_losses():
    assert loss_mse() is n2v_mse and loss_mae() is n2v_abs


def test_compiled_model_round_trips(tmp_path):
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp))
    model.compile("adam", loss=n2v_mse, metrics=[n2v_abs])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    y = np.concatenate([x, np.ones_like(x)], -1)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.loss is n2v_mse or getattr(again.loss, "fn", None) is n2v_mse or "n2v_mse" in str(again.loss)
    np.testing.assert_allclose(again.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)
