# %% [markdown]
# # N2V2 on 3D stacks
#
# Denoise a 3D stack (Z, Y, X) with **N2V2** in 3D, and compare the stack before and after in
# orthogonal views (XY, XZ and YZ sections).
#
# Noise2Void (Krull et al., CVPR 2019) learns to denoise from the noisy data alone by predicting
# hidden pixels (*blind spots*) from their neighbours; in 3D the neighbours include the slices
# above and below, which carry a lot of information about the hidden voxel. N2V2 (Höck et al.,
# ECCV Workshops 2022) is the same training with max-blur-pooling, without the top-most skip
# connection and with a median replacement of the blind spots; it avoids checkerboard artefacts.
# In `n2v_tf`, N2V2 works in 2D and 3D.
#
# **How to use this notebook.** Set `DATA_FOLDER` in the first code cell to a folder of 3D TIFF
# stacks (ImageJ hyperstacks store their axes; otherwise set `AXES = "ZYX"`), then run all cells.
# With `DATA_FOLDER = None` the notebook makes a synthetic stack from the demo image shipped with
# `n2v_tf` (nuclei at different depths, blurred by a microscope-like point-spread function, with
# photon shot noise and camera read noise); its clean version is known, so the notebook also
# measures the PSNR. Outputs go to `n2v_tf_output/n2v_3d/`. As a script:
# `python examples/n2v_3d.py` (about 10 minutes on a 2-core CPU); `--quick` or `N2V_TF_QUICK=1`
# runs a few training steps on a small stack (for testing: the results then mean nothing).

# %% [markdown]
# ## Settings

# %%
import os
import sys
import time
import warnings
from pathlib import Path

# Quick mode (a few training steps on a small stack, for testing): `--quick` or N2V_TF_QUICK=1.
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")

DATA_FOLDER = None                    # a folder of 3D stacks (TIFF); None: a synthetic stack
AXES = None                           # e.g. "ZYX"; None: from the files or guessed from the shape
OUTPUT_DIR = Path("n2v_tf_output") / "n2v_3d"

# 3D training is ~10x more expensive per step than 2D: a smaller network and patches than in 2D.
PATCH = (8, 32, 32) if QUICK else (16, 32, 32)   # (Z, Y, X), each divisible by 2**DEPTH
DEPTH, N_FIRST, KERNEL = 2, (8 if QUICK else 16), 3
EPOCHS = 2 if QUICK else 20
STEPS_PER_EPOCH = 2 if QUICK else 20
BATCH_SIZE = 4 if QUICK else 8
LEARNING_RATE = 1e-3
N_TILES = (1, 2, 2)                   # tiles along (Z, Y, X) for prediction

OUTPUT_DIR.mkdir(parents=True, exist_ok=True)


def show(png):
    """Show a saved figure in a notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))


# %% [markdown]
# ## A synthetic stack (when no data folder is given)
#
# We turn the 2D demo image into a 3D stack: every nucleus gets a depth, taken from a smooth random
# depth map, and fades in and out over a few slices around it; a Gaussian point-spread function
# then blurs the stack, more along Z than along Y and X (as in a wide-field or confocal
# microscope). Finally, the clean stack is scaled to 30 photons at its brightest voxel and recorded
# by a simulated camera: Poisson shot noise plus Gaussian read noise (1 photon). The stack is saved
# as an ImageJ TIFF with axes `ZYX` and loaded below like your own data.

# %%
import numpy as np
import tifffile
from scipy import ndimage

from n2v_tf.cli import load_demo_data


def synthetic_stack(n_z, size, seed=0, peak=30.0, read_sigma=1.0):
    """A clean (Z, Y, X) stack of nuclei at different depths and a noisy recording of it (photons)."""
    rng = np.random.default_rng(seed)
    _, clean2d = load_demo_data()
    clean2d = clean2d[:size, :size].astype(np.float64) / clean2d.max()
    depth = ndimage.gaussian_filter(rng.normal(size=clean2d.shape), 12)       # smooth random depth map
    depth = (n_z - 1) / 2 + (n_z / 4) * depth / np.abs(depth).max()
    z = np.arange(n_z, dtype=np.float64)[:, None, None]
    clean = clean2d[None] * np.exp(-0.5 * ((z - depth[None]) / (n_z / 8)) ** 2)
    clean = ndimage.gaussian_filter(clean, sigma=(1.5, 0.7, 0.7))             # point-spread function
    clean = clean / clean.max() * peak
    noisy = rng.poisson(clean) + rng.normal(0.0, read_sigma, clean.shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


reference = None
if DATA_FOLDER is None:
    reference, noisy_stack = synthetic_stack(n_z=16 if QUICK else 32, size=96 if QUICK else 256)
    data_folder = OUTPUT_DIR / "demo_data"
    data_folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(data_folder / "nuclei_stack_noisy.tif", noisy_stack, imagej=True, metadata={"axes": "ZYX"})
    print(f"no DATA_FOLDER given: wrote a synthetic stack {noisy_stack.shape} (Z, Y, X) to {data_folder}")
else:
    data_folder = Path(DATA_FOLDER)

# %% [markdown]
# ## Load and check the stacks
#
# `load_images` reads the axes stored in the files (ImageJ hyperstacks, OME-TIFF) or guesses them
# from the shape, and says so: check the guess, and set `AXES` if it is wrong (a time series `TYX`
# is not a Z stack!). `check_images(..., n_dim=3)` stops with a sentence saying what to change if
# the data do not fit a 3D grayscale model, e.g. if a 2D image was given.

# %%
from n2v_tf.io import check_images, load_images

files = sorted(f for f in data_folder.iterdir() if f.suffix.lower() in (".tif", ".tiff") and not f.name.startswith("."))
if not files:
    raise ValueError(f"No TIFF stacks in '{data_folder}': set DATA_FOLDER to a folder of .tif stacks.")
images, axes = load_images(files, axes=AXES)
print(check_images(images, axes, n_dim=3, names=[f.name for f in files], channels=1, allow_mixed_sizes=True,
                   min_size=PATCH))
if axes != "ZYX":
    raise ValueError(f"This notebook expects single-channel Z stacks (axes 'ZYX'), got axes {axes!r}: "
                     "set AXES, or use one file per stack and channel.")
noisy = images[0].astype(np.float32)

# %% [markdown]
# ## Train N2V2 in 3D
#
# The bottom rows (one patch high) of every stack are held out for validation. The three N2V2
# options are `blurpool=True, skip_skipone=True, n2v_manipulator="median"`; everything else is as
# in 2D, with 3D patches.

# %%
import keras

from n2v_tf import N2V, N2VConfig

stacks = [im.astype(np.float32)[..., np.newaxis] for im in images]              # ZYXC
train_imgs = [s[:, :-PATCH[1]] for s in stacks]
val_imgs = [s[:, -PATCH[1]:] for s in stacks]
config = N2VConfig(train_imgs, unet_kern_size=KERNEL, unet_n_depth=DEPTH, unet_n_first=N_FIRST,
                   n2v_patch_shape=PATCH, n2v_perc_pix=0.198, train_loss="mse", train_batch_size=BATCH_SIZE,
                   train_epochs=EPOCHS, train_steps_per_epoch=STEPS_PER_EPOCH, train_learning_rate=LEARNING_RATE,
                   train_tensorboard=False, blurpool=True, skip_skipone=True, n2v_manipulator="median")
keras.utils.set_random_seed(0)
with warnings.catch_warnings():                     # re-runs replace the model folder of the last run
    warnings.filterwarnings("ignore", message="output path for model already exists")
    model = N2V(config, "n2v2_3d", basedir=str(OUTPUT_DIR / "models"), overwrite=True)
t0 = time.perf_counter()
history = model.train(train_imgs, val_imgs, verbose=0 if QUICK else 2, seed=0)
print(f"N2V2 3D: {EPOCHS} epochs x {STEPS_PER_EPOCH} steps of {BATCH_SIZE} patches {PATCH} in "
      f"{time.perf_counter() - t0:.0f} s; lowest validation loss {min(history.history['val_loss']):.4f}")

# %% [markdown]
# ## Training curves
#
# Training and validation loss should decrease and level off together (see the `n2v_2d` notebook
# for how to read them).

# %%
from n2v_tf.qc import plot_history

plot_history(history, path=OUTPUT_DIR / "training_curves.png")
show(OUTPUT_DIR / "training_curves.png")

# %% [markdown]
# ## Denoise the stack
#
# `predict` takes the axes of the stack; `n_tiles` splits it into overlapping tiles (here 2 x 2 in Y
# and X), so that large stacks fit into memory. The result is written as an ImageJ TIFF.

# %%
t0 = time.perf_counter()
denoised = model.predict(noisy, "ZYX", n_tiles=N_TILES)
print(f"predicted {noisy.shape} with {N_TILES} tiles in {time.perf_counter() - t0:.1f} s")
tifffile.imwrite(OUTPUT_DIR / f"{files[0].stem}_n2v2.tif", denoised, imagej=True, metadata={"axes": "ZYX"})

# %% [markdown]
# ## Orthogonal views, before and after
#
# Each row shows the central XY slice and the XZ and YZ sections through the middle of the stack,
# with the same contrast in all panels. The sections along Z are where 3D denoising shines: the
# network uses the neighbouring slices, so objects stay continuous from slice to slice.
#
# **What to look for:** the nuclei keep their shape and brightness in all three views; the grain is
# gone; no stripes or blocks appear along Z (those would hint at too small tiles or patches).

# %%
from n2v_tf.qc import plot_orthogonal, psnr, ssim

volumes = [noisy, denoised] + ([reference] if reference is not None else [])
titles = ["noisy", "N2V2 3D"] + (["clean (reference)"] if reference is not None else [])
plot_orthogonal(volumes, titles=titles, path=OUTPUT_DIR / "orthogonal_views.png")
show(OUTPUT_DIR / "orthogonal_views.png")
if reference is not None:
    print("| stack | PSNR (dB) | SSIM |\n|---|---|---|")
    for label, vol in (("noisy", noisy), ("N2V2 3D", denoised)):
        print(f"| {label} | {psnr(reference, vol):.2f} | {ssim(reference, vol):.3f} |")

# %% [markdown]
# ## The residual
#
# `noisy - denoised` in the middle slice and its autocorrelation: it should look like structureless
# noise (no nuclei outlines) with a single peak at zero lag.

# %%
from n2v_tf.qc import plot_residual

plot_residual(noisy, denoised, path=OUTPUT_DIR / "residual.png")
show(OUTPUT_DIR / "residual.png")

# %% [markdown]
# ## Next steps
#
# * Export the 3D model for Fiji/deepImageJ with `model.export_bioimageio("my_3d.bioimage.io.zip",
#   test_img=noisy, axes="ZYX", authors=["..."])` (see the `n2v_2d` notebook).
# * Anisotropic stacks (Z steps much larger than the pixel size) can be trained as 2D images
#   (axes `SYX`): see `n2v_2d`.
# * From the command line: `n2v-tf train stacks/ --axes ZYX --preset n2v2 ...`.
