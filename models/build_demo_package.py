"""Train the N2V2 demo model on the shipped nuclei image and export it as a BioImage.IO package.

Writes ``models/n2v2_nuclei_demo.bioimage.io.zip`` and prints the numbers of the model card (``models/README.md``).
About 2-5 minutes on 2 CPU cores. Needs the ``bioimageio`` extra: ``pip install -e ".[bioimageio]"``.

    python models/build_demo_package.py [--out models/n2v2_nuclei_demo.bioimage.io.zip]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
#: training budget: the full `n2v-tf demo` settings (CPU-friendly)
SETTINGS = dict(unet_kern_size=3, unet_n_depth=2, unet_n_first=16, n2v_perc_pix=0.198, n2v_patch_shape=(64, 64),
                train_epochs=15, train_steps_per_epoch=20, train_batch_size=16, train_learning_rate=1e-3,
                train_tensorboard=False, blurpool=True, skip_skipone=True, unet_residual=False,
                n2v_manipulator="median", train_loss="mse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "n2v2_nuclei_demo.bioimage.io.zip"))
    args = parser.parse_args()

    from importlib.resources import files

    import keras
    import tifffile

    from n2v_tf import N2V, N2VConfig, psnr
    from n2v_tf.export import export_bioimageio

    demo = files("n2v_tf") / "demo_data"
    noisy = tifffile.imread(str(demo / "nuclei_noisy.tif")).astype(np.float32)
    clean = tifffile.imread(str(demo / "nuclei_clean.tif"))
    train, val = noisy[:192, :, np.newaxis], noisy[192:, :, np.newaxis]  # rows 192-255 held out for validation

    keras.utils.set_random_seed(SEED)
    config = N2VConfig([train], **SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        model = N2V(config, "n2v2_nuclei_demo", basedir=tmp)
        t0 = time.perf_counter()
        history = model.train([train], [val], verbose=2, seed=SEED)
        seconds = time.perf_counter() - t0
        denoised = model.predict(noisy, "YX")
        t0 = time.perf_counter()
        out = export_bioimageio(
            model, args.out, test_img=noisy, axes="YX", overwrite=True,
            name="N2V2 nuclei demo (n2v_tf)",
            description="N2V2 self-supervised denoising of 2D fluorescence images of nuclei: a small demo model "
                        "trained for 2 CPU minutes on one 256x256 image with simulated shot and read noise.",
            authors=[{"name": "n2v_tf contributors"}],
            tags=["fluorescence-light-microscopy", "nuclei", "demo"])
        export_seconds = time.perf_counter() - t0
    result = {
        "psnr_noisy_db": round(float(psnr(clean, noisy)), 2),
        "psnr_denoised_db": round(float(psnr(clean, denoised)), 2),
        "training_seconds": round(seconds, 1),
        "export_seconds": round(export_seconds, 1),
        "best_val_loss": round(float(min(history.history["val_loss"])), 5),
        "package": str(out), "package_bytes": out.stat().st_size,
        "means": config.means, "stds": config.stds,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
