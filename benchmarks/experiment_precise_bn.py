"""Batch-norm statistics of the quality protocol's trained models: the saved ones vs recalibrated ("precise BN").

For every n2v_tf N2V model folder that ``bench_quality.py`` left in ``benchmarks/_runs/models`` (``--variants``,
``--datasets``, ``--seeds``), predicts the protocol's test images twice:

- ``saved``: with the weight file the folder loads (its batch-norm moving statistics as saved: the momentum
  averages of training for configs with ``train_recalibrate_bn=False``, recalibrated ones otherwise);
- ``recalibrated``: after :func:`n2v_tf.nets.recalibrate_batch_norm` on the dataset's training patches
  (``X_train`` in order, in batches of the training batch size, unmasked and normalised like the training data).

It prints the PSNR per test image and the offset of each prediction (``mean(prediction) - mean(noisy input)``, in
the data's units).  The trainable weights are the same in both columns, so the difference is the statistics alone.

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_precise_bn.py --variants rec_n2v rec_n2v2 --datasets natural
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def evaluate(model, ds: dict) -> tuple[list[float], list[float]]:
    """PSNR (``quality_data.evaluate``) and offset ``mean(prediction) - mean(noisy)`` of each test image."""
    axes = qd.spatial_axes(ds)
    preds = [model.predict(x, axes=axes) for x in ds["test_noisy"]]
    psnrs = [p["psnr"] for p in qd.evaluate(ds, preds)["per_image"]]
    return psnrs, [float(np.mean(p) - np.mean(x)) for p, x in zip(preds, ds["test_noisy"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    qd.add_model_selection_args(ap, dataset="natural")
    args = ap.parse_args()

    from n2v_tf.config import normalize
    from n2v_tf.nets import recalibrate_batch_norm

    rows = []
    for ds, variant, seed, model in qd.trained_models(args.datasets, args.variants, args.seeds, args.models):
        saved = evaluate(model, ds)
        X = normalize(ds["X_train"], *model.config.normalization())
        bs = int(model.config.train_batch_size)
        recalibrate_batch_norm(model.keras_model, (X[i:i + bs] for i in range(0, len(X) - bs + 1, bs)))
        recal = evaluate(model, ds)
        rows.append((ds["name"], variant, seed, saved, recal))
        print(f"{model.name}: saved {np.mean(saved[0]):.2f} dB, recalibrated {np.mean(recal[0]):.2f} dB",
              file=sys.stderr, flush=True)

    print("| dataset | variant | seed | saved dB (per image) | offset | recalibrated dB (per image) | offset |")
    print("|---|---|---|---|---|---|---|")
    for dataset, variant, seed, (p0, o0), (p1, o1) in rows:
        fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
        print(f"| {dataset} | {variant} | {seed} | {np.mean(p0):.2f} ({fmt(p0)}) | {fmt(o0)} | "
              f"{np.mean(p1):.2f} ({fmt(p1)}) | {fmt(o1)} |")
    for dataset in args.datasets:
        for variant in args.variants:
            sel = [r for r in rows if r[0] == dataset and r[1] == variant]
            if sel:
                a = [np.mean(r[3][0]) for r in sel]
                b = [np.mean(r[4][0]) for r in sel]
                print(f"{dataset} {variant}: saved {np.mean(a):.2f} +- {np.ptp(a):.2f}, recalibrated "
                      f"{np.mean(b):.2f} +- {np.ptp(b):.2f} dB over {len(sel)} seeds (mean +- max-min)")


if __name__ == "__main__":
    main()
