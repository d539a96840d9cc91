"""U-Net builder: shapes in 2D/3D, built-in layers only, max-blur-pool vs NumPy, receptive field, reload
without n2v_tf."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from n2v_tf.nets import _max_blur_pool, blur_kernel, build_unet, receptive_field_radius
from conftest import random_batch_norm


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("n2v2", (False, True))
@pytest.mark.parametrize("channels,single", ((1, True), (3, True), (2, False)))
def test_output_shapes(n_dim, n2v2, channels, single):
    model = build_unet(n_dim, channels, n_depth=2, kern_size=3, n_first=4, blurpool=n2v2, skip_skipone=n2v2,
                       residual=not n2v2, single_net_per_channel=single)
    shape = (1,) + (8, 16, 24)[-n_dim:] + (channels,)
    y = model.predict(np.zeros(shape, np.float32), verbose=0)
    assert y.shape == shape
    for layer in model.layers:
        assert type(layer).__module__.startswith("keras."), type(layer)
        assert not isinstance(layer, keras.layers.Lambda)


def _numpy_max_blur_pool(x):
    """Reference: dense 2^n max (stride 1, 'SAME': pad after with -inf), then [1,2,1]^n blur, stride 2, zero 'SAME'."""
    n_dim = x.ndim - 1
    pad = [(0, 1)] * n_dim + [(0, 0)]
    xp = np.pad(x, pad, constant_values=-np.inf)
    m = np.full(x.shape, -np.inf)
    for off in np.ndindex(*(2,) * n_dim):
        m = np.maximum(m, xp[tuple(slice(o, o + s) for o, s in zip(off, x.shape[:-1]))])
    out_shape = tuple((s + 1) // 2 for s in x.shape[:-1])
    # TF 'SAME' with stride 2, kernel 3: total pad = max((out-1)*2 + 3 - in, 0), before = total // 2
    pads = [(max((o - 1) * 2 + 3 - s, 0) // 2, max((o - 1) * 2 + 3 - s, 0) - max((o - 1) * 2 + 3 - s, 0) // 2)
            for o, s in zip(out_shape, x.shape[:-1])]
    mp = np.pad(m, pads + [(0, 0)])
    k = blur_kernel(n_dim)
    out = np.zeros(out_shape + x.shape[-1:])
    for off in np.ndindex(*(3,) * n_dim):
        sl = tuple(slice(o, o + 2 * s, 2) for o, s in zip(off, out_shape))
        out += k[off] * mp[sl]
    return out


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("size", (8, 7))
def test_max_blur_pool_matches_numpy(n_dim, size):
    x = np.random.default_rng(0).normal(size=(size,) * n_dim + (3,)).astype(np.float32)
    inp = keras.Input((None,) * n_dim + (3,))
    model = keras.Model(inp, _max_blur_pool(inp, n_dim, "pool"))
    got = model.predict(x[None], verbose=0)[0]
    np.testing.assert_allclose(got, _numpy_max_blur_pool(x.astype(np.float64)), atol=1e-5)
    assert not model.get_layer("pool").trainable


def test_single_net_per_channel_keeps_channels_independent():
    model = build_unet(2, 3, n_depth=1, n_first=4, single_net_per_channel=True)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 3)).astype(np.float32)
    y0 = model.predict(x, verbose=0)
    x[..., 0] += 5
    y1 = model.predict(x, verbose=0)
    assert not np.allclose(y0[..., 0], y1[..., 0])
    np.testing.assert_array_equal(y0[..., 1:], y1[..., 1:])


@pytest.mark.parametrize("n_dim", (2, 3))
@pytest.mark.parametrize("blurpool", (False, True))
def test_receptive_field_bound_holds(n_dim, blurpool):
    depth, k = 2, 3
    r = receptive_field_radius(depth, k, blurpool)
    model = build_unet(n_dim, 1, n_depth=depth, kern_size=k, n_first=4, blurpool=blurpool, batch_norm=False)
    size = 2 * r + 16 - (2 * r + 16) % 4 if n_dim == 2 else 2 * r + 8 - (2 * r + 8) % 4
    x = np.random.default_rng(1).normal(size=(1,) + (size,) * n_dim + (1,)).astype(np.float32)
    c = size // 2
    y0 = model.predict(x, verbose=0)
    x2 = x.copy()
    x2[(0,) + (c,) * n_dim + (0,)] += 100.0
    changed = np.argwhere(np.abs(model.predict(x2, verbose=0) - y0)[0, ..., 0] > 1e-6)
    assert len(changed) > 0
    assert np.abs(changed - c).max() <= r


@pytest.mark.parametrize("n_dim", (2, 3))
def test_batch_norm_momentum_reaches_every_batch_norm_layer(n_dim):
    import keras

    def momenta(model):
        return {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(build_unet(n_dim, 1, n_depth=1, n_first=4)) == {0.99}              # Keras' and n2v's default
    assert momenta(build_unet(n_dim, 2, n_depth=2, n_first=4, batch_norm_momentum=0.9)) == {0.9}


SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras
    for path in sys.argv[1:]:
        m = keras.models.load_model(path, compile=False)
        x = np.load(path + ".x.npy")
        np.save(path + ".y2.npy", m.predict(x, verbose=0))
    print("n2v_tf imported:", "n2v_tf" in sys.modules)
""")


@pytest.mark.slow
def test_saved_model_loads_without_n2v_tf(tmp_path):
    paths = []
    for n_dim in (2, 3):
        # n2v 0.3.3's network (N2V, N2V2), and the recommended one of new configs (issue 15: linear upsampling
        # from fixed-weight built-in layers, fan-in init, wide decoder) with batch-norm statistics that matter
        for n2v2, channels, recommended in ((False, 1, False), (True, 2, False), (n_dim == 3, 1, True)):
            extra = dict(upsampling="linear", init="fan_in_uniform", wide_decoder=True) if recommended else {}
            model = build_unet(n_dim, channels, n_depth=2, n_first=4, blurpool=n2v2, skip_skipone=n2v2, **extra)
            if recommended:
                random_batch_norm(model, np.random.default_rng(n_dim))
            x = np.random.default_rng(n_dim).normal(size=(1,) + (8, 16, 20)[-n_dim:] + (channels,)).astype("float32")
            path = str(tmp_path / f"m{n_dim}{int(n2v2)}{int(recommended)}.keras")
            model.save(path)
            np.save(path + ".x.npy", x)
            np.save(path + ".y.npy", model.predict(x, verbose=0))
            paths.append(path)
    out = subprocess.run([sys.executable, "-c", SCRIPT, *paths], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "n2v_tf imported: False" in out.stdout
    for path in paths:
        np.testing.assert_allclose(np.load(path + ".y2.npy"), np.load(path + ".y.npy"), atol=1e-5)


@pytest.mark.parametrize("n_dim", (2, 3))
def test_wide_decoder_widens_only_the_intermediate_decoder_convolutions(n_dim):
    narrow = build_unet(n_dim, n_depth=2, n_first=4)
    wide = build_unet(n_dim, n_depth=2, n_first=4, wide_decoder=True)
    filters = {m: {layer.name.removeprefix("channel_0"): layer.filters for layer in net.layers
                   if hasattr(layer, "filters")}
               for m, net in (("narrow", narrow), ("wide", wide))}
    assert filters["narrow"]["up_level_1_no_0"] == 4          # n2v 0.3.3's N2V decoder
    assert filters["wide"]["up_level_1_no_0"] == 8            # CSBDeep / CAREamics: n_first * 2**level
    changed = {k for k in filters["wide"] if filters["wide"][k] != filters["narrow"][k]}
    assert changed == {"up_level_1_no_0"}
    x = np.random.default_rng(0).normal(size=(1,) + (16,) * n_dim + (1,)).astype("float32")
    assert wide.predict(x, verbose=0).shape == x.shape
