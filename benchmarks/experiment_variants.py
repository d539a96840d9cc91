"""Experiment (issue 2): which of CAREamics' network choices, if any, explains its lead on the quality benchmark?

Same protocol as ``bench_quality.py`` (N2V uniform_withCP, 1000 steps), one network change at a time, several
seeds, and both checkpoints (best validation and last epoch) evaluated on the same run. Batch-norm momentum and
decoder width are config fields; upsampling and initialisation, which the library does not offer, are changed in
this script's process only, by swapping entries of ``n2v_tf.nets._LAYERS``.

Variants:

``default``
    n2v 0.3.3's network (what n2v_tf builds by default).
``bilinear``
    bilinear instead of nearest-neighbour upsampling (CAREamics' ``nn.Upsample(mode="bilinear")``); 2D only.
    Usable here because every image of a dataset is predicted at one size: with Keras 3.15,
    ``UpSampling2D(interpolation="bilinear")`` fails once ``predict`` retraces with dynamic spatial sizes
    (``keras.ops.image.resize`` compares the symbolic size with 0), so the library does not offer it.
``torch_init``
    PyTorch's default initialisation of convolutions (kaiming-uniform with a = sqrt(5), i.e. weights and biases
    uniform in +-1/sqrt(fan_in)) instead of Keras' glorot-uniform weights and zero biases.
``bn09``
    batch-norm momentum 0.9 (PyTorch's 0.1) instead of Keras' 0.99.
``wide``
    the CSBDeep/CAREamics decoder widths (``unet_wide_decoder=True``).
``careamics``
    all four of the above together.

Usage (repo root)::

    nice -n 10 .venv/bin/python benchmarks/experiment_variants.py fluo --variant bilinear --seed 0

Writes ``benchmarks/_runs/experiment_variant_<variant>_<dataset>_seed<k>.json`` and prints one line;
``--table`` prints the table of every such file instead of training.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality_data as qd  # noqa: E402

FACTORS = {
    "default": (),
    "bilinear": ("bilinear",),
    "torch_init": ("torch_init",),
    "bn09": ("bn09",),
    "wide": ("wide",),
    "careamics": ("bilinear", "torch_init", "bn09", "wide"),
}


def _patch_layers(factors: tuple[str, ...]) -> None:
    """Swap the 2D layer classes n2v_tf's builder uses, for this process only."""
    import keras
    from n2v_tf import nets

    if "bilinear" in factors:
        def up(size, name=None):
            return keras.layers.UpSampling2D(size, interpolation="bilinear", name=name)
        nets._LAYERS[2] = dict(nets._LAYERS[2], up=up)
    if "torch_init" in factors:
        def conv(*args, **kwargs):
            # kaiming_uniform(a=sqrt(5)): bound = 1/sqrt(fan_in) for weights and biases alike
            kwargs["kernel_initializer"] = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
            return keras.layers.Conv2D(*args, **kwargs)
        nets._LAYERS[2] = dict(nets._LAYERS[2], conv=conv)


def _torch_biases(model, seed: int) -> None:
    """PyTorch's default conv bias initialisation: uniform in +-1/sqrt(fan_in)."""
    import numpy as np
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            k, b = layer.get_weights()
            fan_in = int(np.prod(k.shape[:-1]))
            bound = 1 / np.sqrt(fan_in)
            layer.set_weights([k, rng.uniform(-bound, bound, b.shape).astype(b.dtype)])


def run(dataset: str, variant: str, seed: int) -> dict:
    import keras
    from n2v_tf import N2V, N2VConfig

    factors = FACTORS[variant]
    _patch_layers(factors)
    keras.utils.set_random_seed(seed)
    ds = qd.load(dataset)
    kw = qd.n2v_config_kwargs("uniform_withCP", 10, 100)
    config = N2VConfig(ds["X_train"], unet_wide_decoder="wide" in factors,
                       batch_norm_momentum=0.9 if "bn09" in factors else 0.99, **kw)
    tag = f"{variant}_{dataset}_seed{seed}"
    model = N2V(config, f"experiment_variant_{tag}", basedir=str(HERE / "_runs" / "models"), overwrite=True)
    if "torch_init" in factors:
        _torch_biases(model.keras_model, seed)
    t0 = time.perf_counter()
    hist = model.train(ds["X_train"], ds["X_val"], verbose=2)
    train_time = time.perf_counter() - t0
    res = dict(variant=variant, dataset=dataset, seed=seed, factors=list(factors), train_time_s=train_time,
               n_params=int(model.keras_model.count_params()),
               val_loss=[float(v) for v in hist.history["val_loss"]])
    for which in ("best", "last"):
        model.load_weights(f"weights_{which}.h5")
        preds, _ = qd.predict_timed(lambda im: model.predict(im, "YX"), ds)
        ev = qd.evaluate(ds, preds)
        res[which] = dict(psnr=ev["psnr"], psnr_input=ev["psnr_input"],
                          per_image={p["image"]: p["psnr"] for p in ev["per_image"]})
    (HERE / "_runs" / f"experiment_variant_{tag}.json").write_text(json.dumps(res, indent=2))
    return res


def table() -> str:
    rows = []
    for p in sorted((HERE / "_runs").glob("experiment_variant_*.json")):
        r = json.loads(p.read_text())
        rows.append((r["dataset"], r["variant"], r["seed"], r["best"]["psnr"], r["last"]["psnr"], r["train_time_s"]))
    lines = ["| dataset | variant | seed | PSNR best-val (dB) | PSNR last (dB) | train (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {d} | {v} | {s} | {b:.2f} | {la:.2f} | {t:.0f} |" for d, v, s, b, la, t in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", choices=qd.DATASETS)
    ap.add_argument("--variant", choices=sorted(FACTORS), default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print the table of all results and exit")
    args = ap.parse_args(argv)
    if args.table or args.dataset is None:
        print(table())
        return
    res = run(args.dataset, args.variant, args.seed)
    print(json.dumps({k: res[k] for k in ("variant", "dataset", "seed", "best", "last", "train_time_s")}))


if __name__ == "__main__":
    main()
