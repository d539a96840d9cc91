"""n2v_tf: Noise2Void, N2V2 and structN2V for TensorFlow 2.16+ / Keras 3.

A CSBDeep-compatible home for the Noise2Void family of self-supervised denoisers, with the API of
``n2v`` 0.3.x: notebooks only change their import lines, and old model folders load.

>>> from n2v_tf import N2VConfig, N2V, N2V_DataGenerator  # doctest: +SKIP
"""
from importlib.metadata import PackageNotFoundError, version as _version

from .analysis import mask_literal, plot_autocorrelation, struct_mask, suggest_struct_mask
from .config import N2VConfig
from .data import N2V_DataGenerator, N2VSequence, validation_data
from .losses import loss_mae, loss_mse, n2v_abs, n2v_mse
from .masking import (MANIPULATORS, manipulate_val_data, mask_batch, pm_identity, pm_mean, pm_median,
                      pm_normal_additive, pm_normal_fitted, pm_normal_withoutCP, pm_uniform_withCP,
                      pm_uniform_withoutCP, stratified_coords, tta_backward, tta_forward)
from .models import N2V
from .nets import build_n2v2_unet, build_n2v_unet, build_unet
from .qc import autocorrelation, psnr

try:
    __version__ = _version("n2v_tf")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "N2VConfig", "N2V", "N2V_DataGenerator", "N2VSequence", "validation_data",
    "manipulate_val_data", "mask_batch", "stratified_coords", "MANIPULATORS", "tta_forward", "tta_backward",
    "pm_identity", "pm_mean", "pm_median", "pm_normal_additive", "pm_normal_fitted", "pm_normal_withoutCP",
    "pm_uniform_withCP", "pm_uniform_withoutCP",
    "n2v_mse", "n2v_abs", "loss_mse", "loss_mae",
    "build_unet", "build_n2v_unet", "build_n2v2_unet",
    "autocorrelation", "psnr", "struct_mask", "suggest_struct_mask", "mask_literal", "plot_autocorrelation",
]
