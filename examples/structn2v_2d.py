# %% [markdown]
# # structN2V: removing noise that is correlated along X
#
# Measure the noise autocorrelation, let it suggest a structN2V mask, and compare N2V, structN2V and
# structN2V + N2V2 on an image with horizontally correlated noise.

# %% [markdown]
# ## Introduction
#
# Noise2Void (N2V) assumes that the noise of a pixel is independent of the noise of its
# neighbours: then the network, which never sees the pixel it predicts (the *blind spot*), can
# only predict the clean signal. Many cameras break that assumption. Read-out electronics, for
# example, add noise that is shared by a few horizontally adjacent pixels (stripes along X).
# N2V then learns to predict the shared part of the noise from the left and right neighbours,
# and the stripes survive the denoising.
#
# [structN2V](https://arxiv.org/abs/1910.11279) (Broaddus et al., ISBI 2020) fixes this by
# hiding, around every blind spot, all pixels whose noise is correlated with it: a *structN2V
# mask*, e.g. a horizontal line of 9 pixels. `n2v_tf` can estimate that mask from the
# autocorrelation of a noise-only image:
#
# * `suggest_struct_mask(noise)` returns the mask and the autocorrelation map,
# * `plot_autocorrelation(acf, mask)` draws both,
# * `N2VConfig(X, structN2Vmask=mask.tolist())` trains with it (and saves it in `config.json`).
#
# This example corrupts a real photograph with white noise convolved along X with a 1x9 box
# plus pixel-wise Gaussian noise, estimates the mask, and trains plain N2V, structN2V and
# structN2V with the N2V2 architecture with the same training budget.
#
# Run the notebook top to bottom (3 x 400 training steps: about 10 minutes on an idle 2-core CPU, about
# a minute on a GPU), or run it as a script: `python examples/structn2v_2d.py` (`--quick` or
# `N2V_TF_QUICK=1`: well under a minute, tiny barely trained networks, for testing only).
# `benchmarks/bench_structn2v.py` runs the same comparison on more images, in 2D and 3D.
# Outputs (figures, models, `results.json`) go to `n2v_tf_output/structn2v_2d/` in the working
# directory.

# %% [markdown]
# ## Setup

# %%
import json
import os
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
from scipy.ndimage import uniform_filter1d

from n2v_tf import N2V, N2VConfig, autocorrelation, mask_literal, plot_autocorrelation, psnr, suggest_struct_mask

# Quick mode (tiny networks and a few steps, for testing): `--quick` on the command line or N2V_TF_QUICK=1.
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")

OUTPUT_DIR = Path("n2v_tf_output") / "structn2v_2d"    # relative to the working directory
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)


def show(png):
    """Show a saved figure in a notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))


# The same training budget for every model.
PATCH = (32, 32) if QUICK else (64, 64)
DEPTH = 1 if QUICK else 2
N_FIRST = 8 if QUICK else 32
EPOCHS = 1 if QUICK else 8
STEPS_PER_EPOCH = 3 if QUICK else 50
BATCH_SIZE = 4 if QUICK else 16
LEARNING_RATE = 1e-3
# The noise: white noise averaged over BOX pixels along X (std STRIPE_SIGMA) + pixel-wise noise.
BOX, STRIPE_SIGMA, PIXEL_SIGMA = 9, 20.0, 10.0


# %% [markdown]
# ## The data
#
# We use scikit-image's `camera` (512x512, 8 bit; in quick mode a 128x128 crop). scikit-image
# is not a dependency of `n2v_tf`: without it, the clean fluorescence image shipped with the
# package is used instead.
#
# The noise has two parts. *Structured* noise: white noise averaged over a horizontal box of
# 9 pixels, scaled to a standard deviation of 20 grey values, so every pixel shares 8/9 of its
# structured noise with its horizontal neighbour. And pixel-wise independent Gaussian noise with
# a standard deviation of 10.

# %%
def load_clean():
    try:
        from skimage import data
        return data.camera().astype(np.float32), "scikit-image's camera"
    except ImportError:
        from importlib.resources import as_file, files

        import tifffile
        with as_file(files("n2v_tf") / "demo_data" / "nuclei_clean.tif") as path:
            img = tifffile.imread(path).astype(np.float32)
        return img * (255.0 / img.max()), "the shipped nuclei image (scikit-image is not installed)"


def striped_noise(shape, rng):
    """White noise convolved along X with a 1xBOX box (std STRIPE_SIGMA) plus pixel-wise Gaussian noise."""
    stripes = uniform_filter1d(rng.normal(size=shape), BOX, axis=1, mode="wrap") * np.sqrt(BOX) * STRIPE_SIGMA
    return (stripes + rng.normal(0.0, PIXEL_SIGMA, shape)).astype(np.float32)


clean, source = load_clean()
if QUICK:
    clean = clean[64:192, 192:320] if clean.shape[0] >= 320 else clean[:128, :128]
rng = np.random.default_rng(0)
noisy = clean + striped_noise(clean.shape, rng)
print(f"{source}: {clean.shape}; noisy PSNR {psnr(clean, noisy, data_range=255):.2f} dB")


# %% [markdown]
# ## How correlated is the noise?
#
# structN2V needs a noise-only image. A dark frame (an acquisition without light) is ideal; a
# background region of the image itself works as well. Here we look for the flattest region
# of the *noisy* image (smallest standard deviation; no clean data needed), which in `camera`
# is a patch of sky.
#
# `suggest_struct_mask` computes the autocorrelation and hides every lag whose correlation
# exceeds half of the strongest neighbour correlation (the full width at half maximum). For a
# box of 9 pixels that is a line of 9 (sometimes 11) pixels along X. `max_span` keeps the mask
# smaller than the training patch.

# %%
def flattest_region(img, window):
    """The window (of the given shape, on a half-window grid) with the smallest standard deviation."""
    step = [max(1, w // 2) for w in window]
    starts = [(y, x) for y in range(0, img.shape[0] - window[0] + 1, step[0])
              for x in range(0, img.shape[1] - window[1] + 1, step[1])]
    y, x = min(starts, key=lambda s: img[s[0]:s[0] + window[0], s[1]:s[1] + window[1]].std())
    return slice(y, y + window[0]), slice(x, x + window[1])


window = (32, 64) if QUICK else (64, 128)
region = flattest_region(noisy, window)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mask, acf = suggest_struct_mask(noisy[region], max_span=min(PATCH) - 1)
for w in caught:
    print(f"note: {w.message}")
print(f"noise-only region rows {region[0].start}-{region[0].stop - 1}, columns {region[1].start}-{region[1].stop - 1}")
print(f"suggested mask: {mask.shape[0]} x {mask.shape[1]} (Y x X) -> structN2Vmask={mask_literal(mask)}")
plot_autocorrelation(acf, mask, path=str(OUTPUT_DIR / "noise_acf.png"), title="autocorrelation of a background region")
show(OUTPUT_DIR / "noise_acf.png")


# %% [markdown]
# ## Train N2V, structN2V and structN2V + N2V2
#
# All three models get the same network size, patches, batch size and number of steps. They only
# differ in the blind spot (a single pixel, or the suggested line) and, for the last one, in the
# N2V2 architecture (max-blur-pooling, no top-most skip connection, median replacement).
# The bottom rows of the noisy image are held out for validation; the validation patches are
# masked with the same structN2V mask.

# %%
val_rows = PATCH[0]
train_imgs = [noisy[:-val_rows, :, np.newaxis]]
val_imgs = [noisy[-val_rows:, :, np.newaxis]]
common = dict(unet_kern_size=3, unet_n_depth=DEPTH, unet_n_first=N_FIRST, n2v_patch_shape=PATCH,
              n2v_perc_pix=0.198, train_batch_size=BATCH_SIZE, train_epochs=EPOCHS,
              train_steps_per_epoch=STEPS_PER_EPOCH, train_learning_rate=LEARNING_RATE, train_tensorboard=False)
variants = {
    "N2V": dict(),
    "structN2V": dict(structN2Vmask=mask.tolist()),
    "structN2V + N2V2": dict(structN2Vmask=mask.tolist(), blurpool=True, skip_skipone=True,
                             n2v_manipulator="median"),
}
predictions, seconds = {}, {}
for label, extra in variants.items():
    keras.utils.set_random_seed(0)
    config = N2VConfig(train_imgs, **common, **extra)
    name = label.replace(" + ", "_").lower()
    with warnings.catch_warnings():                 # re-runs replace the model folders of the last run
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, name, basedir=str(OUTPUT_DIR / "models"), overwrite=True)
    t0 = time.perf_counter()
    model.train(train_imgs, val_imgs, verbose=0 if QUICK else 2, seed=0)
    seconds[label] = time.perf_counter() - t0
    predictions[label] = model.predict(noisy, "YX")
    print(f"{label}: trained in {seconds[label]:.0f} s")


# %% [markdown]
# ## Compare
#
# PSNR against the clean image (8-bit range). What to expect: plain N2V can predict the shared
# part of the stripes from the left and right neighbours of the blind spot, so it learns to keep
# the stripes. structN2V hides those neighbours, cannot predict the stripes and removes them,
# at the price of less context along X. (In quick mode the networks are barely trained and the
# numbers mean nothing.)

# %%
scores = {"noisy": psnr(clean, noisy, data_range=255)}
scores.update({label: psnr(clean, pred, data_range=255) for label, pred in predictions.items()})
print("\n| image | PSNR (dB) | training (s) |\n|---|---|---|")
for label, value in scores.items():
    print(f"| {label} | {value:.2f} | {f'{seconds[label]:.0f}' if label in seconds else '-'} |")


# %% [markdown]
# ## The residuals tell what each model removed
#
# The residual `noisy - prediction` is what a model took away. Its autocorrelation along X is
# a check that needs no clean image. For well-trained models:
#
# * the more of the stripes N2V learned to predict, the less of them is in its residual, whose
#   autocorrelation then falls off faster than that of the true noise;
# * structN2V's residual holds the stripes: its autocorrelation along X shows the triangle of
#   the 1x9 box.
#
# The residual also holds whatever image structure a model failed to reproduce, which is
# correlated over long distances in every direction; a barely trained model (quick mode) shows
# little else. So `suggest_struct_mask` on the residual of a plain N2V model is only as good as
# that model, and it can miss the part of the stripes that N2V kept: a dark frame or a
# background region is the safer source. The script prints both suggestions.
#
# The remaining error `prediction - clean` (needs the clean image, so only in a simulation)
# shows the other side: the stripes that a model left in its output correlate it along X.

# %%
def acf_along_x(x, max_lag=15):
    a = autocorrelation(np.asarray(x, np.float64))
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    return a[cy, cx - max_lag:cx + max_lag + 1]


lags = np.arange(-15, 16)
profiles = {"true noise (noisy - clean)": acf_along_x(noisy - clean)}
profiles.update({f"{label} residual": acf_along_x(noisy - predictions[label]) for label in ("N2V", "structN2V")})
errors = {f"{label} error": acf_along_x(predictions[label] - clean) for label in ("N2V", "structN2V")}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    residual_mask, _ = suggest_struct_mask(noisy - predictions["N2V"], max_span=min(PATCH) - 1)
print(f"\ncorrelation with the next pixel along X: "
      + ", ".join(f"{k} {v[16]:.2f}" for k, v in {**profiles, **errors}.items()))
print(f"mask suggested by N2V's residual: {residual_mask.shape[0]} x {residual_mask.shape[1]} (Y x X); "
      f"by the background region: {mask.shape[0]} x {mask.shape[1]}")

results = dict(source=source, shape=list(clean.shape), quick=QUICK, mask=mask.tolist(),
               residual_mask_shape=list(residual_mask.shape), psnr=scores, train_seconds=seconds,
               lag1_x={k: float(v[16]) for k, v in {**profiles, **errors}.items()})
_ = (OUTPUT_DIR / "results.json").write_text(json.dumps(results, indent=2))  # "_ =": no byte count shown


# %% [markdown]
# ## Figure
#
# Top: noisy | N2V | structN2V | structN2V + N2V2 | clean (a crop, same contrast). Bottom: the
# autocorrelation along X of the noise and of the residuals (left), and of the remaining errors
# (right).

# %%
from matplotlib.figure import Figure

crop = (slice(0, min(160, clean.shape[0])), slice(0, min(160, clean.shape[1]))) if QUICK else \
    (slice(80, 336), slice(160, 416))
panels = {"noisy": noisy, **predictions, "clean": clean}
fig = Figure(figsize=(3.2 * len(panels), 7.5), layout="constrained")
grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 2))
for j, (label, img) in enumerate(panels.items()):
    ax = fig.add_subplot(grid[0, j])
    ax.imshow(img[crop], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(label + (f"\n{scores[label]:.2f} dB" if label in scores else ""))
    ax.axis("off")
half = len(panels) // 2
for sl, curves, title in ((slice(0, half), profiles, "noise and residuals (noisy - prediction)"),
                          (slice(half, None), errors, "remaining error (prediction - clean)")):
    ax = fig.add_subplot(grid[1, sl])
    for label, curve in curves.items():
        ax.plot(lags, curve, marker="o", ms=3, label=label)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("lag along X (pixels)")
    ax.set_ylabel("autocorrelation")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
fig.savefig(OUTPUT_DIR / "structn2v_2d.png", dpi=100)
print(f"wrote {OUTPUT_DIR / 'structn2v_2d.png'} and {OUTPUT_DIR / 'noise_acf.png'}")
show(OUTPUT_DIR / "structn2v_2d.png")


# %% [markdown]
# ## Next steps
#
# * From the command line, `n2v-tf analyze-noise dark_frame.tif` prints the suggested mask as
#   the literal to paste into `N2VConfig(..., structN2Vmask=...)` and saves the autocorrelation
#   plot; `--crop y0:y1,x0:x1` analyses a background region, and `--model-dir DIR --name NAME`
#   the residual of a trained model.
# * For 3D data, `struct_mask('Y', 9, n_dim=3)` (or the suggestion on a 3D noise volume) gives
#   the mask of noise correlated along Y.
# * `struct_mask('X', 9)` is the shorthand for the mask of this example.
