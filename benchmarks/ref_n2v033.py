"""Reference baseline: the original juglab ``n2v==0.3.3`` (TensorFlow 2.15).

Run inside its own virtualenv (NOT /work/main/.venv), e.g.::

    python3 -m venv /work/venvs/n2v033
    /work/venvs/n2v033/bin/pip install "tensorflow-cpu==2.15.1" "n2v==0.3.3" "csbdeep<0.8" "numpy<2" scikit-image
    nice -n 15 /work/venvs/n2v033/bin/python benchmarks/ref_n2v033.py --quick --seeds 2 --datasets fluo  # smoke
    nice -n 15 /work/venvs/n2v033/bin/python benchmarks/ref_n2v033.py --seeds 3     # full protocol, 3 seeds
    nice -n 15 /work/venvs/n2v033/bin/python benchmarks/ref_n2v033.py --seed 1 --datasets fluo3d

Writes ``benchmarks/_runs/n2v033_<variant>_<dataset>_seed<k>.json`` (``_runs/quick/`` for
``--quick``; model folders ``_runs/models/n2v033_<variant>_<dataset>_seed<k>``).  The protocol (data,
network, optimiser, masking; per dataset: ``quality_data.protocol``, e.g. fluo3d's 16x64x64 patches and
batch 2) is defined in ``quality_data.py`` and shared with ``bench_quality.py`` (n2v_tf) and
``ref_careamics.py``.  3D (fluo3d) uses n2v's own 3D support (``SZYXC`` patches, ``predict(img, 'ZYX')``).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402

TOOL = "n2v033"


def run_one(variant: str, ds: dict, args, seed: int) -> dict:
    import numpy as np
    import tensorflow as tf
    from n2v.models import N2V, N2VConfig

    epochs, spe = qd.schedule(args)
    random.seed(seed)
    np.random.seed(seed)  # n2v's N2V_DataWrapper / manipulators use the global numpy RNG
    tf.random.set_seed(seed)

    kw = qd.n2v_config_kwargs(variant, epochs, spe, ds["name"])
    X, X_val = ds["X_train"], ds["X_val"]
    config = N2VConfig(X, **kw)
    name = qd.run_name(TOOL, variant, ds["name"], seed)
    basedir = str(qd.models_dir(args))
    model = N2V(config, name, basedir=basedir)

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    hist = model.train(X, X_val)
    train_time = time.perf_counter() - t0
    load1 = os.getloadavg()

    val = [float(v) for v in hist.history.get("val_loss", [])]
    best_epoch = int(np.argmin(val)) + 1 if val else None

    axes = qd.spatial_axes(ds)
    preds, pred_time = qd.predict_timed(lambda img: model.predict(img, axes), ds)
    res = qd.run_record(
        ds, preds,
        train_time=train_time,
        pred_time=pred_time,
        epochs=epochs,
        steps_per_epoch=spe,
        batch_size=kw["train_batch_size"],
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
        n2v_config_means=list(config.means),
        n2v_config_stds=list(config.stds),
        checkpoint=(f"weights_best.h5 (best val_loss, epoch {best_epoch}/{len(val)}; n2v reloads it after train())"
                    if config.train_checkpoint else "last"),
        n_params=int(model.keras_model.count_params()),
        best_epoch=best_epoch,
        history={k: [float(x) for x in v] for k, v in hist.history.items()},
        loadavg_before=list(load0),
        loadavg_after=list(load1),
        seed=seed,
        versions=qd.pkg_versions("n2v", "csbdeep", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scikit-image"),
        model_dir=str(Path(basedir) / name),
    )
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="n2v 0.3.3 reference runs for the quality benchmark")
    qd.add_common_args(ap)
    ap.add_argument("--variants", nargs="+", default=["uniform_withCP"], choices=list(qd.N2V_VARIANTS),
                    help="default: uniform_withCP (n2v's default manipulator)")
    args = ap.parse_args(argv)
    for seed in qd.seeds(args):
        for dname in args.datasets:
            ds = qd.load(dname)
            for variant in args.variants:
                res = run_one(variant, ds, args, seed)
                qd.write_result(TOOL, variant, ds, res, args.quick, seed)


if __name__ == "__main__":
    main()
