# %% [markdown]
# # Fully unsupervised Probabilistic Noise2Void (PN2V) vs N2V
#
# Train N2V, bootstrap a noise model from its prediction, train PN2V with it, and compare it with
# N2V and with PN2V on a calibrated noise model, on Poisson-Gaussian fluorescence data.

# %% [markdown]
# ## Introduction
#
# Noise2Void (N2V) predicts one value per pixel from its surroundings and never looks at the
# noisy value of the pixel itself. [Probabilistic Noise2Void](https://doi.org/10.3389/fcomp.2020.00005)
# (PN2V, Krull et al. 2020) instead lets the network predict `K` *samples* of the signal per
# pixel (a prior), and combines them with a **noise model** `p(x|s)`, the probability of
# observing `x` when the signal is `s`, into a posterior: its mean, the MMSE estimate, also uses
# the pixel's own value.
#
# A noise model normally comes from calibration data: many noisy frames of a static sample.
# [Prakash et al. (ISBI 2020)](https://arxiv.org/abs/1911.12291) made PN2V *fully unsupervised*
# by **bootstrapping**: train N2V, take its prediction as pseudo ground truth, fit a noise model
# to the (prediction, noisy) pairs, then train PN2V with it. In `n2v_tf` that is
#
# * `bootstrap_noise_model(n2v_model, images, axes, kind='gmm')` -> a fitted noise model,
# * `N2VConfig(X, probabilistic=True, pn2v_samples=K)` and `N2V(config, name, basedir, noise_model=nm)`,
#   whose `train` and `predict` (MMSE by default) work as for N2V,
# * `GaussianMixtureNoiseModel` / `HistogramNoiseModel` with `fit`, `from_calibration`, `plot`,
#   `save`/`load`.
#
# This example simulates low-light fluorescence data: the clean nuclei image shipped with
# `n2v_tf`, scaled to 30 photons at its brightest pixel, with Poisson shot noise and Gaussian
# read noise. Everything is known, so we can check the noise models against the true variance
# law `Var[x|s] = s + r**2` and compute PSNRs: N2V, PN2V with the bootstrapped Gaussian mixture
# (GMM), and PN2V with a GMM fitted on 20 simulated calibration frames.
#
# Run the notebook top to bottom (one N2V and two PN2V trainings of 300 steps with 100 samples per
# pixel; see the note on timings at the end), or run it as a script: `python examples/pn2v_bootstrap.py`
# (`--quick` or `N2V_TF_QUICK=1`: well under a minute, tiny barely trained networks, for testing
# only; the numbers then mean nothing). `benchmarks/bench_pn2v.py` runs the full comparison
# (histogram and GMM, calibration and bootstrap) on a larger image. Outputs (figures, models, noise
# models, `results.json`) go to `n2v_tf_output/pn2v_bootstrap/` in the working directory.

# %% [markdown]
# ## Setup

# %%
import json
import os
import sys
import time
import warnings
from importlib.resources import as_file, files
from pathlib import Path

import keras
import numpy as np
import tifffile

from n2v_tf import (N2V, GaussianMixtureNoiseModel, HistogramNoiseModel, N2VConfig, bootstrap_noise_model,
                    psnr)

# Quick mode (tiny networks and a few steps, for testing): `--quick` on the command line or N2V_TF_QUICK=1.
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")

OUTPUT_DIR = Path("n2v_tf_output") / "pn2v_bootstrap"    # relative to the working directory
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)


def show(png):
    """Show a saved figure in a notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))


# The same network and training budget for N2V and both PN2V models.
PATCH = (32, 32) if QUICK else (64, 64)
DEPTH = 1 if QUICK else 2
N_FIRST = 8 if QUICK else 16
EPOCHS = 1 if QUICK else 15
STEPS_PER_EPOCH = 3 if QUICK else 20
BATCH_SIZE = 4 if QUICK else 16
LEARNING_RATE = 1e-3
PN2V_SAMPLES = 16 if QUICK else 100   # samples per pixel; the paper uses 800 (fine on a GPU)
# Noise-model fits: GMM Adam steps and pairs per step (the defaults: 1000 and 25000), histogram bins.
GMM_FIT = dict(steps=150, batch_size=4096) if QUICK else dict(steps=1000)
HIST_BINS = 40 if QUICK else 100
# The data: photons at the brightest pixel, read noise (std, photons), calibration frames.
PEAK, READ_SIGMA, N_CALIBRATION = 30.0, 1.0, 20


# %% [markdown]
# ## The data
#
# The clean image is the 256x256 crop of a fluorescence image of stained nuclei that `n2v-tf demo`
# uses (in quick mode its central 128x128 pixels). We scale it to 30 photons at the brightest
# pixel: the background holds a fraction of a photon, the nuclei 5 to 30. A camera then records
# `x = Poisson(s) + N(0, r**2)` with the read noise `r = 1` photon, so the noise variance grows
# with the signal: `Var[x|s] = s + r**2`. Such signal-dependent noise is exactly what a noise
# model describes and what N2V's squared-error loss ignores.
#
# The bottom rows are held out for validation. As always with N2V, we denoise the very image we
# trained on: no clean data is used anywhere except to compute PSNRs.

# %%
with as_file(files("n2v_tf") / "demo_data" / "nuclei_clean.tif") as path:
    clean = tifffile.imread(path).astype(np.float64)
if QUICK:
    clean = clean[64:192, 64:192]
clean = (clean / clean.max() * PEAK).astype(np.float32)
rng = np.random.default_rng(0)


def camera(signal, rng):
    """One noisy acquisition: Poisson shot noise (in photons) plus Gaussian read noise."""
    return (rng.poisson(signal) + rng.normal(0.0, READ_SIGMA, signal.shape)).astype(np.float32)


noisy = camera(clean, rng)
DATA_RANGE = float(clean.max() - clean.min())
print(f"clean {clean.shape}, {clean.min():.2f} to {clean.max():.2f} photons (mean {clean.mean():.2f}); "
      f"noisy PSNR {psnr(clean, noisy, DATA_RANGE):.2f} dB")

val_rows = PATCH[0]
train_imgs = [noisy[:-val_rows, :, np.newaxis]]
val_imgs = [noisy[-val_rows:, :, np.newaxis]]
common = dict(unet_kern_size=3, unet_n_depth=DEPTH, unet_n_first=N_FIRST, n2v_patch_shape=PATCH,
              n2v_perc_pix=0.198, n2v_manipulator="uniform_withCP", train_batch_size=BATCH_SIZE,
              train_epochs=EPOCHS, train_steps_per_epoch=STEPS_PER_EPOCH, train_learning_rate=LEARNING_RATE,
              train_tensorboard=False)


def train(label, noise_model=None):
    """Train N2V (``noise_model=None``) or PN2V with ``noise_model``; returns the model and the seconds taken."""
    keras.utils.set_random_seed(0)
    extra = dict(probabilistic=True, pn2v_samples=PN2V_SAMPLES) if noise_model is not None else {}
    config = N2VConfig(train_imgs, **common, **extra)
    with warnings.catch_warnings():             # re-runs replace the model folders of the last run
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, label, basedir=str(OUTPUT_DIR / "models"), overwrite=True, noise_model=noise_model)
    t0 = time.perf_counter()
    model.train(train_imgs, val_imgs, verbose=0 if QUICK else 2, seed=0)
    seconds = time.perf_counter() - t0
    print(f"{label}: trained in {seconds:.0f} s")
    return model, seconds


# %% [markdown]
# ## Step 1: train N2V
#
# A plain N2V model (the `uniform_withCP` blind-spot replacement of the original paper). Its
# prediction is the baseline, and the pseudo ground truth of the next step.

# %%
n2v, n2v_seconds = train("n2v")
pred_n2v = n2v.predict(noisy, "YX")
print(f"N2V PSNR {psnr(clean, pred_n2v, DATA_RANGE):.2f} dB")


# %% [markdown]
# ## Step 2: bootstrap noise models from N2V's prediction
#
# `bootstrap_noise_model` predicts the images with the N2V model and fits a noise model to the
# pairs (prediction, noisy value), dropping the pixels whose prediction lies in the lowest or
# highest 0.5 % (outliers of the prediction). Two kinds:
#
# * the **Gaussian mixture** (GMM, Prakash et al.): 3 Gaussians whose weights, means and variances
#   are linear functions of the signal, fitted by maximum likelihood; smooth and data-efficient;
# * the **histogram** (Krull et al.): a 2D histogram of (signal, observation), rows normalised to
#   `p(x|s)`; it assumes nothing, but needs many pairs per bin.
#
# The N2V prediction is smoother than the true signal, and part of the signal's texture ends up
# in the "noise": a bootstrapped model is somewhat broader than the true one. The plots show
# `p(x|s)` over (signal, observation) and a few slices with the empirical histograms of the
# pairs (dashed).

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")             # e.g. the note that empty histogram rows were filled
    gmm_boot = bootstrap_noise_model(n2v, noisy, "YX", kind="gmm", **GMM_FIT)
    hist_boot = bootstrap_noise_model(n2v, noisy, "YX", kind="histogram", bins=HIST_BINS)
print(f"bootstrapped: {gmm_boot}\n              {hist_boot}")

for nm, name in ((gmm_boot, "gmm"), (hist_boot, "histogram")):
    nm.plot(OUTPUT_DIR / f"noise_model_{name}_bootstrap.png", observation=noisy, signal=pred_n2v,
            title=f"bootstrapped {name} noise model (N2V prediction vs noisy)")
    show(OUTPUT_DIR / f"noise_model_{name}_bootstrap.png")


# %% [markdown]
# ## For comparison: a noise model from calibration data
#
# With a microscope you would record, say, 20 or more frames of a static sample (beads, a fixed
# specimen) and fit the noise model to (mean of the frames, frame) pairs:
# `GaussianMixtureNoiseModel.from_calibration(stack)`. Here we simulate 20 frames of the clean
# image. This is the supervised upper reference for the noise model; PN2V itself still trains on
# the noisy image only.

# %%
calibration = np.stack([camera(clean, rng) for _ in range(N_CALIBRATION)])
gmm_cal = GaussianMixtureNoiseModel.from_calibration(calibration, **GMM_FIT)
hist_cal = HistogramNoiseModel.from_calibration(calibration, bins=HIST_BINS)
gmm_cal.save(OUTPUT_DIR / "noise_model_gmm_calibration.npz")
gmm_boot.save(OUTPUT_DIR / "noise_model_gmm_bootstrap.npz")


# %% [markdown]
# How close are the noise models to the truth? `mean_and_variance(s)` returns the mean and the
# variance of `p(x|s)`; the true variance is `s + r**2`. We compare them over the central 90 % of
# the signals of the image (its 5th to 95th percentile).

# %%
lo, hi = np.percentile(clean, [5, 95])
s_grid = np.linspace(lo, hi, 50)
true_var = s_grid + READ_SIGMA ** 2
models = {"GMM, bootstrap": gmm_boot, "histogram, bootstrap": hist_boot, "GMM, calibration": gmm_cal,
          "histogram, calibration": hist_cal}
variances = {label: nm.mean_and_variance(s_grid)[1] for label, nm in models.items()}
var_error = {label: float(np.max(np.abs(v - true_var) / true_var)) for label, v in variances.items()}
for label, err in var_error.items():
    print(f"noise model {label:24s}: largest relative variance error over signals {lo:.2f}-{hi:.2f}: {err:.0%}")


# %% [markdown]
# ## Step 3: train PN2V
#
# The same network, patches and steps as N2V; the output layer now has `pn2v_samples` channels
# (the samples of the signal prior) and the loss is `-log(1/K sum_k p(x|s_k))` at the blind
# spots, under the noise model. We train one PN2V model with the bootstrapped GMM (fully
# unsupervised) and one with the calibration GMM. `predict` returns the MMSE estimate by default;
# `pn2v_output='prior_mean'` gives the mean of the samples (the posterior without the pixel's
# own value).

# %%
pn2v_boot, pn2v_boot_seconds = train("pn2v_bootstrap_gmm", gmm_boot)
pn2v_cal, pn2v_cal_seconds = train("pn2v_calibration_gmm", gmm_cal)
predictions = {
    "N2V": pred_n2v,
    "PN2V, bootstrap GMM (MMSE)": pn2v_boot.predict(noisy, "YX"),
    "PN2V, bootstrap GMM (prior mean)": pn2v_boot.predict(noisy, "YX", pn2v_output="prior_mean"),
    "PN2V, calibration GMM (MMSE)": pn2v_cal.predict(noisy, "YX"),
}
seconds = {"N2V": n2v_seconds, "PN2V, bootstrap GMM (MMSE)": pn2v_boot_seconds,
           "PN2V, calibration GMM (MMSE)": pn2v_cal_seconds}


# %% [markdown]
# ## Compare
#
# PSNR against the clean image (`data_range` = its max - min). What to expect from well-trained
# models (Prakash et al.): PN2V's MMSE estimate beats N2V by a few tenths of a dB to over a dB on
# such data, with the calibration GMM ahead of the bootstrapped one; the prior mean is about as
# good as N2V (it is N2V-like: it ignores the pixel's value). In quick mode the networks are
# barely trained and the numbers mean nothing.

# %%
scores = {"noisy": psnr(clean, noisy, DATA_RANGE)}
scores.update({label: psnr(clean, pred, DATA_RANGE) for label, pred in predictions.items()})
print("\n| image | PSNR (dB) | vs N2V (dB) | training (s) |\n|---|---|---|---|")
for label, value in scores.items():
    delta = f"{value - scores['N2V']:+.2f}" if label not in ("noisy", "N2V") else "-"
    print(f"| {label} | {value:.2f} | {delta} | {f'{seconds[label]:.0f}' if label in seconds else '-'} |")
print(f"\n({PN2V_SAMPLES} PN2V samples per pixel; networks: depth {DEPTH}, {N_FIRST} first filters, "
      f"{EPOCHS * STEPS_PER_EPOCH} steps of batch {BATCH_SIZE}; quick mode: {QUICK})")

results = dict(quick=QUICK, shape=list(clean.shape), peak_photons=PEAK, read_sigma=READ_SIGMA,
               n_calibration_frames=N_CALIBRATION, pn2v_samples=PN2V_SAMPLES, steps=EPOCHS * STEPS_PER_EPOCH,
               psnr=scores, train_seconds=seconds, variance_max_rel_error=var_error,
               signal_range_central_90=[float(lo), float(hi)])
_ = (OUTPUT_DIR / "results.json").write_text(json.dumps(results, indent=2))  # "_ =": no byte count shown


# %% [markdown]
# ## Figures
#
# Top: crops of the noisy image, the N2V and PN2V predictions and the clean image, with the same
# contrast. Bottom: the noise variance against the signal for the true law and the four fitted
# noise models.

# %%
from matplotlib.figure import Figure

crop = (slice(0, min(128, clean.shape[0])), slice(0, min(128, clean.shape[1])))
panels = {"noisy": noisy, **{k: v for k, v in predictions.items() if "prior" not in k}, "clean": clean}
fig = Figure(figsize=(3.2 * len(panels), 7.0), layout="constrained")
grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 2))
vmax = float(np.percentile(clean, 99.8))
for j, (label, img) in enumerate(panels.items()):
    ax = fig.add_subplot(grid[0, j])
    ax.imshow(img[crop], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(label.replace(" (MMSE)", "").replace(", ", "\n") +
                 (f" {scores[label]:.2f} dB" if label in scores else ""), fontsize=9)
    ax.axis("off")
ax = fig.add_subplot(grid[1, :])
ax.plot(s_grid, true_var, "k-", lw=2, label=f"true: s + {READ_SIGMA ** 2:g}")
for label, v in variances.items():
    ax.plot(s_grid, v, "--" if "bootstrap" in label else ":", lw=1.5,
            label=f"{label} (max error {var_error[label]:.0%})")
ax.set_xlabel("signal s (photons)")
ax.set_ylabel("Var[x|s] (photons^2)")
ax.legend(fontsize=8)
fig.savefig(OUTPUT_DIR / "pn2v_bootstrap.png", dpi=100)
print(f"wrote {OUTPUT_DIR / 'pn2v_bootstrap.png'} and the noise-model plots in {OUTPUT_DIR}")
show(OUTPUT_DIR / "pn2v_bootstrap.png")


# %% [markdown]
# ## Timings and next steps
#
# PN2V's network differs from N2V's only in its last layer (`pn2v_samples` outputs per pixel),
# but its loss evaluates the noise model for every sample, and the MMSE prediction does too. The
# paper's 800 samples are fine on a GPU; on a CPU, 64 to 200 samples train much faster (change
# `PN2V_SAMPLES` in the setup cell).
#
# * From the command line, `n2v-tf bootstrap noisy/ --axes YX --model-dir models --name my_pn2v`
#   runs the three steps (N2V, bootstrapped noise model and its plot, PN2V), and
#   `n2v-tf predict ... --name my_pn2v` writes the MMSE estimate.
# * With calibration data, `n2v-tf noise-model --calibration stack.tif --output nm.npz` fits the
#   noise model (and plots it), and `n2v-tf train noisy/ --noise-model nm.npz ...` trains PN2V.
# * `benchmarks/bench_pn2v.py` compares N2V with PN2V on histogram and GMM noise models, from
#   calibration data and bootstrapped, with the same network and steps for all.
