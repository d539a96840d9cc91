"""Build the n2v 0.3.3 model folders of ``tests/data/n2v033/`` that cover every layer-graph variant.

Run it with the reference n2v, never with n2v_tf (n2v_tf must reproduce these, not write them)::

    /work/venvs/n2v033/bin/python tests/data/make_n2v033_fixtures.py            # all folders below
    /work/venvs/n2v033/bin/python tests/data/make_n2v033_fixtures.py NAME ...   # only these

The venv holds ``tensorflow-cpu==2.15.1``, ``n2v==0.3.3``, ``csbdeep<0.8`` and ``numpy<2``. The script is
seeded (NumPy, Python, TensorFlow, op determinism): a rerun gives the same ``config.json`` and ``.npy`` files
and the same weight values (the ``.h5`` bytes differ, HDF5 stores object times). It rewrites only the folders
it builds; the four older folders ``n2v_2d``, ``n2v2_2d``, ``n2v_3d`` and ``n2v_2d_rgb`` (see
``../shared/fixtures/README.md`` of the checkout) are never touched.

Each folder is what n2v 0.3.3 writes (``config.json``, ``weights_best.h5``, ``weights_last.h5``; the
TensorBoard-image folder ``logs/`` that n2v's callback creates is removed) plus

- ``test_input.npy``: a small noisy image (float32), with sizes NOT divisible by ``2**unet_n_depth``, so
  that n2v's pad-and-crop resizer takes part,
- ``test_output.npy``: ``model.predict(test_input, axes)`` of n2v 0.3.3 (float32),
- ``axes.txt``: the axes passed to ``predict``.

Training is 2 epochs of 1 step (batch 4) on smooth random images plus Gaussian noise; channel ``c`` of
a multi-channel image has its own offset and contrast, so that channel mix-ups show in the output.
Every folder is "single_net_per_channel=True" (n2v's default: one U-Net per channel) unless named
``joint``; the defaults are batch_norm=True, unet_residual=False, unet_last_activation='linear',
n2v_manipulator='uniform_withCP'.

=============================  ====  =====  ====  ==  ============  ==========================================
folder                         dims  depth  kern  C   net           other settings
=============================  ====  =====  ====  ==  ============  ==========================================
n2v_2d_d1_k3                   2D    1      3     1   per channel   n_first 8
n2v_2d_d3_k3_res               2D    3      3     1   per channel   residual
n2v_2d_d4_k3_res_relu          2D    4      3     1   per channel   residual, last activation relu
n2v_2d_d2_k3_nobn_mean         2D    2      3     1   per channel   batch_norm False, manipulator mean
n2v_2d_d2_k5_median            2D    2      5     1   per channel   manipulator median
n2v_2d_blurpool_d2             2D    2      3     1   per channel   blurpool only (skip_skipone False)
n2v_2d_skipone_d2              2D    2      3     1   per channel   skip_skipone only (blurpool False)
n2v2_2d_d1_k5_relu             2D    1      5     1   per channel   N2V2 (blurpool + skip_skipone), median,
                                                                    last activation relu
n2v2_2d_d3_k3_nobn_median      2D    3      3     1   per channel   N2V2, batch_norm False, median
n2v_2d_joint_c1_res            2D    2      3     1   joint         residual
n2v_2d_joint_c2_d3_k5          2D    3      5     2   joint
n2v_2d_joint_c3_nobn_relu      2D    2      3     3   joint         batch_norm False, last activation relu
n2v2_2d_joint_c2               2D    2      3     2   joint         N2V2, median
n2v_2d_perch_c2_d1             2D    1      3     2   per channel
n2v2_2d_perch_c3_nobn          2D    2      3     3   per channel   N2V2, batch_norm False, median
n2v_3d_d1_k5                   3D    1      5     1   per channel   n_first 4
n2v_3d_d3_k3_res_relu          3D    3      3     1   per channel   residual, last activation relu
n2v_3d_skipone_d2              3D    2      3     1   per channel   skip_skipone only, manipulator mean
n2v_3d_joint_c2_nobn           3D    2      3     2   joint         batch_norm False
n2v_3d_perch_c2_median         3D    2      3     2   per channel   manipulator median
=============================  ====  =====  ====  ==  ============  ==========================================

n_first is 4 except where noted (8 for the 2D depth-1 folders), which keeps the folders at 150-650 KB
(the depth-4 one: ~800 KB).

Left out (the first three because n2v 0.3.3 itself cannot build or train them):

- 3D with ``blurpool=True`` (so 3D N2V2): ``n2v/nets/unet_blocks.py`` raises ``NotImplementedError``
  (bare, no message) when building the network (``MaxBlurPool2D`` exists for 2D only).
- ``single_net_per_channel=False`` with ``unet_residual=True`` and more than one channel: n2v's
  ``build_unet`` raises ``ValueError: number of input and output channels must be the same for a residual
  net.`` (it checks the number of input channels against 1).
- ``unet_residual=True`` with ``single_net_per_channel=True`` and more than one channel: n2v 0.3.3 builds
  the network (Keras 2's ``Add`` broadcasts each channel network's 1-channel output against the whole
  C-channel input, so the model has C*C output channels), but training crashes in the first step:
  ``InvalidArgumentError: ... Incompatible shapes: [4,32,32,4] vs. [4,32,32,2]`` (node
  ``gradient_tape/n2v_mse/mul/BroadcastGradientArgs``, for C=2). So no such n2v folder can exist.
- For size only: 3D with depth 4 (n_first 4 gives ~1.4 MB of weights) and N2V2 with depth 4 (~1 MB);
  depth 4 is covered by ``n2v_2d_d4_k3_res_relu``, N2V2's wide decoder levels by
  ``n2v2_2d_d3_k3_nobn_median``, and n2v and n2v_tf build 2D and 3D with the same code.
- The probabilistic (PN2V) configs are out of scope here.
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent / "n2v033"
KEEP = {"n2v_2d", "n2v2_2d", "n2v_3d", "n2v_2d_rgb"}  # older fixtures, never rewritten
N2V2 = dict(blurpool=True, skip_skipone=True, n2v_manipulator="median")

# name -> (n_dim, n_channels, N2VConfig keyword arguments)
FOLDERS: dict[str, tuple[int, int, dict]] = {
    "n2v_2d_d1_k3": (2, 1, dict(unet_n_depth=1, unet_kern_size=3, unet_n_first=8)),
    "n2v_2d_d3_k3_res": (2, 1, dict(unet_n_depth=3, unet_kern_size=3, unet_residual=True)),
    "n2v_2d_d4_k3_res_relu": (2, 1, dict(unet_n_depth=4, unet_kern_size=3, unet_residual=True,
                                         unet_last_activation="relu")),
    "n2v_2d_d2_k3_nobn_mean": (2, 1, dict(unet_n_depth=2, unet_kern_size=3, batch_norm=False,
                                          n2v_manipulator="mean")),
    "n2v_2d_d2_k5_median": (2, 1, dict(unet_n_depth=2, unet_kern_size=5, n2v_manipulator="median")),
    "n2v_2d_blurpool_d2": (2, 1, dict(unet_n_depth=2, unet_kern_size=3, blurpool=True)),
    "n2v_2d_skipone_d2": (2, 1, dict(unet_n_depth=2, unet_kern_size=3, skip_skipone=True)),
    "n2v2_2d_d1_k5_relu": (2, 1, dict(unet_n_depth=1, unet_kern_size=5, unet_n_first=8,
                                      unet_last_activation="relu", **N2V2)),
    "n2v2_2d_d3_k3_nobn_median": (2, 1, dict(unet_n_depth=3, unet_kern_size=3, batch_norm=False, **N2V2)),
    "n2v_2d_joint_c1_res": (2, 1, dict(unet_n_depth=2, unet_kern_size=3, unet_residual=True,
                                       single_net_per_channel=False)),
    "n2v_2d_joint_c2_d3_k5": (2, 2, dict(unet_n_depth=3, unet_kern_size=5, single_net_per_channel=False)),
    "n2v_2d_joint_c3_nobn_relu": (2, 3, dict(unet_n_depth=2, unet_kern_size=3, batch_norm=False,
                                             unet_last_activation="relu", single_net_per_channel=False)),
    "n2v2_2d_joint_c2": (2, 2, dict(unet_n_depth=2, unet_kern_size=3, single_net_per_channel=False, **N2V2)),
    "n2v_2d_perch_c2_d1": (2, 2, dict(unet_n_depth=1, unet_kern_size=3)),
    "n2v2_2d_perch_c3_nobn": (2, 3, dict(unet_n_depth=2, unet_kern_size=3, batch_norm=False, **N2V2)),
    "n2v_3d_d1_k5": (3, 1, dict(unet_n_depth=1, unet_kern_size=5)),
    "n2v_3d_d3_k3_res_relu": (3, 1, dict(unet_n_depth=3, unet_kern_size=3, unet_residual=True,
                                         unet_last_activation="relu")),
    "n2v_3d_skipone_d2": (3, 1, dict(unet_n_depth=2, unet_kern_size=3, skip_skipone=True,
                                     n2v_manipulator="mean")),
    "n2v_3d_joint_c2_nobn": (3, 2, dict(unet_n_depth=2, unet_kern_size=3, batch_norm=False,
                                        single_net_per_channel=False)),
    "n2v_3d_perch_c2_median": (3, 2, dict(unet_n_depth=2, unet_kern_size=3, n2v_manipulator="median")),
}

PATCH = {2: (32, 32), 3: (16, 16, 16)}
TEST_SHAPE = {2: (44, 52), 3: (12, 20, 28)}  # not divisible by 2**depth: exercises padding


def seed_everything(seed: int) -> None:
    import tensorflow as tf
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.keras.utils.set_random_seed(seed)


def noisy_image(shape, n_channel: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random image (values ~100 +- 30) plus Gaussian noise, channels last, float32."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    channels = []
    for c in range(n_channel):
        periods = rng.uniform(3.0, 9.0, len(shape))
        phases = rng.uniform(0, 2 * np.pi, len(shape))
        clean = np.prod([np.cos(g / p + f) for g, p, f in zip(grids, periods, phases)], axis=0)
        img = 100 + 20 * c + (30 + 10 * c) * clean + rng.normal(0, 10, shape)
        channels.append(img)
    return np.stack(channels, axis=-1).astype(np.float32)


def build(name: str, seed: int) -> str:
    import tensorflow as tf
    from n2v.models import N2V, N2VConfig

    n_dim, n_channel, kwargs = FOLDERS[name]
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    X = np.stack([noisy_image(PATCH[n_dim], n_channel, rng) for _ in range(8)])
    X_val = np.stack([noisy_image(PATCH[n_dim], n_channel, rng) for _ in range(2)])
    config_kwargs = dict(unet_n_first=4, train_epochs=2, train_steps_per_epoch=1, train_batch_size=4,
                         train_loss="mse", n2v_perc_pix=1.5, n2v_patch_shape=PATCH[n_dim],
                         train_tensorboard=False)
    config_kwargs.update(kwargs)
    config = N2VConfig(X, **config_kwargs)
    ok, bad = config.is_valid(return_invalid=True)
    if not ok:
        raise ValueError(f"{name}: invalid n2v config {bad}")

    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    model = N2V(config, name, basedir=str(HERE))
    model.train(X, X_val)
    tf.keras.backend.clear_session()
    shutil.rmtree(folder / "logs", ignore_errors=True)  # n2v's TensorBoard-image callback folder

    # Reload the folder as a user would, then predict: what n2v 0.3.3 gives for this folder.
    model = N2V(None, name, basedir=str(HERE))
    test = noisy_image(TEST_SHAPE[n_dim], n_channel, rng)
    axes = ("YX" if n_dim == 2 else "ZYX") + ("C" if n_channel > 1 else "")
    if n_channel == 1:
        test = test[..., 0]
    out = model.predict(test, axes)
    shutil.rmtree(folder / "logs", ignore_errors=True)
    np.save(folder / "test_input.npy", test.astype(np.float32))
    np.save(folder / "test_output.npy", np.asarray(out, np.float32))
    (folder / "axes.txt").write_text(axes + "\n")
    size = sum(p.stat().st_size for p in folder.iterdir()) // 1024
    return f"{name}: ok, output {out.shape} range {out.min():.3f}..{out.max():.3f}, {size} KB"


def main(names: list[str]) -> None:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    names = names or list(FOLDERS)
    for name in names:
        if name in KEEP or name not in FOLDERS:
            raise SystemExit(f"{name}: not a folder this script builds")
    for name in FOLDERS:
        if name in names:
            print(build(name, seed=zlib.crc32(name.encode())), flush=True)  # a folder's seed is its own


if __name__ == "__main__":
    main(sys.argv[1:])
