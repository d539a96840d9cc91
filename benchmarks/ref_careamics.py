"""Reference baseline: CAREamics (PyTorch / Lightning) Noise2Void.

Run inside its own virtualenv (NOT /work/main/.venv).  careamics 0.3.5 pins
``torchvision<=0.26`` (only built for torch<=2.11), and PyPI has no CPU build of
torchvision at all (its wheels need torch's CUDA libraries), so with the local
CPU build of torch 2.13.0 careamics is installed WITHOUT torchvision and this
script registers a stub ``torchvision`` module (see ``_ensure_torchvision``;
torchvision is only used by CAREamics' LVAE models and BMZ export)::

    python3 -m venv /work/venvs/careamics
    /work/venvs/careamics/bin/pip install "torch==2.13.0"            # local CPU wheel, FIRST
    echo "torch==2.13.0" > /tmp/torch_constraint.txt
    /work/venvs/careamics/bin/pip install -c /tmp/torch_constraint.txt \
        "bioimageio-core>=0.9,<=0.11.0" "lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3" "matplotlib<=3.11.2" \
        "microssim<=0.0.5" "numpy>=1.21,<=2.4.6" "pillow<=13.0.0" "psutil<=7.2.2" "pydantic>=2.11,<=2.14.1" \
        "pyyaml<=6.0.3,!=6.0.0" "scikit-image<=0.26.0" "tifffile<=2026.3.3" "torchmetrics>0.7,<1.9" \
        "zarr>=3,<4"
    /work/venvs/careamics/bin/pip install --no-deps careamics==0.3.5

    nice -n 15 /work/venvs/careamics/bin/python benchmarks/ref_careamics.py --quick --seeds 2 --datasets fluo
    nice -n 15 /work/venvs/careamics/bin/python benchmarks/ref_careamics.py --seeds 3   # full protocol, 3 seeds
    nice -n 15 /work/venvs/careamics/bin/python benchmarks/ref_careamics.py --seed 1 --datasets fluo3d

Protocol mapping (see quality_data.py): ``create_advanced_n2v_config`` with
UNet depth 2 / 32 initial channels / batch norm (CAREamics defaults; its UNet
kernel is fixed to 3), Adam lr 4e-4 (CAREamics' default would be torch's 1e-3),
batch 16, patch 64, 10 epochs x ``limit_train_batches=100`` (= 1000 steps),
masked_pixel_percentage 0.198, roi_size 11 (= radius 5), CAREamics' default N2V
strategy ``uniform`` (its ``uniform_manipulate`` uses ``remove_center=True``:
the replacement offset is drawn non-zero along EVERY axis, so the masked pixel
itself can never be its own replacement -- n2v's ``uniform_withoutCP``-like,
not n2v's default ``uniform_withCP``), loss = masked MSE, normalisation mean/std
of the training data (CAREamics default).  Augmentations are DISABLED
(``augmentations=[]``; CAREamics' default would be flips + 90 degree rotations)
because n2v 0.3.3's training wrapper does not augment either; variant ``uniform_aug`` keeps
CAREamics' default augmentations (``augmentations=None``), the reference for n2v_tf trained with
``train_augment=True``.  Our explicit
validation patches replace CAREamics' ``n_val_patches``.  ReduceLROnPlateau
(torch defaults, patience 10) cannot trigger within 10 epochs.  CAREamics'
default N2V checkpointing keeps the last epoch (and every 10th) and predicts
with the in-memory LAST-epoch weights; that is what is evaluated here.

3D (fluo3d): the same mapping with ``axes='SZYX'`` and the dataset's 3D patch size and batch
(``quality_data.protocol('fluo3d')``: 16x64x64, batch 2); CAREamics builds a 3D UNet when the axes have Z,
and predicts the whole test volume (``axes='ZYX'``, no tiling).

Seeds: protocol seed k (``--seed k`` / ``--seeds N`` -> 0..N-1) seeds CAREamics with k + 1 (it requires a
seed > 0).  Writes ``benchmarks/_runs/careamics_<variant>_<dataset>_seed<k>.json`` (model folders
``_runs/models/careamics_<variant>_<dataset>_seed<k>``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402

TOOL = "careamics"
#: ``uniform``/``n2v2``: no augmentation (the protocol); ``uniform_aug``: CAREamics' default augmentations (random
#: flips and 90-degree rotations in XY, ``augmentations=None``), the reference for n2v_tf presets with train_augment
VARIANTS = {"uniform": dict(use_n2v2=False, augmentations=[]), "n2v2": dict(use_n2v2=True, augmentations=[]),
            "uniform_aug": dict(use_n2v2=False, augmentations=None)}


def _ensure_torchvision() -> str:
    """Make ``import careamics`` work without a usable torchvision.

    careamics imports ``torchvision.transforms.functional`` at import time, but only
    uses it in its LVAE/MicroSplit models (``center_crop``) and for the torchvision
    version string in BioImage-Model-Zoo exports -- neither is used for N2V.  PyPI
    has no CPU build of torchvision: its wheels link against torch's CUDA libraries,
    which the local CPU build of torch 2.13.0 lacks, so ``import torchvision``
    fails.  If that is the case, a minimal stub is registered in ``sys.modules``
    (AFTER lightning/torchmetrics were imported, so they see torchvision as
    absent); calling any of its functions raises.
    """
    import torch  # noqa: F401
    import lightning  # noqa: F401
    import torchmetrics  # noqa: F401

    try:
        import torchvision  # noqa: F401

        v = torchvision.__version__
        return "stub (real torchvision not importable)" if v.endswith("+stub") else f"torchvision {v}"
    except Exception as e:  # ModuleNotFoundError or the CUDA-library RuntimeError
        import types

        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]

        def _unavailable(name):
            def f(*a, **k):
                raise NotImplementedError(f"torchvision.{name} is a stub in this benchmark (no CPU torchvision)")
            return f

        tv = types.ModuleType("torchvision")
        tv.__version__ = "0.0.0+stub"
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")

        def _getattr(name):
            if name.startswith("__"):  # keep inspect/pydantic happy (__file__, __spec__, ...)
                raise AttributeError(name)
            return _unavailable(f"transforms.functional.{name}")

        fn.__getattr__ = _getattr
        tv.transforms, tr.functional = tr, fn
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})
        return f"stub (real torchvision not importable: {type(e).__name__}: {str(e)[:120]})"


def _history_callback():
    from lightning.pytorch.callbacks import Callback

    class History(Callback):
        def __init__(self):
            self.history: dict[str, list[float]] = {}
            self.t0 = None

        def on_train_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            for k, v in m.items():
                self.history.setdefault(k, []).append(v)
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            self.history.setdefault("lr", []).append(lr)
            print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step} "
                  + " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items()))
                  + f" lr={lr} t={time.perf_counter() - self.t0:.0f}s", flush=True)

    return History()


def config_kwargs(name: str, variant: str, epochs: int, steps_per_epoch: int, seed: int,
                  protocol: dict | None = None) -> dict:
    """Keyword arguments for ``create_advanced_n2v_config`` (the protocol mapping of the module docstring).

    ``protocol`` defaults to ``quality_data.PROTOCOL`` (its keys ``unet_n_depth``, ``unet_n_first``,
    ``batch_norm``, ``train_batch_size``, ``train_learning_rate``, ``n2v_perc_pix``,
    ``n2v_neighborhood_radius`` and ``patch`` (an int: square 2D, or a ZYX tuple: 3D) are used; CAREamics'
    UNet kernel is fixed to 3); pass ``quality_data.protocol(dataset)`` for a dataset's own protocol.
    """
    p = qd.PROTOCOL if protocol is None else protocol
    patch = p.get("patch", qd.PATCH)
    patch = [int(v) for v in patch] if isinstance(patch, (tuple, list)) else [int(patch)] * 2
    return dict(
        experiment_name=name,
        data_type="array",
        axes="SZYX" if len(patch) == 3 else "SYX",
        patch_size=patch,
        batch_size=p["train_batch_size"],
        num_epochs=int(epochs),
        num_steps=int(steps_per_epoch),
        roi_size=2 * p["n2v_neighborhood_radius"] + 1,
        masked_pixel_percentage=p["n2v_perc_pix"],
        model_params=dict(depth=p["unet_n_depth"], num_channels_init=p["unet_n_first"],
                          use_batch_norm=p["batch_norm"]),
        optimizer="Adam",
        optimizer_params=dict(lr=p["train_learning_rate"]),
        num_workers=0,
        seed=int(seed),
        **VARIANTS[variant],
    )


def run_one(variant: str, ds: dict, args, seed: int) -> dict:
    import numpy as np
    import torch

    tv_status = _ensure_torchvision()
    from careamics import CAREamist
    from careamics.config.factories.n2v_factory import create_advanced_n2v_config

    epochs, spe = qd.schedule(args)
    p = qd.protocol(ds["name"])
    protocol_seed, seed = seed, seed + 1  # CAREamics requires a seed > 0
    torch.manual_seed(seed)
    np.random.seed(seed)

    name = qd.run_name(TOOL, variant, ds["name"], protocol_seed)
    kw = config_kwargs(name, variant, epochs, spe, seed, protocol=p)
    config = create_advanced_n2v_config(**kw)
    workdir = qd.models_dir(args) / name
    hist_cb = _history_callback()
    careamist = CAREamist(config, work_dir=workdir, callbacks=[hist_cb], enable_progress_bar=False)

    X = ds["X_train"][..., 0]
    X_val = ds["X_val"][..., 0]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    careamist.train(train_data=X, val_data=X_val)
    train_time = time.perf_counter() - t0
    load1 = os.getloadavg()
    steps_done = int(careamist.trainer.global_step)

    axes = qd.spatial_axes(ds)

    def _predict(img):
        out = careamist.predict(pred_data=img, data_type="array", axes=axes, tile_size=None, batch_size=1)
        arr = out[0] if isinstance(out, tuple) else out
        arr = arr[0] if isinstance(arr, list) else arr
        return np.asarray(arr, dtype=np.float32).squeeze()

    preds, pred_time = qd.predict_timed(_predict, ds)

    dc = careamist.config.data_config
    norm = dc.normalization.model_dump() if hasattr(dc, "normalization") else None
    n2v_cfg = careamist.config.algorithm_config.n2v_config.model_dump()
    val = hist_cb.history.get("val_loss", [])
    res = qd.run_record(
        ds, preds,
        train_time=train_time,
        pred_time=pred_time,
        epochs=epochs,
        steps_per_epoch=spe,
        batch_size=p["train_batch_size"],
        steps_done=steps_done,
        algorithm="n2v2" if VARIANTS[variant]["use_n2v2"] else "n2v",
        n2v_strategy=n2v_cfg.get("strategy"),
        n2v_manipulate=n2v_cfg,
        normalization=norm,
        model=careamics_model_dump(careamist),
        optimizer=careamist.config.algorithm_config.optimizer.model_dump(),
        lr_scheduler=careamist.config.algorithm_config.lr_scheduler.model_dump(),
        config={k: v for k, v in kw.items() if k not in ("experiment_name",)},
        checkpoint=("last (CAREamics default for N2V: predict() restores the <name>_last.ckpt written after the final epoch; "
                    f"best val_loss would have been epoch {int(np.argmin(val)) + 1 if val else '?'}/{len(val)})"),
        n_params=int(sum(q.numel() for q in careamist.model.parameters())),
        best_epoch=int(np.argmin(val)) + 1 if val else None,
        history=hist_cb.history,
        loadavg_before=list(load0),
        loadavg_after=list(load1),
        torch_threads=torch.get_num_threads(),
        torchvision=tv_status,
        seed=seed,
        versions=qd.pkg_versions("careamics", "torch", "lightning", "numpy", "scikit-image"),
        model_dir=str(workdir),
    )
    return res


def careamics_model_dump(careamist) -> dict:
    try:
        return careamist.config.algorithm_config.model.model_dump()
    except Exception:  # pragma: no cover
        return {}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="CAREamics reference runs for the quality benchmark")
    qd.add_common_args(ap)
    ap.add_argument("--variants", nargs="+", default=["uniform"], choices=list(VARIANTS),
                    help="uniform = CAREamics' default N2V; n2v2 = use_n2v2=True (median + N2V2 UNet)")
    args = ap.parse_args(argv)
    for seed in qd.seeds(args):
        for dname in args.datasets:
            ds = qd.load(dname)
            for variant in args.variants:
                res = run_one(variant, ds, args, seed)
                qd.write_result(TOOL, variant, ds, res, args.quick, seed)


if __name__ == "__main__":
    main()
