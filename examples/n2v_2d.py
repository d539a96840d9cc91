# %% [markdown]
# # Noise2Void and N2V2 on a folder of 2D images
#
# Train **N2V** and **N2V2** side by side on your own noisy 2D images (or on the demo image shipped
# with `n2v_tf`), look at the training curves and the denoised images, denoise the whole folder
# with tiled prediction, and export the better-suited model for Fiji/deepImageJ and the
# BioImage.IO model zoo.
#
# **Noise2Void** (N2V, Krull et al., CVPR 2019) learns to denoise from the noisy images alone: no
# clean images are needed. During training, a few pixels of every image patch (the *blind spots*)
# are hidden, and the network learns to predict their values from the surrounding pixels. Noise
# that is independent from pixel to pixel (photon shot noise, camera read noise) cannot be
# predicted from the neighbours, the image content can, so the network learns to output the
# content without the noise.
#
# **N2V2** (Höck et al., ECCV Workshops 2022) trains the same way with a slightly modified network
# (max-blur-pooling instead of max-pooling, no top-most skip connection) and replaces the blind
# spots with the median of their neighbourhood. It removes the faint checkerboard pattern that N2V
# sometimes leaves in flat regions. In `n2v_tf` it is three options of `N2VConfig`:
# `blurpool=True, skip_skipone=True, n2v_manipulator="median"`.
#
# **How to use this notebook.** Set `DATA_FOLDER` in the first code cell to a folder of 2D TIFF (or
# PNG) images, then run all cells from top to bottom. With `DATA_FOLDER = None` the notebook uses
# the demo image (fluorescence nuclei with simulated noise; its clean version is known, so the
# notebook can also measure the PSNR). Everything is written to `n2v_tf_output/n2v_2d/` in the
# working directory. As a script: `python examples/n2v_2d.py` (about 10 minutes on a 2-core CPU,
# a minute on a GPU); `--quick` or `N2V_TF_QUICK=1` runs a few training steps only (for testing:
# the results then mean nothing).
#
# Needs `pip install "n2v_tf[bioimageio]" matplotlib` (the export needs the `bioimageio` extra).

# %% [markdown]
# ## Settings

# %%
import os
import sys
import time
import warnings
from pathlib import Path

# Quick mode (a few training steps on tiny patches, for testing): `--quick` or N2V_TF_QUICK=1.
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")

# Your data: a folder of 2D images (TIFF, PNG), e.g. "/data/experiment1/noisy". None: the demo image.
DATA_FOLDER = None
# The axes of your files, e.g. "YX" (one 2D image per file) or "SYX" (several 2D images per file).
# None: read them from the files (ImageJ/OME TIFFs store them) or guess them from the shape.
AXES = None
OUTPUT_DIR = Path("n2v_tf_output") / "n2v_2d"     # models, figures and denoised images go here
AUTHORS = ["Your Name"]                           # for the exported model

# Training: both models get exactly the same budget (epochs x steps per epoch, batch size, patch size).
PATCH = (32, 32) if QUICK else (64, 64)           # training patch (Y, X), divisible by 2**DEPTH
DEPTH, N_FIRST, KERNEL = 2, (8 if QUICK else 32), 3  # U-Net: resolution levels, filters, kernel size
EPOCHS = 2 if QUICK else 20
STEPS_PER_EPOCH = 2 if QUICK else 20
BATCH_SIZE = 4 if QUICK else 16
LEARNING_RATE = 1e-3
N_TILES = (2, 2)                                  # tiles along (Y, X) for prediction (large images need more)

OUTPUT_DIR.mkdir(parents=True, exist_ok=True)


def show(png):
    """Show a saved figure in a notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))


# %% [markdown]
# ## Load the images
#
# Without a data folder, the demo image is written as a TIFF into `n2v_tf_output/n2v_2d/demo_data/`
# and then loaded exactly like your own folder would be. The clean version of the demo image is kept
# aside as `reference`: it is **never** used for training, only to measure the quality at the end.
#
# `load_images` reads every `.tif`/`.tiff`/`.png`/`.jpg` file of the folder and finds the axes
# (it prints a warning when it had to guess them: check it, and set `AXES` if it is wrong).
# `check_images` then stops with a sentence saying what to change if something does not fit a
# 2D grayscale model (an empty folder, an RGB image, a 3D stack, images smaller than the training
# patch, ...), and otherwise prints a summary.

# %%
import numpy as np
import tifffile

from n2v_tf.cli import load_demo_data
from n2v_tf.io import check_images, load_images

reference = None
if DATA_FOLDER is None:
    demo_noisy, demo_clean = load_demo_data()      # (256, 256) float32 noisy, uint8 clean
    data_folder = OUTPUT_DIR / "demo_data"
    data_folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(data_folder / "nuclei_noisy.tif", demo_noisy, metadata={"axes": "YX"})
    reference = demo_clean.astype(np.float32)
    print(f"no DATA_FOLDER given: using the demo image, written to {data_folder}")
else:
    data_folder = Path(DATA_FOLDER)

files = sorted(f for f in data_folder.iterdir()
               if f.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg") and not f.name.startswith("."))
if not files:
    raise ValueError(f"No images in '{data_folder}': set DATA_FOLDER to a folder of .tif/.png images.")
images, axes = load_images(files, axes=AXES)
print(check_images(images, axes, n_dim=2, names=[f.name for f in files], channels=1, allow_mixed_sizes=True,
                   min_size=PATCH))


# %% [markdown]
# Training works on 2D images with a channel axis last (`YXC`). Files with several 2D images
# (axes `SYX` or `TYX`) are split into their planes. We look at the first plane.

# %%
from n2v_tf.qc import plot_before_after


def planes_yxc(img, axes):
    """The 2D planes of an image as float32 arrays with axes YXC (channel last)."""
    img = np.asarray(img, np.float32)
    if "C" not in axes:
        img, axes = img[..., np.newaxis], axes + "C"
    sample = [a for a in axes if a in "ST"]
    img = np.transpose(img, [axes.index(a) for a in sample + ["Y", "X", "C"]])
    return list(img) if sample else [img]


planes = [p for img in images for p in planes_yxc(img, axes)]
first = planes[0][..., 0]                          # the first 2D plane (YX), used for the figures below
print(f"{len(planes)} 2D plane(s) for training; the first one is {first.shape[0]} x {first.shape[1]} pixels")
plot_kwargs = dict(crop=tuple(slice(max(0, s // 2 - 64), s // 2 + 64) for s in first.shape))  # central 128x128
plot_before_after([first], titles=[f"{files[0].name} (central crop)"], path=OUTPUT_DIR / "data.png", **plot_kwargs)
show(OUTPUT_DIR / "data.png")

# %% [markdown]
# ## Training and validation data
#
# A part of the data is held out for **validation**: the network never trains on it, and its loss
# there tells whether the network learns something general (it should go down and level off). With
# five or more planes we keep every tenth plane for validation; with fewer, the bottom strip (one
# patch high) of every plane. Patches are cropped from the training images on the fly.

# %%
if len(planes) >= 5:
    val_imgs = planes[::10]
    train_imgs = [p for i, p in enumerate(planes) if i % 10]
else:
    val_imgs = [p[-PATCH[0]:] for p in planes]
    train_imgs = [p[:-PATCH[0]] for p in planes]
    if any(p.shape[0] < PATCH[0] for p in train_imgs):
        raise ValueError(f"The images are too small to hold out a validation strip of {PATCH[0]} rows and still "
                         f"train on patches of {PATCH}: use larger images, more images, or a smaller PATCH.")
print(f"training on {len(train_imgs)} image(s), validating on {len(val_imgs)} "
      f"({sum(v.size for v in val_imgs) / sum(p.size for p in planes):.0%} of the pixels)")

# %% [markdown]
# ## Train N2V and N2V2
#
# Both models use the same U-Net size, patches, batch size, number of steps and learning rate; they
# differ only in the N2V2 options. `n2v_perc_pix=0.198` hides 0.198 % of the pixels of each patch,
# as in the papers. The loss is the mean squared error at the blind spots. Each model is saved in
# `n2v_tf_output/n2v_2d/models/<name>/` (`config.json`, `weights_best.h5`, `weights_last.h5`) and
# can be loaded again with `N2V(None, name, basedir)`.

# %%
import keras

from n2v_tf import N2V, N2VConfig

common = dict(unet_kern_size=KERNEL, unet_n_depth=DEPTH, unet_n_first=N_FIRST, n2v_patch_shape=PATCH,
              n2v_perc_pix=0.198, train_loss="mse", train_batch_size=BATCH_SIZE, train_epochs=EPOCHS,
              train_steps_per_epoch=STEPS_PER_EPOCH, train_learning_rate=LEARNING_RATE, train_tensorboard=False)
variants = {
    "N2V": dict(n2v_manipulator="uniform_withCP"),
    "N2V2": dict(blurpool=True, skip_skipone=True, n2v_manipulator="median"),
}
models, histories, seconds = {}, {}, {}
for label, extra in variants.items():
    keras.utils.set_random_seed(0)
    config = N2VConfig(train_imgs, **common, **extra)
    with warnings.catch_warnings():                 # re-runs replace the model folders of the last run
        warnings.filterwarnings("ignore", message="output path for model already exists")
        models[label] = N2V(config, f"n2v_2d_{label.lower()}", basedir=str(OUTPUT_DIR / "models"), overwrite=True)
    t0 = time.perf_counter()
    histories[label] = models[label].train(train_imgs, val_imgs, verbose=0 if QUICK else 2, seed=0)
    seconds[label] = time.perf_counter() - t0
    print(f"{label}: {EPOCHS} epochs x {STEPS_PER_EPOCH} steps in {seconds[label]:.0f} s, "
          f"lowest validation loss {min(histories[label].history['val_loss']):.4f}")

# %% [markdown]
# ## Training curves
#
# **What to look for:** the training and the validation loss should decrease and then level off
# together. The N2V loss never gets close to zero: it is the error of predicting a noisy pixel from
# its neighbours, so its floor is the noise level. A validation loss that rises while the training
# loss keeps falling means overfitting (use more data or fewer epochs); curves that still go down
# steeply at the end mean that more epochs would help. The star marks the epoch whose weights are
# used (`weights_best.h5`, lowest validation loss).

# %%
from n2v_tf.qc import plot_history

merged = {f"{key} ({label})": h.history[key] for label, h in histories.items() for key in ("loss", "val_loss")}
plot_history(merged, keys=[[f"loss ({label})", f"val_loss ({label})"] for label in histories],
             path=OUTPUT_DIR / "training_curves.png")
show(OUTPUT_DIR / "training_curves.png")

# %% [markdown]
# ## Denoise with tiling
#
# `predict` denoises an image of any size. With `n_tiles`, the image is cut into overlapping tiles
# that are predicted one after the other, which keeps the memory use small for large images; the
# tiles overlap by the network's receptive field, so the result is the same as without tiling (the
# printed difference should be ~1e-6, the float32 round-off).

# %%
predictions = {}
for label, model in models.items():
    t0 = time.perf_counter()
    predictions[label] = model.predict(first, "YX", n_tiles=N_TILES)
    print(f"{label}: predicted {first.shape} with {N_TILES} tiles in {time.perf_counter() - t0:.1f} s")
untiled = models["N2V2"].predict(first, "YX")
print(f"N2V2, tiled vs untiled prediction: max |difference| = {np.abs(untiled - predictions['N2V2']).max():.1e}")

# %% [markdown]
# ## Before and after
#
# Noisy input, N2V and N2V2 with the **same contrast**, so that brightness changes are visible. With
# the demo data, the clean image is shown last and the PSNR (peak signal-to-noise ratio, higher is
# better) and SSIM (structural similarity, 1 is perfect) against it are in the titles.
#
# **What to look for:** structures (edges, small spots) should be kept, only the grain should be
# gone. Blurred edges or vanished small objects mean over-smoothing; a fine checkerboard pattern in
# flat regions is the N2V artefact that N2V2 removes.
#
# With the short training of this notebook (400 steps per model), the PSNR of either model varies by
# a dB or two from run to run: the validation loss jumps between epochs (see the curves above), and
# the "best" epoch can carry a slight brightness offset. Do not read a winner into one short run;
# for your data, train longer (the n2v default is 100 epochs x 400 steps, for a GPU) and compare the
# images rather than single numbers.

# %%
plot_before_after([first, predictions["N2V"], predictions["N2V2"]], titles=["noisy", "N2V", "N2V2"],
                  reference=reference, path=OUTPUT_DIR / "before_after.png", **plot_kwargs)
show(OUTPUT_DIR / "before_after.png")
if reference is not None:
    from n2v_tf.qc import psnr, ssim
    print("| image | PSNR (dB) | SSIM |\n|---|---|---|")
    for label, img in {"noisy": first, **predictions}.items():
        print(f"| {label} | {psnr(reference, img):.2f} | {ssim(reference, img):.3f} |")

# %% [markdown]
# ## Calibrate the prediction to the image (optional)
#
# `predict(..., calibrate="auto")` masks the image a few times with the model's own masking, predicts
# the masked copies, and fits a curve from the prediction at the hidden pixels to their noisy values.
# A hidden pixel's prediction has not seen that pixel's noise, so for noise that is independent
# between pixels this curve is also the best map from the prediction to the *clean* image, learnt
# without a clean image. It corrects how the network renders intensities on an image unlike its
# training data. On the benchmark's natural images it added about 1 dB and made the result depend
# much less on the training seed; on fluorescence images like the training data, little. It costs a
# few more predictions (8 for a 512 x 512 image) and needs the whole image in memory.

# %%
t0 = time.perf_counter()
calibrated = models["N2V2"].predict(first, "YX", n_tiles=N_TILES, calibrate="auto")
print(f"N2V2 calibrated to the image in {time.perf_counter() - t0:.1f} s")
if reference is not None:
    from n2v_tf.qc import psnr
    print(f"N2V2: PSNR {psnr(reference, predictions['N2V2']):.2f} dB plain, "
          f"{psnr(reference, calibrated):.2f} dB calibrated to the image")

# %% [markdown]
# ## The residual: what did the network remove?
#
# The residual `noisy - denoised` should look like pure noise: no outlines of objects (those would
# be signal that was removed), and an autocorrelation with a single bright centre pixel (the noise of
# neighbouring pixels is unrelated). A correlation that extends along X or Y means correlated noise
# (e.g. camera stripes), which plain N2V cannot remove: see the `structn2v_2d` notebook.

# %%
from n2v_tf.qc import plot_residual

plot_residual(first, predictions["N2V2"], path=OUTPUT_DIR / "residual_n2v2.png")
show(OUTPUT_DIR / "residual_n2v2.png")

# %% [markdown]
# ## Denoise the whole folder
#
# Every file is denoised with N2V2 and written as a float32 TIFF of the same name to
# `n2v_tf_output/n2v_2d/denoised/`. `n_tiles` gets one entry per axis of the files (1 for the
# sample axis).

# %%
out_folder = OUTPUT_DIR / "denoised"
out_folder.mkdir(parents=True, exist_ok=True)
tiles = tuple(N_TILES[0] if a == "Y" else N_TILES[1] if a == "X" else 1 for a in axes)
for f, img in zip(files, images):
    denoised = models["N2V2"].predict(img, axes, n_tiles=tiles)
    tifffile.imwrite(out_folder / f"{f.stem}.tif", denoised.astype(np.float32), metadata={"axes": axes})
print(f"wrote {len(files)} denoised image(s) to {out_folder}")

# %% [markdown]
# ## Export to BioImage.IO (Fiji, deepImageJ, the model zoo)
#
# One `.zip` file holds the N2V2 network in four formats (Keras, legacy Keras `.h5`, a TensorFlow
# SavedModel for deepImageJ, ONNX), the normalisation, a test image with its expected output, a
# cover image and the citations. Before the file is written, `bioimageio.core` tests every format
# in a separate Python process (this takes a minute); if a test fails, nothing is written. Open the
# file in Fiji with deepImageJ ("Install model" -> "From ZIP file"), or load it back with
# `N2V.from_bioimageio(path, basedir)` to continue training. (n2v 0.3.x notebooks call
# `model.export_TF(name, description, authors, test_img, axes, patch_shape)`, which works too.)

# %%
t0 = time.perf_counter()
package = models["N2V2"].export_bioimageio(
    OUTPUT_DIR / "n2v2_2d.bioimage.io.zip", test_img=first, axes="YX", name="N2V2 2D denoising (n2v_tf example)",
    description="N2V2 self-supervised denoising of 2D fluorescence images, trained with the n2v_tf example notebook.",
    authors=AUTHORS, overwrite=True,
    validate=not QUICK)   # quick mode (CI) skips the test: colab_n2v and tests/test_export.py run it
print(f"exported {package} ({package.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Next steps
#
# * Train longer (more `EPOCHS`) when the validation loss was still falling at the end.
# * The `colab_n2v` notebook is the same workflow with form fields, a live loss plot and a
#   methods paragraph for your paper; `n2v-tf train` / `n2v-tf predict` do it from the command line.
# * For 3D stacks see `n2v_3d`; for striped (correlated) noise `structn2v_2d`.
#
# Please cite Krull et al., *Noise2Void - Learning Denoising from Single Noisy Images*, CVPR 2019,
# and, for N2V2, Höck et al., *N2V2 - Fixing Noise2Void Checkerboard Artifacts with Modified Sampling
# Strategies and a Tweaked Network Architecture*, ECCV Workshops 2022.
