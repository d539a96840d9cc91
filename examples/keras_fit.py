# %% [markdown]
# # Noise2Void (N2V2) with plain `model.fit`
#
# Build the N2V2 U-Net, the blind-spot data pipeline and the masked loss by hand and train them with
# `keras.Model.fit`.

# %% [markdown]
# ## Introduction
#
# [Noise2Void](https://arxiv.org/abs/1811.10980) (N2V) learns to denoise from noisy images alone:
# a few pixels of every training patch (the *blind spots*) are replaced by values from their
# neighbourhood, and the network is trained to predict the original noisy values at exactly these
# pixels. Since pixel-wise independent noise cannot be predicted from the neighbours, the best the
# network can do is predict the clean signal. [N2V2](https://arxiv.org/abs/2211.08512) removes
# N2V's checkerboard artefacts with max-blur-pooling, no top-most skip connection and a median
# replacement of the blind spots.
#
# `n2v_tf.N2V` wraps all of this in one `train()` call. This example instead assembles the public
# building blocks of `n2v_tf` with plain Keras, which is the way to go when you want your own
# callbacks, optimiser, distribution strategy or training loop:
#
# * `build_n2v2_unet`: the network (a `keras.Model` made of built-in layers only),
# * `N2VSequence`: a `keras.utils.PyDataset` that crops, normalises and masks random patches,
# * `validation_data`: masked validation patches (masked once, with a fixed seed),
# * `n2v_mse` / `n2v_abs`: the loss and metric evaluated at the blind spots only.
#
# Run the notebook top to bottom, or run it as a script: `python examples/keras_fit.py` (a few
# minutes on a CPU; `--quick` or `N2V_TF_QUICK=1`: a few seconds, for testing only). Outputs are
# written to `n2v_tf_output/keras_fit/` in the working directory.

# %% [markdown]
# ## Setup

# %%
import os
import sys
import time
from importlib.resources import as_file, files
from pathlib import Path

import keras
import numpy as np
import tifffile

from n2v_tf import N2VSequence, build_n2v2_unet, n2v_abs, n2v_mse, psnr, validation_data

# Quick mode (a tiny network and a few steps, for testing): `--quick` on the command line or N2V_TF_QUICK=1.
QUICK = os.environ.get("N2V_TF_QUICK") == "1" or "--quick" in sys.argv
print(f"quick mode: {QUICK}")

OUTPUT_DIR = Path("n2v_tf_output") / "keras_fit"    # relative to the working directory
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

# Training settings. The full run is small enough for a laptop CPU.
PATCH = (32, 32) if QUICK else (64, 64)
N_FIRST = 8 if QUICK else 32
EPOCHS = 1 if QUICK else 15
STEPS_PER_EPOCH = 2 if QUICK else 20
BATCH_SIZE = 4 if QUICK else 16
PERC_PIX = 0.198  # percentage of blind-spot pixels per patch (as in the N2V and N2V2 papers)


def show(png):
    """Show a saved figure in a notebook (in a script, the PNG file is the output)."""
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(png)))
keras.utils.set_random_seed(0)


# %% [markdown]
# ## Load the data
#
# The package ships a 256x256 crop of a fluorescence image of nuclei (2018 Data Science Bowl,
# CC0) with simulated photon shot noise (about 30 photons at the brightest pixel) and read noise,
# plus the clean crop as a reference. Noise2Void only ever sees the noisy image; the clean one is
# used for the PSNR at the end.

# %%
def load_demo(name):
    with as_file(files("n2v_tf") / "demo_data" / name) as path:
        return tifffile.imread(path)


noisy = load_demo("nuclei_noisy.tif").astype(np.float32)   # (256, 256), float32
clean = load_demo("nuclei_clean.tif").astype(np.float32)   # (256, 256), reference only
print(f"noisy image {noisy.shape}, PSNR against the clean reference: {psnr(clean, noisy):.2f} dB")


# %% [markdown]
# Hold out the bottom rows for validation, and train on the rest. The data generators expect a
# list of images with the axes `YXC` (channel last); images in such a list may differ in size.
# Both training and validation data are normalised with the mean and standard deviation of the
# training data, which we also need to undo the normalisation after prediction.

# %%
n_val_rows = PATCH[0]
train_img = noisy[:-n_val_rows, :, np.newaxis]
val_img = noisy[-n_val_rows:, :, np.newaxis]
means, stds = [float(train_img.mean())], [float(train_img.std())]


# %% [markdown]
# ## The blind-spot data pipeline
#
# `N2VSequence` draws random patches from the images, normalises them and masks them. Each batch
# is a pair `(masked_patches, concat([patches, mask], axis=-1))`: the loss needs both the original
# values and the positions of the blind spots. `manipulator="median"` is N2V2's replacement
# (the median of the 11x11 neighbourhood without the centre pixel).

# %%
masking = dict(perc_pix=PERC_PIX, manipulator="median", radius=5, means=means, stds=stds)
train_data = N2VSequence([train_img], PATCH, batch_size=BATCH_SIZE, steps_per_epoch=STEPS_PER_EPOCH,
                         augment=True, seed=0, **masking)
x_val, y_val = validation_data([val_img], PATCH, div_by=4, seed=0, **masking)
x_batch, y_batch = train_data[0]
print(f"training batch: inputs {x_batch.shape}, targets+mask {y_batch.shape}, "
      f"{int(y_batch[..., 1].sum())} blind spots; validation: {x_val.shape}")


# %% [markdown]
# ## The N2V2 U-Net
#
# `build_n2v2_unet` returns an ordinary functional `keras.Model` that accepts images of any size
# divisible by `2**n_depth`. It uses built-in layers only, so a saved model loads without
# `n2v_tf` installed.

# %%
model = build_n2v2_unet(n_dim=2, n_channel_in=1, n_depth=2, kern_size=3, n_first=N_FIRST)
model.summary(line_length=100, print_fn=lambda line, **kw: None if QUICK else print(line))
print(f"{model.count_params():,} parameters")


# %% [markdown]
# ## Compile and train
#
# The masked loss `n2v_mse` only looks at the blind spots, so the reported loss is the error of
# predicting a pixel from its surroundings. It does not go to zero: its floor is the noise
# variance (in normalised units). Any Keras callback works; here we keep the best weights,
# halve the learning rate on plateaus and log the history to a CSV file.

# %%
model.compile(optimizer=keras.optimizers.Adam(learning_rate=4e-4), loss=n2v_mse, metrics=[n2v_abs])
callbacks = [
    keras.callbacks.ModelCheckpoint(str(OUTPUT_DIR / "best.weights.h5"), monitor="val_loss", save_best_only=True,
                                    save_weights_only=True),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5, verbose=1),
    keras.callbacks.CSVLogger(str(OUTPUT_DIR / "history.csv")),
]
t0 = time.perf_counter()
history = model.fit(train_data, validation_data=(x_val, y_val), validation_batch_size=BATCH_SIZE, epochs=EPOCHS,
                    callbacks=callbacks, verbose=2)
print(f"training took {time.perf_counter() - t0:.0f} s, best val_loss {min(history.history['val_loss']):.4f}")


# %% [markdown]
# The training curves (`n2v_tf.qc.plot_history` takes the `History` that `fit` returns): training
# and validation loss should decrease and level off together; the right panel shows the learning
# rate that `ReduceLROnPlateau` lowered.

# %%
from n2v_tf.qc import plot_before_after, plot_history

plot_history(history, path=OUTPUT_DIR / "training_curves.png")
show(OUTPUT_DIR / "training_curves.png")


# %% [markdown]
# ## Denoise the image
#
# Load the best weights, normalise the whole image like the training data, predict, and undo the
# normalisation. (256 is divisible by `2**n_depth = 4`; other sizes need padding, which
# `n2v_tf.N2V.predict` does for you, together with tiling.)

# %%
model.load_weights(str(OUTPUT_DIR / "best.weights.h5"))
x = (noisy - means[0]) / stds[0]
denoised = model.predict(x[np.newaxis, ..., np.newaxis], verbose=0)[0, ..., 0] * stds[0] + means[0]
tifffile.imwrite(OUTPUT_DIR / "denoised.tif", denoised.astype(np.float32))
print(f"PSNR noisy:    {psnr(clean, noisy):.2f} dB")
print(f"PSNR denoised: {psnr(clean, denoised):.2f} dB")
plot_before_after([noisy, denoised], titles=["noisy", "N2V2 (model.fit)"], reference=clean,
                  crop=(slice(64, 192), slice(64, 192)), path=OUTPUT_DIR / "before_after.png")
show(OUTPUT_DIR / "before_after.png")


# %% [markdown]
# ## Save and reload the model
#
# The `.keras` file holds the architecture and the weights. Reloading with `compile=False` needs
# no custom object (the losses are only needed to continue training, and they are registered
# with Keras when `n2v_tf` is imported).

# %%
model_path = OUTPUT_DIR / "model.keras"
model.save(model_path)
reloaded = keras.models.load_model(model_path, compile=False)
again = reloaded.predict(x[np.newaxis, ..., np.newaxis], verbose=0)[0, ..., 0] * stds[0] + means[0]
print(f"reloaded '{model_path.name}': max |difference| of the predictions = {np.abs(again - denoised).max():.2e}")
assert np.allclose(again, denoised, atol=1e-4)


# %% [markdown]
# ## Next steps
#
# * `n2v_tf.N2V` does all of the above (plus tiling, test-time augmentation and n2v 0.3.x model
#   folders) in a few lines, and `n2v-tf train` / `n2v-tf predict` do it from the command line.
# * For 3D data, pass `n_dim=3` and 3D patch shapes; for noise that is correlated along an axis,
#   pass a structN2V mask (`struct_mask=`) to `N2VSequence` and `validation_data`.
