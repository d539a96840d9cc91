# %% [markdown]
# # Noise2Void / N2V2 denoising of 2D images (Colab notebook)
#
# This notebook denoises your 2D microscopy images with **Noise2Void** (N2V) or **N2V2**, without
# any clean training images, and without writing code: fill in the forms, then run the cells from
# top to bottom. It runs in [Google Colab](https://colab.research.google.com) (free GPU) or in any
# local Jupyter with `n2v_tf` installed. Its layout follows the
# [ZeroCostDL4Mic](https://github.com/HenriquesLab/ZeroCostDL4Mic) notebooks (von Chamier et al.,
# Nature Communications 2021), on current TensorFlow/Keras with the `n2v_tf` package.
#
# **How N2V works.** During training, a few pixels of every image patch (the *blind spots*) are
# hidden and the network (a U-Net) learns to predict them from the surrounding pixels. Noise that is
# independent from pixel to pixel (photon shot noise, camera read noise) cannot be predicted from
# the neighbours, the image content can: the network learns to output the content without the
# noise. N2V needs only the noisy images themselves; you can even train on the very images you want
# to denoise. **N2V2** trains the same way with a slightly changed network and blind-spot
# replacement, which removes the faint checkerboard artefacts of N2V; it is the default here.
#
# **What N2V cannot do.** Noise that is correlated between neighbouring pixels (stripes from the
# camera read-out, scanner line noise) stays: check the residual in section 5, and use structN2V
# (`structn2v_2d` notebook) if you see stripes. N2V also cannot restore resolution or remove
# background or out-of-focus light.
#
# **Using this notebook.**
# 1. In Colab: *Runtime* -> *Change runtime type* -> *GPU* (training on a CPU works, but slowly).
# 2. Run section 0 (installs `n2v_tf`), and section 1 if your data are on Google Drive.
# 3. Fill in the form of section 2 (leave `data_folder` empty to try the notebook on a demo image).
# 4. *Runtime* -> *Run all* (or run the cells one by one). The data check (section 3) stops with a
#    sentence saying what to change if something is wrong with your data.
# 5. Look at the quality-control figures (section 5) before you trust the result.
#
# Every cell only uses what the cells above it defined: after changing a form, run again from that
# cell downwards.
#
# **Please cite** when you use this notebook:
# - A. Krull, T.-O. Buchholz, F. Jug. *Noise2Void - Learning Denoising from Single Noisy Images.*
#   CVPR 2019.
# - E. Höck, T.-O. Buchholz, A. Brachmann, F. Jug, A. Freytag. *N2V2 - Fixing Noise2Void
#   Checkerboard Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture.*
#   ECCV Workshops 2022 (if you use N2V2).
# - M. Weigert et al. *Content-aware image restoration: pushing the limits of fluorescence
#   microscopy* (CSBDeep). Nature Methods 2018.
#
# Section 8 prints a methods paragraph with your actual settings and these citations.

# %% [markdown]
# ## 0. Install `n2v_tf` (Colab only)
#
# In Colab this installs `n2v_tf` with its BioImage.IO export dependencies and TensorBoard with `pip` (a
# minute; if Colab then asks to restart the session, do so and run the notebook again from the top).
# Elsewhere it does nothing: install `n2v_tf[bioimageio,tensorboard]` and `matplotlib` in your environment
# yourself (without TensorBoard, training warns and runs without its logs). (`QUICK` is for testing the notebook: with the environment variable `N2V_TF_QUICK=1`
# it trains for a few steps only.)

# %%
import os
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")
if IN_COLAB:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "n2v_tf[bioimageio,tensorboard]"])
    print("n2v_tf installed")
else:
    print("Not running in Colab: nothing to install.")

# %% [markdown]
# ## 1. Google Drive (optional)
#
# Tick `mount_google_drive` to use images stored on your Google Drive: Colab asks for permission,
# then your Drive appears at `/content/gdrive/MyDrive/`. Copy a folder's path from the *Files* panel
# on the left (right-click -> *Copy path*) into the form of section 2. Results written there stay
# after the Colab session ends; everything else is deleted.

# %%
mount_google_drive = False  #@param {type:"boolean"}

if mount_google_drive and IN_COLAB:
    from google.colab import drive
    drive.mount("/content/gdrive")
    print("Google Drive mounted at /content/gdrive/MyDrive/")
elif mount_google_drive:
    print("mount_google_drive only works in Colab; use paths on this computer instead.")

# %% [markdown]
# ## 2. Paths and parameters
#
# **Data**
# - `data_folder`: the folder with your noisy 2D images (`.tif`, `.tiff`, `.png`, `.jpg`). All images
#   are used for training (minus the validation part) and are denoised in section 6. **Empty: the
#   demo image** shipped with `n2v_tf` (fluorescent nuclei with simulated noise).
# - `axes`: what the dimensions of your files are. `auto` reads them from the files (ImageJ TIFFs store
#   them) or guesses them from the shape, and says what it guessed. `YX`: one 2D image per file;
#   `SYX`/`TYX`: several 2D images (or time points) per file, each denoised in 2D.
# - `output_folder`: where models, figures and denoised images go (it is created).
# - `reference_image` (optional): a clean (high signal-to-noise) image of the same field as the
#   **first** image of `data_folder`, with the same size; the notebook then computes PSNR and SSIM.
#   With the demo data, the demo's clean image is used.
# - `allow_mixed_sizes`: images of different sizes stop the data check, in case a wrong file ended up in
#   the folder; tick it if your images really differ in size (training cuts random patches from each).
#
# **Training** (the defaults take about 10 minutes on a 2-core CPU, about a minute on a GPU)
# - `model_name`: the model folder name (an existing model of this name is replaced).
# - `use_n2v2`: N2V2 (recommended) or the original N2V.
# - `number_of_epochs` x `steps_per_epoch`: training length. More is better until the validation loss
#   stops decreasing (section 5); 100 x 400 steps is the n2v default for real data on a GPU.
# - `batch_size`: patches per step (16 is fine; lower it if you run out of GPU memory).
# - `patch_size`: side of the square training patches (a multiple of 8, at most the image size).
# - `percentage_validation`: the part of the data held out to check the training (10-20 %).
# - `initial_learning_rate`: 0.0004 (n2v's default) to 0.001 (faster for short trainings).
#
# **Prediction and export**
# - `prediction_tiles`: split each image into this many tiles along Y and X for prediction (use more
#   for very large images or when the GPU runs out of memory; the result is the same).
# - `export_to_bioimageio`, `authors`: write the model as a BioImage.IO package for Fiji/deepImageJ.

# %%
#@markdown ### Data
data_folder = ""  #@param {type:"string"}
axes = "auto"  #@param ["auto", "YX", "SYX", "TYX"]
output_folder = "n2v_tf_output/colab_n2v"  #@param {type:"string"}
reference_image = ""  #@param {type:"string"}
allow_mixed_sizes = False  #@param {type:"boolean"}
#@markdown ### Training
model_name = "my_n2v_model"  #@param {type:"string"}
use_n2v2 = True  #@param {type:"boolean"}
number_of_epochs = 20  #@param {type:"integer"}
steps_per_epoch = 20  #@param {type:"integer"}
batch_size = 16  #@param {type:"integer"}
patch_size = 64  #@param {type:"integer"}
percentage_validation = 10  #@param {type:"number"}
initial_learning_rate = 0.001  #@param {type:"number"}
#@markdown ### Prediction and export
prediction_tiles = 2  #@param {type:"integer"}
export_to_bioimageio = True  #@param {type:"boolean"}
authors = "Your Name"  #@param {type:"string"}

if QUICK:   # testing only: a few training steps on small patches
    number_of_epochs, steps_per_epoch, batch_size, patch_size = 2, 2, 4, 32
print(f"{'N2V2' if use_n2v2 else 'N2V'}: {number_of_epochs} epochs x {steps_per_epoch} steps, batch {batch_size}, "
      f"patches {patch_size} x {patch_size}")

# %% [markdown]
# ## 3. Load and check the data
#
# The images are read and checked **before** any training. If something is wrong, the cell stops
# with a message in the last line saying what to change: e.g. an empty or wrong folder, images of
# different types, colour (RGB) images (convert them to grayscale in Fiji: *Image* -> *Type* ->
# *8-bit* or *32-bit*), 3D stacks (use `axes = "SYX"` to denoise them slice by slice, or the `n2v_3d`
# notebook), or images smaller than the patch size. Tiny and huge images give a warning.
#
# Below the summary you see the first image (a central crop). Is it what you expected?

# %%
from pathlib import Path

import numpy as np
import tifffile

from n2v_tf.cli import load_demo_data
from n2v_tf.io import check_images, load_images
from n2v_tf.qc import plot_before_after


class DataCheckError(Exception):
    """The data cannot be used as they are; the message says what to change."""


def show(png):
    """Show a saved figure in the notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))


output_dir = Path(output_folder.strip() or "n2v_tf_output/colab_n2v")
output_dir.mkdir(parents=True, exist_ok=True)
reference_path = Path(reference_image.strip()) if reference_image.strip() else None
if not data_folder.strip():
    # No data folder: write the demo image (and its clean version, as the reference) to TIFF files, and
    # read them back like your own data.
    demo_noisy, demo_clean = load_demo_data()
    data_dir = output_dir / "demo_data"
    data_dir.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(data_dir / "nuclei_noisy.tif", demo_noisy, metadata={"axes": "YX"})
    if reference_path is None:
        reference_path = output_dir / "demo_reference" / "nuclei_clean.tif"
        reference_path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(reference_path, demo_clean, metadata={"axes": "YX"})
    print(f"data_folder is empty: using the demo image, written to {data_dir}")
else:
    data_dir = Path(data_folder.strip())

if not data_dir.is_dir():
    raise DataCheckError(f"The data folder '{data_dir}' does not exist: check data_folder in section 2"
                         + (" (did you mount Google Drive in section 1?)" if IN_COLAB else ""))
files = sorted(f for f in data_dir.iterdir()
               if f.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg") and not f.name.startswith("."))
if not files:
    raise DataCheckError(f"There are no images (.tif, .tiff, .png, .jpg) in '{data_dir}': check data_folder in "
                         "section 2, or copy your images there")
try:
    images, image_axes = load_images(files, axes=None if axes == "auto" else axes)
    summary = check_images(images, image_axes, n_dim=2, names=[f.name for f in files], channels=1,
                           allow_mixed_sizes=allow_mixed_sizes, min_size=patch_size)
except ValueError as err:
    raise DataCheckError(f"{err}. (This notebook trains on 2D grayscale images: fix the data or the settings in "
                         "section 2, then run the notebook again from there.)") from None
print(f"{len(files)} file(s) in {data_dir}: {summary}")
if any(a not in "STYX" for a in image_axes):
    raise DataCheckError(f"Axes {image_axes!r}: this notebook needs 2D grayscale images (YX), or several per file "
                         "(SYX/TYX); set axes in section 2")


def planes_yxc(img, img_axes):
    """The 2D planes of an image as float32 arrays with axes YXC (channel last), as training needs them."""
    img = np.asarray(img, np.float32)[..., np.newaxis]
    sample = [a for a in img_axes if a in "ST"]
    img = np.transpose(img, [img_axes.index(a) for a in sample + ["Y", "X"]] + [img.ndim - 1])
    return list(img) if sample else [img]


planes = [p for img in images for p in planes_yxc(img, image_axes)]
first = planes[0][..., 0]                    # the first 2D image: used for the quality control below
crop = tuple(slice(max(0, s // 2 - 128), s // 2 + 128) for s in first.shape)   # its central 256 x 256 pixels
plot_before_after([first], titles=[f"{files[0].name}: central crop"], crop=crop, path=output_dir / "data.png")
show(output_dir / "data.png")

# %% [markdown]
# ## 4. Train the network
#
# `percentage_validation` % of the data are held out for validation (whole images if there are at
# least 5, else the bottom rows of every image). The network is a U-Net with 2 resolution levels
# and 32 filters in the first level, trained with the masked mean squared error on 0.198 % blind
# spots per patch (as in the N2V and N2V2 papers). The learning rate is halved when the validation
# loss stops improving, and the weights with the lowest validation loss are kept.
#
# The plot below is redrawn after every epoch: both losses should go down and level off. The model
# is saved to `output_folder/models/model_name/` (`config.json`, `weights_best.h5`,
# `weights_last.h5`; load it again with `N2V(None, model_name, basedir)`).

# %%
import time
import warnings

import keras

from n2v_tf import N2V, N2VConfig
from n2v_tf.qc import plot_history

# validation split
n_val_images = round(len(planes) * percentage_validation / 100)
if len(planes) >= 5 and n_val_images >= 1:
    val_imgs, train_imgs = planes[-n_val_images:], planes[:-n_val_images]
else:
    rows = max(patch_size, 8 * round(first.shape[0] * percentage_validation / 100 / 8))
    val_imgs = [p[-rows:] for p in planes]
    train_imgs = [p[:-rows] for p in planes]
    if any(p.shape[0] < patch_size for p in train_imgs):
        raise DataCheckError(f"The images are too small to hold out {rows} rows for validation and still train on "
                             f"{patch_size} x {patch_size} patches: lower patch_size, or add images")
print(f"training on {len(train_imgs)} image(s), validating on {len(val_imgs)} image(s)/strip(s)")

n2v2_options = dict(blurpool=True, skip_skipone=True, n2v_manipulator="median") if use_n2v2 else \
    dict(n2v_manipulator="uniform_withCP")
config = N2VConfig(train_imgs, unet_kern_size=3, unet_n_depth=2, unet_n_first=32,
                   n2v_patch_shape=(patch_size, patch_size), n2v_perc_pix=0.198, train_loss="mse",
                   train_epochs=number_of_epochs, train_steps_per_epoch=steps_per_epoch, train_batch_size=batch_size,
                   train_learning_rate=initial_learning_rate, train_tensorboard=False, **n2v2_options)
model_dir = output_dir / "models"
if (model_dir / model_name / "config.json").exists():
    print(f"note: the existing model '{model_name}' in {model_dir} is replaced")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="output path for model already exists")
    model = N2V(config, model_name, basedir=str(model_dir), overwrite=True)


class LiveLossPlot(keras.callbacks.Callback):
    """Redraw the loss curves after every epoch in a notebook (does nothing in a plain script)."""

    def __init__(self, png):
        super().__init__()
        self.png, self.values, self.handle = png, {}, None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.values.setdefault(key, []).append(float(value))
        if "ipykernel" not in sys.modules or "val_loss" not in self.values:
            return
        from IPython.display import Image, display
        plot_history(self.values, path=self.png)
        if self.handle is None:
            self.handle = display(Image(filename=str(self.png)), display_id=True)
        else:
            self.handle.update(Image(filename=str(self.png)))


keras.utils.set_random_seed(0)
model.prepare_for_training()
model.callbacks.append(LiveLossPlot(output_dir / "live_loss.png"))
t0 = time.perf_counter()
history = model.train(train_imgs, val_imgs, verbose=2, seed=0)
training_minutes = (time.perf_counter() - t0) / 60
best_val_loss = float(min(history.history["val_loss"]))
print(f"training took {training_minutes:.1f} min; lowest validation loss {best_val_loss:.4f} "
      f"(epoch {int(np.argmin(history.history['val_loss'])) + 1}); model saved in {model_dir / model_name}")

# %% [markdown]
# ## 5. Quality control
#
# ### Training curves
# - **Good:** training and validation loss decrease and level off together. The values stay well above
#   zero (the loss is the error of predicting a noisy pixel, its floor is the noise level).
# - **Validation loss rising** while the training loss falls: overfitting; train shorter or on more data.
# - **Still falling steeply at the end:** train longer (more epochs).
# - The right panel shows the learning rate (halved when the validation loss stopped improving).

# %%
plot_history(history, path=output_dir / "qc_training_curves.png")
show(output_dir / "qc_training_curves.png")

# %% [markdown]
# ### Before and after, residual, and the reference
#
# The first image is denoised, then shown before and after with the **same contrast** (central
# crop). **Look for:** structures (edges, small spots, thin filaments) are kept; only the grain is
# gone. Blurred edges or vanished small objects mean over-smoothing.
#
# The **residual** `noisy - denoised` is what the network removed. It should look like pure noise:
# no outlines of objects (that would be removed signal), no stripes. Its **autocorrelation** should
# be a single bright pixel at the centre (zero lag); a line through the centre along X or Y means
# noise correlated along that axis, which N2V cannot remove (use structN2V).
#
# With a `reference_image` (or the demo), the **PSNR** (peak signal-to-noise ratio, in dB, higher is
# better) and **SSIM** (structural similarity, 1 = identical) of the noisy and the denoised image
# against the reference are printed, and the reference is shown for comparison.

# %%
from n2v_tf.qc import plot_residual, psnr, qc_report, ssim

n_tiles = (prediction_tiles, prediction_tiles)
denoised_first = model.predict(first, "YX", n_tiles=n_tiles)
reference = None
if reference_path is not None:
    reference, _ = load_images(reference_path)
    reference = np.squeeze(reference[0]).astype(np.float32)
    if reference.shape != first.shape:
        raise DataCheckError(f"reference_image {reference_path} has shape {reference.shape}, but the first image "
                             f"({files[0].name}) has shape {first.shape}: they must show the same field")
plot_before_after([first, denoised_first], titles=["noisy", "denoised"], reference=reference, crop=crop,
                  path=output_dir / "qc_before_after.png")
show(output_dir / "qc_before_after.png")
plot_residual(first, denoised_first, path=output_dir / "qc_residual.png")
show(output_dir / "qc_residual.png")
qc_report(first, denoised_first, reference=reference, history=history, path=output_dir / "qc_report.png")
scores = None
if reference is not None:
    scores = {label: (psnr(reference, img), ssim(reference, img))
              for label, img in (("noisy", first), ("denoised", denoised_first))}
    print("| image | PSNR (dB) | SSIM |\n|---|---|---|")
    for label, (p, s) in scores.items():
        print(f"| {label} | {p:.2f} | {s:.3f} |")
print(f"all QC figures are in {output_dir} (qc_report.png has them all in one figure)")

# %% [markdown]
# ## 6. Denoise the whole folder
#
# Every image of `data_folder` is denoised and saved as a 32-bit float TIFF with the same name in
# `output_folder/denoised/`. (Keep the 32-bit values for measurements; convert to 8 or 16 bit only
# for display.)

# %%
denoised_dir = output_dir / "denoised"
denoised_dir.mkdir(parents=True, exist_ok=True)
tiles = tuple(prediction_tiles if a in "YX" else 1 for a in image_axes)
t0 = time.perf_counter()
for f, img in zip(files, images):
    result = model.predict(img, image_axes, n_tiles=tiles)
    tifffile.imwrite(denoised_dir / f"{f.stem}.tif", result.astype(np.float32), metadata={"axes": image_axes})
print(f"denoised {len(files)} image(s) in {time.perf_counter() - t0:.0f} s -> {denoised_dir}")

# %% [markdown]
# ## 7. Export the model (BioImage.IO: Fiji/deepImageJ, the model zoo)
#
# The model is written as one `.bioimage.io.zip` file with the network in four formats (Keras,
# legacy Keras `.h5`, a TensorFlow SavedModel and ONNX for deepImageJ), the normalisation, a test
# image with its expected output, a cover image and the citations. `bioimageio.core` tests every
# format before the file is written (a minute); if a test fails, nothing is written and the error
# says why. In Fiji: *Plugins* -> *DeepImageJ* -> *DeepImageJ Install Model* -> *From ZIP file*.

# %%
package = None
if export_to_bioimageio:
    t0 = time.perf_counter()
    package = model.export_bioimageio(
        output_dir / f"{model_name}.bioimage.io.zip", test_img=first, axes="YX",
        name=f"{'N2V2' if use_n2v2 else 'N2V'} denoising {model_name}",
        description=f"{'N2V2' if use_n2v2 else 'N2V'} self-supervised denoising of 2D images (n2v_tf Colab notebook).",
        authors=[a.strip() for a in authors.split(",") if a.strip()] or ["Anonymous"], overwrite=True,
        validate=not QUICK)   # QUICK (testing only) skips the zoo test: tests/test_export.py runs it
    print(f"exported {package} ({package.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
else:
    print("export_to_bioimageio is off: no export")

# %% [markdown]
# ## 8. Methods paragraph
#
# A paragraph for the methods section of your paper, with the settings used above. Check it, and add
# what the notebook cannot know (microscope, sample, what you did with the denoised images).

# %%
import textwrap

import tensorflow as tf

import n2v_tf

gpus = tf.config.list_physical_devices("GPU")
device = "a CPU"
if gpus:
    gpu_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    device = f"a GPU ({gpu_name})" if gpu_name else "a GPU"
references = [
    ("A. Krull, T.-O. Buchholz, F. Jug. Noise2Void - Learning Denoising from Single Noisy Images. IEEE/CVF "
     "Conference on Computer Vision and Pattern Recognition (CVPR), 2019, pp. 2129-2137."),
    ("M. Weigert, U. Schmidt, T. Boothe, et al. Content-aware image restoration: pushing the limits of "
     "fluorescence microscopy. Nature Methods 15, 1090-1097 (2018)."),
]
if use_n2v2:
    references.append("E. Höck, T.-O. Buchholz, A. Brachmann, F. Jug, A. Freytag. N2V2 - Fixing Noise2Void "
                      "Checkerboard Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture. "
                      "ECCV Workshops, 2022.")
algorithm = "N2V2 [3], a variant of Noise2Void [1]," if use_n2v2 else "Noise2Void (N2V) [1]"
replacement = ("replaced by the median of their 11 x 11 neighbourhood" if use_n2v2
               else "replaced by a random pixel of their 11 x 11 neighbourhood")
architecture = ("with max-blur-pooling and without the top-most skip connection, as proposed for N2V2"
                if use_n2v2 else "with max-pooling")
n_patches = number_of_epochs * steps_per_epoch * batch_size
methods = (
    f"Images were denoised with {algorithm} using the n2v_tf package (version {n2v_tf.__version__}; TensorFlow "
    f"{tf.__version__}, Keras {keras.__version__}), which builds on CSBDeep [2]. N2V is self-supervised: the "
    f"network was trained on the noisy images only ({len(planes)} 2D image(s); the first one {first.shape[0]} x "
    f"{first.shape[1]} pixels; {percentage_validation:g} % of the data held out for validation). A U-Net "
    f"{architecture} (depth 2, 32 filters in the first level, 3 x 3 convolutions) was trained from scratch for {number_of_epochs} epochs of "
    f"{steps_per_epoch} steps with batches of {batch_size} random {patch_size} x {patch_size} patches ({n_patches} "
    f"patches in total), using the Adam optimiser (initial learning "
    f"rate {initial_learning_rate:g}, halved when the validation loss stopped improving for 10 epochs). In every "
    f"patch, 0.198 % of the pixels were masked (blind spots) and {replacement}; the loss was the mean squared "
    f"error at the masked pixels. Training took {training_minutes:.1f} min on {device}; the weights with the "
    f"lowest validation loss ({best_val_loss:.4f}) were used to predict all images"
    + (f", in {prediction_tiles} x {prediction_tiles} overlapping tiles" if prediction_tiles > 1 else "") + "."
    + (f" On an image with a clean reference, the PSNR was {scores['noisy'][0]:.1f} dB before and "
       f"{scores['denoised'][0]:.1f} dB after denoising (SSIM {scores['noisy'][1]:.2f} and "
       f"{scores['denoised'][1]:.2f})."
       if scores else "")
    + (f" The trained model is available as a BioImage.IO model package ({package.name})." if package else "")
)
references = [f"[{i}] {r}" for i, r in enumerate(references, start=1)]
print(textwrap.fill(methods, 100))
print()
print("\n".join(textwrap.fill(r, 100, subsequent_indent="    ") for r in references))
(output_dir / "methods.txt").write_text(methods + "\n\n" + "\n".join(references) + "\n")
print(f"\n(also saved to {output_dir / 'methods.txt'})")

# %% [markdown]
# ## What next?
#
# - Not happy with the result? Train longer (more epochs and steps), on more images, or compare
#   N2V and N2V2 (`use_n2v2`). If the residual shows stripes, use structN2V (`structn2v_2d` notebook).
# - The denoised images are in `output_folder/denoised/`, the model in `output_folder/models/`, the
#   figures and `methods.txt` in `output_folder/`.
# - The same from the command line: `n2v-tf train`, `n2v-tf predict`, `n2v-tf export`.
