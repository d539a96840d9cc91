"""One tool's side of the speed benchmark (``bench_speed.py``): runs inside that tool's virtualenv.

``bench_speed.py`` launches this script once per tool and part, one process after the other, and reads
the JSON it writes; it can also be run by hand, e.g.::

    nice -n 10 /work/venv/bin/python benchmarks/speed_worker.py --tool n2v_tf --part train --quick \\
        --out /tmp/n2v_tf_train.json --workdir /tmp/speed_models
    nice -n 10 /work/venvs/n2v033/bin/python benchmarks/speed_worker.py --tool n2v033 --part predict --quick \\
        --out /tmp/n2v033_predict.json --workdir /tmp/speed_models --data-dir benchmarks/_runs/speed/quick/data

Tools: ``n2v_tf`` (this package, TF 2.21 / Keras 3), ``n2v033`` (juglab n2v 0.3.3, TF 2.15 / Keras 2),
``careamics`` (CAREamics 0.3.5, PyTorch / Lightning; see ``ref_careamics.py`` for its virtualenv and the
torchvision stub).  Parts:

``machine``
    fp32 matrix-product GFLOP/s of this machine (numpy and, if importable, TensorFlow; 2048x2048, repeated).
``train``
    (1) training through the tool's own API (``N2V(config, ...).train(X, X_val)`` / ``CAREamist.train``) with a
    timing callback; (2) the network's training step alone on one fixed, pre-made batch; (3) the data pipeline
    alone (ms per batch at the protocol batch size and at batch 128); the network's FLOPs per pixel; peak RSS.
    Writes the model folder into ``--workdir``.
``predict``
    In a fresh process: import, model loading from its folder and the FIRST ``predict`` call (256x256), then,
    after a warm-up call each, Mpx/s on large tiled images and on a folder of small images (n2v_tf also through
    its CLI ``n2v-tf predict``); peak RSS.

Everything is measured with ``time.perf_counter`` wall time; ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
gives the peak RSS.  The data are those of ``quality_data.py`` (the ``fluo`` set: 1800 + 200 noisy 64x64
patches of a fluorescence image); the prediction images are written by ``bench_speed.py`` into ``--data-dir``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

T_PROCESS = time.perf_counter()  # as early as possible: the latency part reports time since here

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_data as qd  # noqa: E402

TOOLS = ("n2v_tf", "n2v_tf_auto", "n2v033", "careamics")
#: ``n2v_tf_auto``: n2v_tf's training with ``train_mixed_precision='auto'`` (bfloat16 on CPUs with AMX-BF16 or
#: AVX512-BF16, float32 elsewhere); training part only (prediction runs the same float32 network as ``n2v_tf``)
MIXED_PRECISION_TOOLS = {"n2v_tf_auto": "auto"}
PARTS = ("machine", "train", "predict")
DATASET = "fluo"  # the quality benchmark's fluorescence set (what the reference runners use)
#: n2v_tf's implementation defaults of new configs, which compute the same network as n2v 0.3.3's: batch norm through
#: the fused kernel, no bias in the convolutions before batch norm (the norm's offset is that bias).
N2V_TF_IMPLEMENTATION = dict(train_fused_batch_norm=True, unet_conv_bias=False)
MANIPULATOR = "uniform_withCP"  # n2v / n2v_tf; CAREamics uses its default N2V masking ("uniform")
CAREAMICS_VARIANT = "uniform"

# Common protocol; ``--quick`` replaces the values of QUICK (unless a flag is given explicitly).
FULL = dict(depth=2, n_first=32, kernel=3, batch_norm=True, batch=16, patch=64, perc_pix=0.198, radius=5, lr=4e-4,
            steps=300, steps_per_epoch=50, net_steps=30, producer_batches=50, big_batch=128,
            big_size=2048, n_big=4, n_tiles=2, small_size=512, n_small=24, latency_size=256)
QUICK = dict(steps=6, steps_per_epoch=2, net_steps=3, producer_batches=3, big_size=256, n_big=2, small_size=128,
             n_small=4)


# --------------------------------------------------------------------------
# protocol flags (shared with bench_speed.py)
# --------------------------------------------------------------------------
def add_protocol_args(ap: argparse.ArgumentParser) -> None:
    """The protocol flags; their defaults are None here and resolved by :func:`protocol` (FULL / QUICK)."""
    g = ap.add_argument_group("protocol (defaults: FULL, or QUICK with --quick)")
    g.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    g.add_argument("--depth", type=int, help=f"U-Net depth (default {FULL['depth']})")
    g.add_argument("--n-first", type=int, help=f"filters of the first level (default {FULL['n_first']})")
    g.add_argument("--kernel", type=int, help=f"kernel size (default {FULL['kernel']}; CAREamics: always 3)")
    g.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch norm (default on)")
    g.add_argument("--batch", type=int, help=f"training batch size (default {FULL['batch']})")
    g.add_argument("--patch", type=int, help=f"training patch size, <= 64 (default {FULL['patch']})")
    g.add_argument("--perc-pix", type=float, help=f"percentage of masked pixels (default {FULL['perc_pix']})")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {FULL['lr']})")
    g.add_argument("--steps", type=int, help=f"training steps in all (default {FULL['steps']}, quick {QUICK['steps']})")
    g.add_argument("--steps-per-epoch", type=int,
                   help=f"steps per epoch, >= 2 epochs needed (default {FULL['steps_per_epoch']}, quick "
                        f"{QUICK['steps_per_epoch']})")
    g.add_argument("--net-steps", type=int, help=f"timed network-only steps (default {FULL['net_steps']})")
    g.add_argument("--producer-batches", type=int, help=f"timed producer batches (default {FULL['producer_batches']})")
    g.add_argument("--big-batch", type=int, help=f"second producer batch size (default {FULL['big_batch']})")
    g.add_argument("--big-size", type=int, help=f"side of the large prediction images (default {FULL['big_size']})")
    g.add_argument("--n-big", type=int, help=f"number of large images (default {FULL['n_big']})")
    g.add_argument("--n-tiles", type=int, help=f"tiles per axis for the large images (default {FULL['n_tiles']})")
    g.add_argument("--small-size", type=int, help=f"side of the folder images (default {FULL['small_size']})")
    g.add_argument("--n-small", type=int, help=f"number of folder images (default {FULL['n_small']})")
    g.add_argument("--latency-size", type=int, help=f"side of the first-call image (default {FULL['latency_size']})")
    g.add_argument("--careamics-pred-batch", type=int, default=1,
                   help="CAREamics predict(batch_size=...) (default 1: one tile/image at a time, as n2v/n2v_tf)")
    g.add_argument("--careamics-overlap", type=int, default=None,
                   help="CAREamics tile_overlap (even; default 2 x the context n2v_tf's tiling gives each tile: "
                        "56 px for depth 2, kernel 3)")


PROTOCOL_KEYS = tuple(FULL)


def protocol(args) -> dict:
    base = dict(FULL, **QUICK) if args.quick else dict(FULL)
    p = {k: (getattr(args, k) if getattr(args, k, None) is not None else v) for k, v in base.items()}
    p["quick"] = bool(args.quick)
    p["careamics_pred_batch"] = int(args.careamics_pred_batch)
    p["careamics_overlap"] = args.careamics_overlap
    if p["steps"] % p["steps_per_epoch"] or p["steps"] // p["steps_per_epoch"] < 2:
        raise SystemExit(f"--steps {p['steps']} must be a multiple of --steps-per-epoch {p['steps_per_epoch']}, "
                         "with at least 2 epochs (epoch 1 holds the compilation and is timed separately)")
    if p["patch"] > qd.PATCH or p["patch"] % 2 ** p["depth"]:
        raise SystemExit(f"--patch must be <= {qd.PATCH} (the size of the stored patches) and divisible by "
                         f"2**depth")
    p["epochs"] = p["steps"] // p["steps_per_epoch"]
    return p


def protocol_argv(args) -> list[str]:
    """The protocol flags of ``args`` as command-line arguments (to forward them to a worker)."""
    out = ["--quick"] if args.quick else []
    for k in PROTOCOL_KEYS:
        v = getattr(args, k, None)
        if v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            out += [flag, str(v)]
    out += ["--careamics-pred-batch", str(args.careamics_pred_batch)]
    if args.careamics_overlap is not None:
        out += ["--careamics-overlap", str(args.careamics_overlap)]
    return out


def qd_protocol(p: dict) -> dict:
    """``quality_data.PROTOCOL`` with this run's values (for ``ref_careamics.config_kwargs``)."""
    q = dict(qd.PROTOCOL)
    q.update(unet_n_depth=p["depth"], unet_n_first=p["n_first"], unet_kern_size=p["kernel"], batch_norm=p["batch_norm"],
             train_learning_rate=p["lr"], train_batch_size=p["batch"], patch=p["patch"], n2v_perc_pix=p["perc_pix"],
             n2v_neighborhood_radius=p["radius"], epochs=p["epochs"], steps_per_epoch=p["steps_per_epoch"])
    return q


def n2v_kwargs(p: dict) -> dict:
    """``N2VConfig(X, **kw)`` (n2v 0.3.3 and n2v_tf): ``quality_data.n2v_config_kwargs`` with this run's values."""
    kw = qd.n2v_config_kwargs(MANIPULATOR, p["epochs"], p["steps_per_epoch"])
    kw.update(unet_n_depth=p["depth"], unet_n_first=p["n_first"], unet_kern_size=p["kernel"],
              batch_norm=p["batch_norm"], train_learning_rate=p["lr"], train_batch_size=p["batch"],
              n2v_perc_pix=p["perc_pix"], n2v_patch_shape=(p["patch"], p["patch"]), n2v_neighborhood_radius=p["radius"])
    return kw


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(fn, n: int, warmup: int = 0) -> float:
    """Seconds per call of ``fn()`` over ``n`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def training_summary(t0: float, t1: float, epoch_end: list, batch_end: list, steps_per_epoch: int) -> dict:
    """Timing of one ``train`` call from the callback's time stamps.

    ``s_per_step``: (end of the last epoch - end of epoch 1) / steps of epochs 2..n -- everything a training
    step costs in steady state, including the per-epoch validation, checkpoints and callbacks, but not the
    compilation/tracing (which falls into epoch 1). ``median_batch_s``: median interval between the ends of two
    consecutive training batches of epochs 2..n (the pure training step inside the tool's loop).
    """
    import numpy as np

    n = len(epoch_end)
    iv = [d for b in batch_end[1:] for d in np.diff(b)]
    return dict(
        total_s=t1 - t0,
        first_epoch_s=epoch_end[0] - t0 if n else None,
        s_per_step=(epoch_end[-1] - epoch_end[0]) / (steps_per_epoch * (n - 1)) if n >= 2 else None,
        median_batch_s=float(np.median(iv)) if iv else None,
        epochs_timed=n,
        batches_per_epoch=[len(b) for b in batch_end],
        after_last_epoch_s=t1 - epoch_end[-1] if n else None,
        epoch_s=[float(b - a) for a, b in zip([t0] + epoch_end[:-1], epoch_end)],
    )


def keras_conv_flops_per_pixel(km, keras_mod, size: int = 64) -> dict:
    """Multiply-add FLOPs per INPUT pixel of a channels-last Keras U-Net, from its convolution layers.

    Sum over the Conv1D/2D/3D layers of ``2 * prod(kernel_size) * C_in * C_out`` times the layer's output size
    relative to the input (``1 / (downsampling factor)**d``); the relative sizes are read from one forward pass
    of a ``size``-sided zero image. Bias, batch norm, activations, pooling and upsampling are not counted.
    """
    import numpy as np

    convs = [lay for lay in km.layers if type(lay).__name__ in ("Conv1D", "Conv2D", "Conv3D")]
    in_shape = tuple(km.inputs[0].shape)
    n_dim = len(in_shape) - 2
    probe = keras_mod.Model(km.inputs, [lay.output for lay in convs])
    outs = probe([np.zeros((1,) + (size,) * n_dim + (in_shape[-1],), np.float32)])
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    total, per_layer = 0.0, []
    for lay, o in zip(convs, outs):
        k = tuple(int(s) for s in lay.kernel.shape)
        rel = float(np.prod(tuple(o.shape)[1:-1])) / size ** n_dim
        f = 2.0 * float(np.prod(k[:-2])) * k[-2] * k[-1] * rel
        per_layer.append(dict(layer=lay.name, kernel=list(k), rel_size=rel, flops_per_px=f))
        total += f
    return dict(flops_per_px=total, n_conv=len(convs), layers=per_layer,
                rule="sum over Conv layers of 2*k^d*Cin*Cout/(downsampling factor)^d")


def torch_conv_flops_per_pixel(net, n_dim: int = 2, size: int = 64, in_channels: int = 1) -> dict:
    """:func:`keras_conv_flops_per_pixel` for a torch module (forward hooks on its Conv1d/2d/3d)."""
    import numpy as np
    import torch

    rows = []

    def hook(mod, inp, out):
        k = tuple(mod.kernel_size)
        rel = float(np.prod(tuple(out.shape)[2:])) / size ** n_dim
        f = 2.0 * float(np.prod(k)) * (mod.in_channels // mod.groups) * mod.out_channels * rel
        rows.append(dict(layer=type(mod).__name__, kernel=list(k) + [mod.in_channels, mod.out_channels],
                         rel_size=rel, flops_per_px=f))

    hs = [m.register_forward_hook(hook) for m in net.modules()
          if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros((1, in_channels) + (size,) * n_dim))
    net.train(was_training)
    for h in hs:
        h.remove()
    return dict(flops_per_px=sum(r["flops_per_px"] for r in rows), n_conv=len(rows), layers=rows,
                rule="sum over Conv layers of 2*k^d*Cin*Cout/(downsampling factor)^d")


def careamics_tiles(size: int, n_tiles: int, overlap: int, block: int) -> tuple[int, int]:
    """CAREamics ``tile_size`` giving ``n_tiles`` tiles per axis of ``size`` with ``tile_overlap=overlap``.

    CAREamics steps tiles by ``tile - overlap`` and crops ``overlap/2`` at every inner tile edge, so each tile
    gets ``overlap/2`` pixels of context; the tile is rounded up to a multiple of ``block`` (2**depth). Returns
    ``(tile_size, tiles_per_axis)`` (the latter from CAREamics' own rule ``range(0, size - overlap, step)``).
    """
    tile = math.ceil((size - overlap) / n_tiles) + overlap
    tile = int(math.ceil(tile / block) * block)
    return tile, len(range(0, max(1, size - overlap), tile - overlap))


# --------------------------------------------------------------------------
# part: machine
# --------------------------------------------------------------------------
def part_machine(p: dict, args) -> dict:
    import numpy as np

    n, reps = (512, 3) if p["quick"] else (2048, 10)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3
    res = dict(n=n, reps=reps)
    res["numpy_gflops"] = flop / timed(lambda: a @ b, reps, warmup=2) / 1e9
    try:
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)
        res["tf_gflops"] = flop / timed(lambda: tf.linalg.matmul(ta, tb).numpy(), reps, warmup=2) / 1e9
        res["tf"] = tf.__version__
    except Exception as e:  # pragma: no cover
        res["tf_gflops"], res["tf_error"] = None, repr(e)
    res["numpy"] = np.__version__
    try:
        res["numpy_blas"] = np.show_config("dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        res["numpy_blas"] = None
    return res


# --------------------------------------------------------------------------
# part: train
# --------------------------------------------------------------------------
def _keras_timer(keras_mod):
    class StepTimer(keras_mod.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_end, self.batch_end = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.batch_end.append([])

        def on_train_batch_end(self, batch, logs=None):
            self.batch_end[-1].append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_end.append(time.perf_counter())

    return StepTimer()


def _lightning_timer():
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self):
            super().__init__()
            self.epoch_end, self.batch_end = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self.batch_end.append([])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batch_end[-1].append(time.perf_counter())

        def on_train_epoch_end(self, trainer, pl_module):  # Lightning 2: after the epoch's validation
            self.epoch_end.append(time.perf_counter())

    return StepTimer()


def model_name(tool: str) -> str:
    return f"speed_{tool}"


def train_keras(tool: str, p: dict, ds: dict, workdir: Path) -> dict:
    import numpy as np

    ours = tool.startswith("n2v_tf")
    if ours:
        import keras

        from n2v_tf import N2V, N2VConfig, N2VSequence
    else:
        from n2v.internals.N2V_DataWrapper import N2V_DataWrapper
        from n2v.models import N2V, N2VConfig
        from n2v.utils import n2v_utils
        from tensorflow import keras
    import tensorflow as tf

    np.random.seed(0)
    tf.random.set_seed(0)
    X, X_val = ds["X_train"], ds["X_val"]
    kw = n2v_kwargs(p)
    if ours:  # n2v 0.3.3's network and training, run the way n2v_tf runs any new config
        config = N2VConfig.preset("n2v-0.3", X, **kw, **N2V_TF_IMPLEMENTATION,
                                  train_mixed_precision=MIXED_PRECISION_TOOLS.get(tool))
    else:
        config = N2VConfig(X, **kw)
    name = model_name(tool)
    shutil.rmtree(workdir / name, ignore_errors=True)
    model = N2V(config, name, basedir=str(workdir))
    model.prepare_for_training()
    timer = _keras_timer(keras)
    model.callbacks.append(timer)  # train() passes model.callbacks to fit()

    out = {}
    t0 = time.perf_counter()
    hist = model.train(X, X_val)
    t1 = time.perf_counter()
    out["training"] = training_summary(t0, t1, timer.epoch_end, timer.batch_end, p["steps_per_epoch"])
    out["training"]["val_loss"] = [float(v) for v in hist.history.get("val_loss", [])]
    out["rss_train_mb"] = maxrss_mb()
    km = model.keras_model

    # (3) producer alone, and the fixed batch for (2)
    mean = np.array([float(m) for m in config.means], np.float32)
    std = np.array([float(s) for s in config.stds], np.float32)
    nb = p["producer_batches"]
    prod = {}
    for bs in (p["batch"], p["big_batch"]):
        if ours:
            seq = N2VSequence(X, (p["patch"],) * 2, batch_size=bs, perc_pix=p["perc_pix"], manipulator=MANIPULATOR,
                              radius=p["radius"], steps_per_epoch=nb + 2, means=mean, stds=std, seed=0)
            it = iter(range(10 ** 9))
            prod[f"batch_{bs}_ms"] = 1e3 * timed(lambda: seq.batch(0, next(it) % len(seq)), nb, warmup=2)
            ds_it = iter(seq.tf_dataset())
            prod[f"tf_dataset_{bs}_ms"] = 1e3 * timed(lambda: next(ds_it), nb, warmup=2)
            if bs == p["batch"]:
                fixed = seq.batch(0, 0)
        else:
            Xn = (X - mean) / std
            Y = np.concatenate([Xn, np.zeros_like(Xn)], axis=-1)
            manip = getattr(n2v_utils, f"pm_{MANIPULATOR}")(p["radius"])
            wrap = N2V_DataWrapper(Xn, Y, batch_size=bs, length=nb + 2, perc_pix=p["perc_pix"],
                                   shape=(p["patch"],) * 2, value_manipulation=manip)
            it = iter(range(10 ** 9))
            prod[f"batch_{bs}_ms"] = 1e3 * timed(lambda: wrap[next(it) % (nb + 2)], nb, warmup=2)
            if bs == p["batch"]:
                fixed = tuple(np.array(a, copy=True) for a in wrap[0])  # the wrapper reuses its buffers
    out["producer"] = prod

    # (2) network only: train_on_batch on one fixed batch (compiled train function; warm-up calls excluded)
    x, y = fixed
    out["network"] = dict(s_per_step=timed(lambda: km.train_on_batch(x, y), p["net_steps"], warmup=3),
                          steps=p["net_steps"], batch_shape=list(x.shape))
    out["flops"] = keras_conv_flops_per_pixel(km, keras, size=p["patch"])
    out["n_params"] = int(km.count_params())
    if ours:
        out["tile_context_px"] = tile_context(model, p)
        out["precision"] = km.get_layer("channel_0down_level_0_no_0").dtype_policy.name
    out["model_dir"] = str(workdir / name)
    out["threads"] = dict(tf_intra=tf.config.threading.get_intra_op_parallelism_threads(),
                          tf_inter=tf.config.threading.get_inter_op_parallelism_threads())
    return out


def tile_context(model, p: dict) -> int:
    """Pixels of context csbdeep's tiling gives each tile side (the n2v_tf overlap rounded up to 2**depth)."""
    r = int(model._axes_tile_overlap("YX")[0])
    block = 2 ** p["depth"]
    return int(math.ceil(r / block) * block)


def train_careamics(p: dict, ds: dict, workdir: Path) -> dict:
    import numpy as np

    import ref_careamics as rc

    tv = rc._ensure_torchvision()
    import torch
    from careamics import CAREamist
    from careamics.config.factories.n2v_factory import create_advanced_n2v_config
    from careamics.losses import n2v_loss

    seed = 1  # CAREamics requires a seed > 0
    torch.manual_seed(seed)
    np.random.seed(seed)
    name = model_name("careamics")
    wd = workdir / name
    shutil.rmtree(wd, ignore_errors=True)
    kw = rc.config_kwargs(name, CAREAMICS_VARIANT, p["epochs"], p["steps_per_epoch"], seed, protocol=qd_protocol(p))
    config = create_advanced_n2v_config(**kw)
    timer = _lightning_timer()
    careamist = CAREamist(config, work_dir=wd, callbacks=[timer], enable_progress_bar=False)
    X, X_val = ds["X_train"][..., 0], ds["X_val"][..., 0]

    out = dict(torchvision=tv, kernel_note="CAREamics' UNet kernel is fixed to 3" if p["kernel"] != 3 else None)
    t0 = time.perf_counter()
    careamist.train(train_data=X, val_data=X_val)
    t1 = time.perf_counter()
    out["training"] = training_summary(t0, t1, timer.epoch_end, timer.batch_end, p["steps_per_epoch"])
    out["training"]["global_step"] = int(careamist.trainer.global_step)
    out["rss_train_mb"] = maxrss_mb()

    module = careamist.model
    net = module.model
    dm = careamist.train_datamodule

    # (3) producer: the dataloader (patching, normalisation, collation) + N2V masking (done in the module on the
    # batch tensor, N2VManipulate)
    def batches(bs):
        dm.batch_size = bs
        while True:
            for b in dm.train_dataloader():
                yield b

    nb = p["producer_batches"]
    prod = {}
    for bs in (p["batch"], p["big_batch"]):
        gen = batches(bs)
        prod[f"loader_{bs}_ms"] = 1e3 * timed(lambda: next(gen), nb, warmup=2)
        xb = next(gen)[0].data
        prod[f"mask_{bs}_ms"] = 1e3 * timed(lambda: module.n2v_manipulate(xb), nb, warmup=2)
        prod[f"batch_{bs}_ms"] = prod[f"loader_{bs}_ms"] + prod[f"mask_{bs}_ms"]
        if bs == p["batch"]:
            fixed = module.n2v_manipulate(xb)
    dm.batch_size = p["batch"]
    out["producer"] = prod

    # (2) network only: forward + masked MSE + backward + Adam step on one fixed masked batch
    xm, xo, mask = fixed
    opt = torch.optim.Adam(net.parameters(), lr=p["lr"])
    net.train()

    def step():
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            loss = n2v_loss(net(xm), xo, mask)
            loss.backward()
            opt.step()
        return float(loss.detach())

    out["network"] = dict(s_per_step=timed(step, p["net_steps"], warmup=3), steps=p["net_steps"],
                          batch_shape=list(xm.shape))
    out["flops"] = torch_conv_flops_per_pixel(net, 2, p["patch"], 1)
    out["n_params"] = int(sum(q.numel() for q in net.parameters()))
    ckpts = sorted(wd.rglob("*.ckpt"), key=lambda q: ("last" not in q.name, q.stat().st_mtime))
    out["checkpoint"] = str(ckpts[0]) if ckpts else None
    out["model_dir"] = str(wd)
    out["threads"] = dict(torch=torch.get_num_threads(), torch_interop=torch.get_num_interop_threads())
    return out


# --------------------------------------------------------------------------
# part: predict
# --------------------------------------------------------------------------
def load_pred_data(data_dir: Path):
    import numpy as np
    import tifffile

    small_files = sorted((data_dir / "small").glob("*.tif"))
    return dict(latency=np.load(data_dir / "latency.npy"), big=np.load(data_dir / "big.npy"),
                small_files=small_files, small=[tifffile.imread(f) for f in small_files])


def predict_part(tool: str, p: dict, workdir: Path, data_dir: Path, train_res: dict | None) -> dict:
    import numpy as np

    out = {}
    t_imp = time.perf_counter()
    if tool == "careamics":
        import ref_careamics as rc

        out["torchvision"] = rc._ensure_torchvision()
        from careamics import CAREamist
    elif tool == "n2v_tf":
        from n2v_tf import N2V
    else:
        from n2v.models import N2V
    out["import_s"] = time.perf_counter() - t_imp
    d = load_pred_data(data_dir)  # read before any timing of a prediction
    name = model_name(tool)

    t = time.perf_counter()
    if tool == "careamics":
        ckpt = (train_res or {}).get("checkpoint")
        if not ckpt:
            cands = sorted((workdir / name).rglob("*.ckpt"), key=lambda q: ("last" not in q.name, q.stat().st_mtime))
            ckpt = str(cands[0]) if cands else None
        if not ckpt:
            raise FileNotFoundError(f"no CAREamics checkpoint under {workdir / name}")
        pred_wd = workdir / (name + "_predict")
        shutil.rmtree(pred_wd, ignore_errors=True)
        careamist = CAREamist(checkpoint_path=ckpt, work_dir=pred_wd, enable_progress_bar=False)
        bsz = p["careamics_pred_batch"]

        def predict(img, tiled=False):
            kw = dict(tile_size=None)
            if tiled:
                kw = dict(tile_size=(ctile, ctile), tile_overlap=(cov, cov))
            arr, _ = careamist.predict(pred_data=img, data_type="array", axes="YX", batch_size=bsz, **kw)
            return np.asarray(arr[0]).squeeze()
        out["checkpoint"] = ckpt
    else:
        model = N2V(None, name, basedir=str(workdir))

        def predict(img, tiled=False):
            return model.predict(img, "YX", n_tiles=(p["n_tiles"],) * 2 if tiled else None)
    out["load_s"] = time.perf_counter() - t

    # (4) first prediction in this fresh process, then a second one
    t = time.perf_counter()
    r = predict(d["latency"])
    out["first_predict_s"] = time.perf_counter() - t
    out["process_to_first_prediction_s"] = time.perf_counter() - T_PROCESS
    t = time.perf_counter()
    predict(d["latency"])
    out["second_predict_s"] = time.perf_counter() - t
    out["latency_shape"] = list(np.shape(r))

    # (5) throughput after one warm-up call each
    big = d["big"]
    n_tiles = p["n_tiles"]
    if tool == "careamics":
        # bench_speed.py passes 2 x n2v_tf's tile context; alone, CAREamics' own default overlap (48) is used
        cov = p["careamics_overlap"] if p["careamics_overlap"] is not None else 48
        ctile, per_axis = careamics_tiles(big.shape[-1], n_tiles, cov, 2 ** p["depth"])
        out["tiling"] = dict(tile_size=[ctile, ctile], tile_overlap=[cov, cov], tiles_per_axis=per_axis,
                             context_px=cov // 2, batch_size=p["careamics_pred_batch"])
    else:
        out["tiling"] = dict(n_tiles=[n_tiles, n_tiles])
    predict(big[0], tiled=True)
    t = time.perf_counter()
    for im in big:
        predict(im, tiled=True)
    dt = time.perf_counter() - t
    out["big"] = dict(n=len(big), shape=list(big.shape[1:]), s=dt, mpx_s=big.size / 1e6 / dt)

    small = d["small"]
    predict(small[0])
    t = time.perf_counter()
    for im in small:
        predict(im)
    dt = time.perf_counter() - t
    mpx = sum(im.size for im in small) / 1e6
    out["small_loop"] = dict(n=len(small), shape=list(small[0].shape), s=dt, mpx_s=mpx / dt)

    folder = data_dir / "small"
    if tool == "careamics":
        t = time.perf_counter()
        arrs, _ = careamist.predict(pred_data=str(folder), data_type="tiff", axes="YX",
                                    batch_size=p["careamics_pred_batch"], tile_size=None)
        dt = time.perf_counter() - t
        out["small_folder"] = dict(how="CAREamist.predict(folder, data_type='tiff') (in memory, not written)",
                                   n=len(arrs), s=dt, mpx_s=mpx / dt)
    out["rss_predict_mb"] = maxrss_mb()

    if tool == "n2v_tf":  # the CLI, end to end in a new process: start-up, import, load, read, predict, write
        exe = Path(sys.executable).parent / "n2v-tf"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "n2v_tf"]
        cli = {}
        for key, src in (("one", data_dir / "small1"), ("all", folder)):
            dst = workdir / f"cli_out_{key}"
            shutil.rmtree(dst, ignore_errors=True)
            full = cmd + ["predict", str(src), "--model-dir", str(workdir), "--name", name, "--output", str(dst)]
            t = time.perf_counter()
            r = subprocess.run(full, capture_output=True, text=True)
            cli[f"{key}_s"] = time.perf_counter() - t
            if r.returncode:
                raise RuntimeError(f"{' '.join(full)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
            cli[f"{key}_written"] = len(list(dst.glob("*.tif")))
        n_small = len(small)
        cli["command"] = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)) + \
            " predict <folder> --model-dir <dir> --name <name> --output <out>"
        cli["mpx_s"] = mpx / cli["all_s"]
        marg = cli["all_s"] - cli["one_s"]
        cli["marginal_mpx_s"] = mpx * (n_small - 1) / n_small / marg if n_small > 1 and marg > 0 else None
        cli["startup_s"] = cli["one_s"] - (cli["all_s"] - cli["one_s"]) / max(1, n_small - 1)
        out["small_folder"] = dict(how="n2v-tf predict <folder> (new process; TIFF read + write)", n=n_small,
                                   s=cli["all_s"], mpx_s=cli["mpx_s"], cli=cli)
    return out


# --------------------------------------------------------------------------
def versions(tool: str) -> dict:
    names = {"n2v_tf": ("n2v_tf", "tensorflow", "keras", "csbdeep", "numpy"),
             "n2v_tf_auto": ("n2v_tf", "tensorflow", "keras", "csbdeep", "numpy"),
             "n2v033": ("n2v", "csbdeep", "tensorflow", "tensorflow-cpu", "keras", "numpy"),
             "careamics": ("careamics", "torch", "lightning", "numpy")}[tool]
    return qd.pkg_versions(*names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", required=True, choices=TOOLS)
    ap.add_argument("--part", required=True, choices=PARTS)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--workdir", default=None, help="model folders (default: _runs/speed[/quick]/models)")
    ap.add_argument("--data-dir", default=None, help="prediction images written by bench_speed.py")
    ap.add_argument("--train-json", default=None, help="predict: the train part's JSON (checkpoint, tile context)")
    add_protocol_args(ap)
    args = ap.parse_args(argv)
    p = protocol(args)
    base = qd.RUNS_DIR / "speed" / ("quick" if p["quick"] else "")
    workdir = Path(args.workdir) if args.workdir else base / "models"
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else base / "data"
    res = dict(tool=args.tool, part=args.part, protocol=p, ok=False, started=time.strftime("%Y-%m-%d %H:%M:%S"),
               host=dict(python=platform.python_version(), cpus=os.cpu_count()), loadavg_before=list(os.getloadavg()))
    rc = 0
    try:
        res["versions"] = versions(args.tool)
        if args.part == "machine":
            res.update(part_machine(p, args))
        elif args.part == "train":
            ds = qd.load(DATASET)
            res["data"] = dict(dataset=DATASET, X_train=list(ds["X_train"].shape), X_val=list(ds["X_val"].shape),
                               sha256=ds["meta"]["sha256"])
            res.update(train_careamics(p, ds, workdir) if args.tool == "careamics"
                       else train_keras(args.tool, p, ds, workdir))
        else:
            train_res = json.loads(Path(args.train_json).read_text()) if args.train_json else None
            res.update(predict_part(args.tool, p, workdir, data_dir, train_res))
        res["ok"] = True
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()
        print(res["traceback"], file=sys.stderr, flush=True)
        rc = 1
    res["rss_process_mb"] = maxrss_mb()
    res["loadavg_after"] = list(os.getloadavg())
    res["wall_s"] = time.perf_counter() - T_PROCESS
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    print(f"[speed_worker {args.tool}/{args.part}] {'ok' if res['ok'] else 'FAILED: ' + res['error']} "
          f"({res['wall_s']:.0f} s) -> {args.out}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
