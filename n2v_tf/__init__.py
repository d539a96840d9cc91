"""n2v_tf: Noise2Void, N2V2 and structN2V for TensorFlow 2.16+ / Keras 3.

A CSBDeep-compatible home for the Noise2Void family of self-supervised denoisers, with the API of
``n2v`` 0.3.x: notebooks only change their import lines, and old model folders load.

>>> from n2v_tf import N2VConfig, N2V, N2V_DataGenerator  # doctest: +SKIP
"""
import importlib
from importlib.metadata import PackageNotFoundError, version as _version

# NumPy-only modules are imported eagerly; the ones that need TensorFlow/Keras load on first use, so that
# `import n2v_tf` (and CLI commands such as `analyze-noise`) start quickly.
from .analysis import mask_literal, plot_autocorrelation, struct_mask, suggest_struct_mask
from .config import N2VConfig
from .masking import (MANIPULATORS, manipulate_val_data, mask_batch, pm_identity, pm_mean, pm_median,
                      pm_normal_additive, pm_normal_fitted, pm_normal_withoutCP, pm_uniform_withCP,
                      pm_uniform_withoutCP, stratified_coords, tta_backward, tta_forward)
from .qc import (autocorrelation, plot_before_after, plot_history, plot_noise_model, plot_orthogonal, plot_residual,
                 psnr, qc_report, ssim)

_LAZY = {
    "N2V": "models", "train_pn2v_bootstrapped": "models", "PN2VBootstrapResult": "models",
    "N2V_DataGenerator": "data", "N2VSequence": "data", "validation_data": "data",
    "guess_axes": "io", "load_images": "io", "check_images": "io", "open_array": "io",
    "predict_blocks": "large", "predict_dask": "large",
    "n2v_mse": "losses", "n2v_abs": "losses", "loss_mse": "losses", "loss_mae": "losses",
    "build_unet": "nets", "build_n2v_unet": "nets", "build_n2v2_unet": "nets",
    "HistogramNoiseModel": "noise_models", "GaussianMixtureNoiseModel": "noise_models",
    "bootstrap_noise_model": "noise_models",
    "export_bioimageio": "export", "import_bioimageio": "export", "validate_bioimageio": "export",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'n2v_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

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
    "autocorrelation", "psnr", "ssim", "plot_history", "plot_before_after", "plot_orthogonal", "plot_residual",
    "plot_noise_model", "qc_report", "guess_axes", "load_images", "check_images", "open_array", "predict_blocks", "predict_dask",
    "struct_mask", "suggest_struct_mask", "mask_literal", "plot_autocorrelation",
    "HistogramNoiseModel", "GaussianMixtureNoiseModel", "bootstrap_noise_model", "train_pn2v_bootstrapped",
    "PN2VBootstrapResult",
    "export_bioimageio", "import_bioimageio", "validate_bioimageio",
]
