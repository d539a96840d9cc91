"""Does a linear calibration of a trained blind-spot network's output, fitted on noisy validation data, raise its PSNR?

A blind-spot prediction ``f`` of a pixel does not see that pixel's noise, so for noise that is zero-mean and
independent between pixels ``E[(noisy - a f - b)^2] = E[(clean - a f - b)^2] + var(noise)``: the least-squares fit
of the *noisy* masked pixels on the network's prediction there gives the gain ``a`` and offset ``b`` that minimise
the error against the *clean* image, without a clean image (``n2v_tf.nets.calibrate_output``, what
``N2VConfig.train_calibrate_output`` runs after training).

For every model folder ``bench_quality.py`` left in ``benchmarks/_runs/models`` (``--variants``, ``--datasets``,
``--seeds``), trained before the calibration existed, this script runs the step training now ends with: the
validation patches masked as ``N2V.train`` masks them (``n2v_tf.data.validation_data``, fixed seed), the fit, the fold
into the output convolution.  It prints the gain and offset (normalised units), the test PSNR before and after, and
the oracle: the least-squares gain and offset of each uncalibrated test prediction against its *clean* image (the
bound of any linear calibration).  The training is unchanged by the option, so these are the PSNRs the protocol
gives with it, up to the nondeterminism of a retraining.

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_calibration.py --variants rec_n2v rec_n2v2 \
        --datasets fluo3d
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def calibrate(model, X_val: np.ndarray) -> tuple[float, float]:
    """Calibrate ``model`` in place as ``N2V.train`` does at its end; returns the gain and offset of channel 0."""
    from n2v_tf.data import validation_data

    c = model.config
    means, stds = c.normalization()
    val = validation_data(X_val, c.n2v_patch_shape, div_by=2 ** c.unet_n_depth, means=means, stds=stds,
                          **model._masking())
    model._calibrate_output(val)
    return model.output_calibration["gain"][0], model.output_calibration["offset"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    qd.add_model_selection_args(ap, dataset="fluo3d")
    ap.add_argument("--per-image", type=int, default=0, metavar="K",
                    help="also predict with calibrate=K: the calibrated model's prediction fitted again on K "
                         "maskings of each noisy test image (column 'per image')")
    args = ap.parse_args()

    print("| dataset | variant | seed | gain | offset | PSNR | calibrated | oracle |"
          + (" per image |" if args.per_image else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.per_image else ""))
    for ds, variant, seed, model in qd.trained_models(args.datasets, args.variants, args.seeds, args.models):
        axes = qd.spatial_axes(ds)
        plain = [model.predict(img, axes) for img in ds["test_noisy"]]
        a, b = calibrate(model, ds["X_val"])
        calibrated = [model.predict(img, axes) for img in ds["test_noisy"]]
        oracle = []
        for p, cl in zip(plain, ds["test_clean"]):
            ao, bo = np.polyfit(p.ravel().astype(np.float64), cl.ravel().astype(np.float64), 1)
            oracle.append(ao * p + bo)
        runs = [plain, calibrated, oracle]
        if args.per_image:
            runs.append([model.predict(nz, axes, calibrate=args.per_image) for nz in ds["test_noisy"]])
        psnr = [qd.evaluate(ds, preds)["psnr"] for preds in runs]
        print(f"| {ds['name']} | {variant} | {seed} | {a:.4f} | {b:+.4f} | "
              + " | ".join(f"{v:.2f}" for v in psnr) + " |", flush=True)


if __name__ == "__main__":
    main()
