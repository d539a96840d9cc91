"""Shared test helpers: quiet TensorFlow, seeded data, tiny configs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # several worker processes share the cores: one thread inside each TensorFlow op / BLAS call (and in the
    # processes the tests start, which inherit it) instead of every process spinning up a pool per core
    # (test_models + test_tiling with -n 2 on 2 cores: 270 -> 233 s, measured with the inter-op pool at 1 too)
    for _var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "data" / "n2v033"


def smooth_image(shape, seed=0, sigma=30.0):
    """A smooth clean image (values ~50..150) and a noisy copy with Gaussian noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    periods = (5.0, 9.0, 6.0)[-len(shape):]
    clean = 100 + 50 * np.prod([np.cos(g / p) for g, p in zip(grids, periods)], axis=0)
    noisy = clean + rng.normal(0, sigma, shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


def random_batch_norm(net, rng):
    """Give every batch-norm layer of ``net`` statistics and scales that matter (untrained ones are the identity).

    The offsets are positive so that the ReLU after each norm keeps most channels alive: with offsets of either sign a
    whole layer could come out dead, and the network's output constant (seen for one 3D net on one host)."""
    for layer in net.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.uniform(0.1, 1, n), rng.normal(size=n),
                               rng.uniform(0.5, 2, n)])


def tiny_config(X, **kwargs):
    from n2v_tf import N2VConfig
    n_dim = (X.ndim - 2) if isinstance(X, np.ndarray) else (X[0].ndim - 1)
    defaults = dict(unet_kern_size=3, unet_n_first=8, unet_n_depth=2, train_epochs=2, train_steps_per_epoch=2,
                    train_batch_size=4, n2v_patch_shape=(16, 32, 32)[-n_dim:] if n_dim == 3 else (32, 32),
                    n2v_perc_pix=3.0, train_tensorboard=False)
    defaults.update(kwargs)
    return N2VConfig(X, **defaults)


@pytest.fixture(autouse=True)
def _seed():
    import keras
    keras.utils.set_random_seed(0)
    yield
