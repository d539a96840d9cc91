"""BioImage.IO model zoo export and import (model description spec 0.5) of N2V, N2V2, structN2V and PN2V models.

:func:`export_bioimageio` writes one ``.bioimage.io.zip`` package that runs outside Python:

- weights ``keras_v3`` (the original ``.keras`` network, no optimizer), ``keras_hdf5`` (legacy full-model
  ``.h5``), ``tensorflow_saved_model_bundle`` (a frozen TF1-style graph without variables and with a
  ``serving_default`` signature ``input -> output``, for deepImageJ's TensorFlow engines) and ``onnx``
  (opset 17, for deepImageJ's ONNX engine);
- the normalisation of the model as fixed pre-processing (``fixed_zero_mean_unit_variance`` with the
  training means/stds) and its inverse as post-processing (``scale_linear``), so the package takes and
  returns raw intensities while the network sees normalised data;
- input axes ``b,(z),y,x,c`` with a parameterized size (``min + n*step``, ``step = 2**unet_n_depth``) and an
  output halo of the network's receptive-field radius, so tiled prediction is seamless;
- float32 test tensors, a cover image (noisy | denoised), a ``README.md`` with a ``# Validation`` section,
  authors, license, tags, the citations of the algorithm used, and ``config.json`` of the model.

PN2V models (``config.probabilistic=True``) are exported with their noise model inside the network
(:func:`pn2v_mmse_network`): the graph turns the ``K`` signal samples of the U-Net and the noise-model
likelihood of the raw input into the MMSE estimate, so the package returns the denoised image, not the
samples. The noise model file is attached (``noise_model_gmm.npz`` / ``noise_model_histogram.npz``).

Before anything is written at ``path``, every weight format is tested with ``bioimageio.core.test_model``
in a fresh Python process that never imports ``n2v_tf`` (``KERAS_BACKEND=tensorflow``). The package is
built in a temporary folder and moved into place only when all tests passed.

:func:`import_bioimageio` turns such a package back into a normal model folder (``config.json``,
``weights_best.h5``, ``weights_last.h5``), so that training can continue.

Needs the optional dependencies: ``pip install "n2v_tf[bioimageio]"``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .export_layers import pn2v_mmse_network  # noqa: F401  (the exported PN2V network; public here since 0.1)

__all__ = [
    "ONNX_OPSET",
    "WEIGHT_FORMATS",
    "BioImageIOValidationError",
    "export_bioimageio",
    "export_tf_compat",
    "import_bioimageio",
    "package_geometry",
    "pn2v_mmse_network",
    "validate_bioimageio",
]

#: Weight formats written by default (in this order; the first is the original, the others are converted).
WEIGHT_FORMATS = ("keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle", "onnx")
#: ONNX opset: deepImageJ's onnxruntime-Java 1.12 runs opsets up to 17.
ONNX_OPSET = 17
INSTALL_HINT = 'pip install "n2v_tf[bioimageio]"'

_FILES = {  # file names inside the package
    "keras_v3": "n2v_model.keras",
    "keras_hdf5": "n2v_model.h5",
    "tensorflow_saved_model_bundle": "tf_saved_model_bundle.zip",
    "onnx": "n2v_model.onnx",
}
_CONFIG_NAME = "config.json"

CITATIONS = {
    "n2v": (("A. Krull, T.-O. Buchholz, F. Jug. Noise2Void - Learning Denoising from Single Noisy Images. "
             "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR), 2019, pp. 2129-2137."),
            "10.1109/CVPR.2019.00223"),
    "n2v2": (("E. Hoeck, T.-O. Buchholz, A. Brachmann, F. Jug, A. Freytag. N2V2 - Fixing Noise2Void Checkerboard "
              "Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture. "
              "ECCV 2022 Workshops, pp. 503-518."), "10.1007/978-3-031-25069-9_33"),
    "structn2v": (("C. Broaddus, A. Krull, M. Weigert, U. Schmidt, G. Myers. Removing Structured Noise with "
                   "Self-Supervised Blind-Spot Networks. IEEE International Symposium on Biomedical Imaging "
                   "(ISBI), 2020, pp. 159-163."), "10.1109/ISBI45749.2020.9098336"),
    "pn2v": (("A. Krull, T. Vicar, M. Prakash, M. Lalit, F. Jug. Probabilistic Noise2Void: Unsupervised "
              "Content-Aware Denoising. Frontiers in Computer Science 2:5, 2020."), "10.3389/fcomp.2020.00005"),
    "ppn2v": (("M. Prakash, M. Lalit, P. Tomancak, A. Krull, F. Jug. Fully Unsupervised Probabilistic Noise2Void. "
               "IEEE International Symposium on Biomedical Imaging (ISBI), 2020, pp. 154-158."),
              "10.1109/ISBI45749.2020.9098612"),
}


class BioImageIOValidationError(RuntimeError):
    """``bioimageio.core.test_model`` failed for at least one weight format; nothing was written.

    Attributes
    ----------
    summaries : dict
        ``{weight_format: {'status': 'passed'|'failed', 'summary': text}}``.
    """

    def __init__(self, message: str, summaries: Mapping[str, Mapping[str, str]]):
        super().__init__(message)
        self.summaries = dict(summaries)


# --------------------------------------------------------------------------- helpers

def _require(*modules: str, purpose: str) -> None:
    import importlib
    missing = []
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:  # pragma: no cover - depends on the environment
            missing.append(f"{mod} ({e})")
    if missing:
        raise ImportError(f"{purpose} needs the optional dependencies of n2v_tf's 'bioimageio' extra; missing: "
                          f"{', '.join(missing)}. Install them with: {INSTALL_HINT}")


def _algorithm(config, noise_model=None) -> tuple[str, list[str]]:
    """Name of the method and the citation keys of the algorithm actually used.

    PN2V adds Krull et al. 2020 and, with a Gaussian mixture noise model (the parametric noise model and the
    bootstrapping of Prakash et al.), Prakash et al. 2020.
    """
    from .noise_models import GaussianMixtureNoiseModel
    n2v2 = bool(config.blurpool or config.skip_skipone)
    struct = config.structN2Vmask is not None
    pn2v = bool(config.probabilistic)
    keys = (["n2v"] + (["pn2v"] if pn2v else [])
            + (["ppn2v"] if pn2v and isinstance(noise_model, GaussianMixtureNoiseModel) else [])
            + (["n2v2"] if n2v2 else []) + (["structn2v"] if struct else []))
    name = ("struct" if struct else "") + ("PN2V" if pn2v else "N2V") + ("2" if n2v2 else "")
    return name, keys


def _noise_model_kind(noise_model) -> str:
    from .noise_models import noise_model_kind
    try:
        return noise_model_kind(noise_model)
    except TypeError as e:
        raise TypeError(f"{e} (their parameters are written into the exported network)") from None


def package_geometry(config) -> dict[str, int]:
    """Input size rules of the exported network.

    Returns
    -------
    dict
        ``step`` (``2**unet_n_depth``: input sizes must be multiples), ``halo`` (receptive-field radius, cropped
        from each side of a tile, rounded up to a multiple of ``step``) and ``min`` (smallest multiple of ``step``
        larger than ``2*halo``).

    Notes
    -----
    A U-Net gives the same output for a pixel only if its pooling grid is the same, i.e. if tiles (and the
    padding that bioimageio.core adds around a whole image: the halo on each side) move the image by multiples
    of ``step``. With ``halo`` and all valid sizes multiples of ``step``, tiled, padded and plain predictions agree
    away from the image border.
    """
    from .nets import config_receptive_field
    step = 2 ** int(config.unet_n_depth)
    radius = int(config_receptive_field(config))
    halo = step * math.ceil(radius / step)
    return {"step": step, "halo": halo, "min": step * math.ceil((2 * halo + 1) / step)}


def _is_trained(model) -> bool:
    if (model.basedir is not None and model.logdir.is_dir()
            and (any(model.logdir.glob("*.h5")) or any(model.logdir.glob("*.hdf5")))):
        return True
    opt = getattr(model.keras_model, "optimizer", None)
    if opt is not None:
        import keras
        try:
            return int(keras.ops.convert_to_numpy(opt.iterations)) > 0
        except (AttributeError, TypeError, ValueError):  # pragma: no cover
            return False
    return False


def _check_model(model) -> None:
    from .models import N2V
    if not isinstance(model, N2V):
        raise TypeError(f"model must be an n2v_tf.N2V, got {type(model).__name__}")
    if model.config.probabilistic:
        if model.noise_model is None:
            raise ValueError("a PN2V model (config.probabilistic=True) is exported with its noise model (the package "
                             "computes the MMSE estimate), but this model has none: load it from a model folder "
                             "that holds noise_model_*.npz (N2V(None, name, basedir)) or pass "
                             "N2V(config, name, basedir, noise_model=...)")
        _noise_model_kind(model.noise_model)
    if not _is_trained(model):
        where = (f"its model folder {model.logdir} holds no weight file" if model.basedir is not None
                 else "it has no model folder and was not trained in this session")
        raise ValueError(f"the model was never trained ({where}): train it first (model.train) or load a trained "
                         "model with N2V(None, name, basedir)")


def _normalize_axes(model, test_img: np.ndarray, axes: str | None) -> str:
    from csbdeep.utils import axes_check_and_normalize
    c = model.config
    spatial = "ZYX" if c.n_dim == 3 else "YX"
    if axes is None:
        if test_img.ndim == c.n_dim:
            axes = spatial
        elif test_img.ndim == c.n_dim + 1:
            axes = spatial + "C"
        else:
            raise ValueError(f"test_img has shape {test_img.shape}, which does not fit this {c.n_dim}D model "
                             f"(axes {spatial!r} or {spatial + 'C'!r}); pass axes=...")
    try:
        axes = axes_check_and_normalize(axes, test_img.ndim)
    except ValueError as e:
        raise ValueError(f"axes {axes!r} do not fit test_img of shape {test_img.shape}: {e}") from None
    if set(axes) - {"C"} != set(spatial) or len(axes) != test_img.ndim:
        raise ValueError(f"axes {axes!r} do not fit this {c.n_dim}D model: the test image needs the axes "
                         f"{spatial!r} and, optionally, 'C' (one image, no 'S'/'T' axis)")
    n_ch = test_img.shape[axes.index("C")] if "C" in axes else 1
    if n_ch != c.n_channel_in:
        raise ValueError(f"test_img has {n_ch} channel(s) (axes {axes!r}, shape {test_img.shape}) but the model "
                         f"expects {c.n_channel_in}" + ("; add 'C' to axes" if "C" not in axes else ""))
    return axes


def _prepare_test_input(model, test_img, axes: str | None, max_size: int | None,
                        pad: bool = False) -> tuple[np.ndarray, str | None]:
    """Test image -> (float32 ``(Z)YXC`` crop whose spatial sizes are valid input sizes of the package, note).

    An axis shorter than the minimum input size is refused, or with ``pad`` reflect-padded to it (the note says
    so, for the package's README)."""
    if test_img is None:
        raise ValueError("test_img is required: an image (raw intensities, like the training data) that the "
                         "package uses as its test input")
    img = np.asarray(test_img)
    if img.dtype.kind not in "fiub":
        raise ValueError(f"test_img must be a numeric array, got dtype {img.dtype}")
    axes = _normalize_axes(model, img, axes)
    c = model.config
    spatial = "ZYX" if c.n_dim == 3 else "YX"
    order = [axes.index(a) for a in spatial] + ([axes.index("C")] if "C" in axes else [])
    x = np.transpose(img, order).astype(np.float32)
    if "C" not in axes:
        x = x[..., np.newaxis]
    if not np.isfinite(x).all():
        raise ValueError("test_img contains NaN or infinite values")
    geo = package_geometry(c)
    cap = max_size if max_size is not None else (256 if c.n_dim == 2 else 64)
    small = {a: s for a, s in zip(spatial, x.shape[:-1]) if s < geo["min"]}
    note = None
    if small and not pad:
        a, s = next(iter(small.items()))
        raise ValueError(
            f"test_img is too small: axis {a} has {s} pixels, the exported model needs at least {geo['min']} "
            f"(sizes min + n*{geo['step']} with min > 2*halo = {2 * geo['halo']}, the receptive-field radius "
            "of the network on both sides); give a larger image, or pass pad_test_img=True to reflect-pad it")
    if small:
        widths = [((geo["min"] - s) // 2, geo["min"] - s - (geo["min"] - s) // 2) if a in small else (0, 0)
                  for a, s in zip(spatial, x.shape[:-1])] + [(0, 0)]
        x = np.pad(x, widths, mode="reflect" if min(x.shape[:-1]) > 1 else "edge")
        note = (f"The test image given at export ({' x '.join(str(s) for s in np.transpose(img, order).shape[:len(spatial)])}"
                f" pixels, {spatial}) was smaller than the network's minimum input size {geo['min']}; it was "
                f"reflect-padded to {' x '.join(str(s) for s in x.shape[:-1])} for the test tensors.")
    slices = []
    for a, s in zip(spatial, x.shape[:-1]):
        target = min(s, max(cap, geo["min"]))
        target = geo["min"] + (target - geo["min"]) // geo["step"] * geo["step"]
        start = (s - target) // 2
        slices.append(slice(start, start + target))
    return np.ascontiguousarray(x[tuple(slices)]), note


@contextlib.contextmanager
def _quiet_tf():
    """Silence TensorFlow/absl deprecation chatter (legacy HDF5, TF1 SavedModel builder) during the export."""
    import logging
    loggers = [logging.getLogger(n) for n in ("tensorflow", "absl", "tf2onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _clean_network(model):
    """A float32 copy of the network without optimizer or compiled loss (nothing that needs n2v_tf to load; a
    mixed-precision network is exported in float32)."""
    import keras

    from .nets import float32_copy
    net = keras.Model.from_config(model.keras_model.get_config())
    net.set_weights(model.keras_model.get_weights())
    return float32_copy(net)


#: bioimageio.core's ``fixed_zero_mean_unit_variance`` divides by ``std + eps`` with this ``eps``.
BIOIMAGEIO_EPS = 1e-6
#: The smallest ``std`` the model description accepts (spec 0.5: ``std >= 1e-6``).
BIOIMAGEIO_MIN_STD = 1e-6


def _preprocessing_stds(stds: Sequence[float]) -> list[float]:
    """The ``std`` values of the package's pre-processing: ``std - eps``, so that bioimageio.core's division by
    ``std + eps`` is the division by ``std`` of :func:`n2v_tf.config.normalize` (and of ``N2V.predict``)."""
    out = []
    for i, s in enumerate(stds):
        pre = float(s) - BIOIMAGEIO_EPS
        if pre < BIOIMAGEIO_MIN_STD:
            raise ValueError(f"config.stds[{i}] = {float(s):.3g} is too small for a BioImage.IO package: its "
                             f"pre-processing divides by std + {BIOIMAGEIO_EPS:g} and the description needs "
                             f"std >= {BIOIMAGEIO_MIN_STD:g}, so the training std must be at least "
                             f"{BIOIMAGEIO_MIN_STD + BIOIMAGEIO_EPS:g}. Rescale the data (e.g. to photon counts or "
                             "0..65535) and train again")
        out.append(pre)
    return out


def _predict_normalised(net, x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    from .config import denormalize, normalize
    return denormalize(net.predict(normalize(x, means, stds)[np.newaxis], verbose=0)[0], means, stds)


def _write_saved_model_bundle(net, n_dim: int, n_channel: int, out_zip: Path, workdir: Path) -> list[str]:
    """Frozen (variable-free) TF1-style SavedModel with signature ``serving_default: input -> {output}``, zipped.

    Returns the sorted list of graph op types (for the documentation)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([None] * (n_dim + 1) + [n_channel], tf.float32, name="input")
    concrete = tf.function(lambda t: net(t, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    folder = workdir / "saved_model"
    graph = tf.Graph()
    with graph.as_default():
        inp = tf.compat.v1.placeholder(tf.float32, [None] * (n_dim + 1) + [n_channel], name="input")
        (out,) = tf.graph_util.import_graph_def(graph_def, input_map={frozen.inputs[0].name: inp},
                                                return_elements=[frozen.outputs[0].name], name="n2v")
        out = tf.identity(out, name="output")
        with tf.compat.v1.Session(graph=graph) as sess, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            builder = tf.compat.v1.saved_model.builder.SavedModelBuilder(str(folder))
            signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={"input": inp}, outputs={"output": out})
            builder.add_meta_graph_and_variables(
                sess, [tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={tf.compat.v1.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY:
                                   signature},
                strip_default_attrs=True)
            builder.save()
        ops = sorted({n.op for n in graph.as_graph_def().node})
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:  # the SavedModel's contents, not a folder
        for root, dirs, files in os.walk(folder):
            rel = Path(root).relative_to(folder)
            if str(rel) != "." and not files and not dirs:
                zf.writestr(str(rel.as_posix()) + "/", b"")  # keep the (empty) variables/ folder
            for f in files:
                zf.write(Path(root) / f, (rel / f).as_posix())
    shutil.rmtree(folder)
    return ops


def _write_onnx(net, n_dim: int, n_channel: int, path: Path) -> None:
    import logging

    import onnx
    import tensorflow as tf
    import tf2onnx
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = (tf.TensorSpec([None] * (n_dim + 1) + [n_channel], tf.float32, name="input"),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_keras(net, input_signature=spec, opset=ONNX_OPSET)
    old = proto.graph.output[0].name
    if old != "output":  # name the output like the tensor of the description
        for node in proto.graph.node:
            node.output[:] = ["output" if o == old else o for o in node.output]
            node.input[:] = ["output" if i == old else i for i in node.input]
        proto.graph.output[0].name = "output"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _cover(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Cover image: noisy | denoised (first channel; middle slice of a stack), one contrast for both."""
    from PIL import Image
    a, b = x[..., 0], y[..., 0]
    if a.ndim == 3:
        a, b = a[a.shape[0] // 2], b[b.shape[0] // 2]
    lo, hi = np.percentile(b, [0.5, 99.8])
    if hi <= lo:
        lo, hi = float(b.min()), float(b.max()) + 1e-6

    def u8(im):
        return (np.clip((im - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)

    gap = np.full((a.shape[0], max(2, a.shape[1] // 64)), 255, np.uint8)
    Image.fromarray(np.concatenate([u8(a), gap, u8(b)], axis=1)).save(path)


def _authors(authors) -> list[dict]:
    if authors is None:
        warnings.warn("export_bioimageio: no authors given; the BioImage.IO model zoo asks for the authors of the "
                      "model (authors=['Jane Doe', ...])", stacklevel=3)
        return []
    if isinstance(authors, str):
        authors = [a.strip() for a in authors.split(",") if a.strip()]
    out = []
    for a in authors:
        if isinstance(a, str):
            out.append({"name": a})
        elif isinstance(a, Mapping) and "name" in a:
            out.append(dict(a))
        else:
            raise ValueError(f"authors: each author must be a name or a dict with 'name' (and optionally "
                             f"'affiliation', 'email', 'github_user', 'orcid'), got {a!r}")
    return out


def _model_name(name: str | None, model, algorithm: str) -> str:
    if name is None:
        name = f"{algorithm} {model.name}"
    clean = re.sub(r"[^A-Za-z0-9_+\- ()]", "_", str(name)).strip()
    if len(clean) < 5:
        clean = f"{algorithm} {clean}".strip()
    if len(clean) < 5:
        clean = f"{clean} model"
    return clean[:128]


def _weight_format_lines(ops: Sequence[str] | None) -> dict[str, str]:
    """One README line per weight format (the TensorFlow bundle's with its graph ops)."""
    fmt_lines = {
        "keras_v3": "- `keras_v3`: the original Keras 3 network (`.keras`), built-in layers only.",
        "keras_hdf5": "- `keras_hdf5`: the same network as a legacy Keras HDF5 full model (no optimizer).",
        "tensorflow_saved_model_bundle": (
            "- `tensorflow_saved_model_bundle`: a frozen TensorFlow graph (no variables) in a SavedModel with the "
            "signature `serving_default` (`input` -> `output`), for deepImageJ's TensorFlow engines"
            + (f"; graph ops: {', '.join(o for o in ops if o not in ('Const', 'NoOp', 'Placeholder'))}." if ops
               else ".")),
        "onnx": f"- `onnx`: ONNX opset {ONNX_OPSET} (converted with tf2onnx), for deepImageJ's ONNX engine.",
    }
    return fmt_lines


def _method_text(c, algorithm: str, noise_model) -> tuple[str, str, str, str]:
    """README pieces that depend on the method: (method paragraph, output, loss, PN2V lines)."""
    struct_note = " and, with the structN2V mask, noise correlated along the mask" if c.structN2Vmask else ""
    if noise_model is None:
        method = f"""\
Self-supervised denoising with **{algorithm}**: the network was trained on noisy images only, by predicting
masked ("blind-spot") pixels from their surroundings. It removes noise that is independent between pixels
(shot and read noise){struct_note}."""
        output = "the denoised image"
        loss = f"loss masked {c.train_loss}"
        pn2v_lines = ""
    else:
        from .noise_models import noise_model_file
        kind = _noise_model_kind(noise_model)
        lo, hi = noise_model.signal_range
        if kind == "gmm":
            nm_text = (f"Gaussian mixture (Prakash et al. 2020) of {noise_model.n_gaussian} component(s) whose "
                       f"weights, means and variances are polynomials of degree {noise_model.n_coeff - 1} of the "
                       f"signal, fitted for signals in [{lo:.6g}, {hi:.6g}] (extrapolated outside)")
        else:
            nm_text = (f"histogram of {noise_model.bins} x {noise_model.bins} bins over [{lo:.6g}, {hi:.6g}] "
                       "(Krull et al. 2020; signals and observations outside are clamped to the edge bins)")
        method = f"""\
Self-supervised denoising with **{algorithm}** (probabilistic Noise2Void): the network was trained on noisy
images only, to predict K = {c.pn2v_samples} samples of the signal at masked ("blind-spot") pixels from their
surroundings, scored by a noise model p(x|s) of the noisy value x given the signal s.
The package computes the **MMSE estimate** (posterior mean) itself: at every pixel, each sample s_k is weighted by
the noise-model likelihood of the pixel's noisy value, w_k = p(x|s_k) / sum_j p(x|s_j), and the output is
sum_k w_k s_k. It removes noise that is independent between pixels (shot and read noise){struct_note}."""
        output = "the denoised image (the PN2V MMSE estimate)"
        loss = "loss: PN2V negative log-likelihood of the blind-spot pixels under the noise model"
        pn2v_lines = (
            f"- Noise model: {nm_text}; attached as `{noise_model_file(kind)}` (n2v_tf/ppn2v `.npz` layout).\n"
            f"- MMSE layers after the U-Net's {c.pn2v_samples} output channels: raw-unit samples, log p(x|s_k) of the "
            "noise model, softmax over the samples, weighted mean; Keras built-in layers only (the logarithms of "
            "the variances or densities by Halley iterations, exact to float32 rounding). Memory and time grow "
            "with the number of samples: use smaller tiles than for N2V.\n")
    return method, output, loss, pn2v_lines


def _documentation(path: Path, *, name: str, description: str, algorithm: str, cite_keys: Sequence[str],
                   config, geo: Mapping[str, int], weight_formats: Sequence[str], ops: Sequence[str] | None,
                   n2v_tf_version: str, noise_model=None, test_note: str | None = None) -> None:
    c = config
    spatial = "z, y, x" if c.n_dim == 3 else "y, x"
    means = ", ".join(f"{float(m):.6g}" for m in c.means)
    stds = ", ".join(f"{float(s):.6g}" for s in c.stds)
    arch = (f"U-Net, depth {c.unet_n_depth}, kernel {c.unet_kern_size}, {c.unet_n_first} filters in the first "
            f"level, batch norm {c.batch_norm}, residual {c.unet_residual}, blur-pool {c.blurpool}, no top skip "
            f"connection {c.skip_skipone}, one network per channel {c.single_net_per_channel}")
    struct = ("" if c.structN2Vmask is None else
              f"- structN2V mask: `{json.dumps(c.structN2Vmask)}` (hides the correlated-noise neighbours of each "
              "blind spot)\n")
    fmt_lines = _weight_format_lines(ops)
    refs = "\n".join(f"- {CITATIONS[k][0]} doi:{CITATIONS[k][1]}" for k in cite_keys)
    method, output, loss, pn2v_lines = _method_text(c, algorithm, noise_model)
    text = f"""\
# {name}

{description}

{method}
Exported with n2v_tf {n2v_tf_version}.

## Input and output

- Input `input`: raw intensities with axes `batch, {spatial}, channel` ({c.n_channel_in} channel(s)), float32.
  Spatial sizes must be `{geo['min']} + n * {geo['step']}` (n = 0, 1, 2, ...).
- Pre-processing (in the package): `fixed_zero_mean_unit_variance` per channel with the training statistics
  mean = [{means}], std = [{stds}] (the description stores std - {BIOIMAGEIO_EPS:g}, because bioimageio.core
  divides by std + {BIOIMAGEIO_EPS:g}: the network then sees exactly what it saw in training).
- Output `output`: {output} in the intensity units of the input (post-processing `scale_linear` with
  gain = std and offset = mean), same axes and size as the input.
- Halo: {geo['halo']} pixels per side (the receptive-field radius, rounded up to a multiple of {geo['step']}).
  For tiled prediction, let tiles overlap by the halo and crop it from each tile's output; tiled and untiled
  results then agree. Images of other sizes: pad them (e.g. by reflection) to a valid size and crop the output.

## Network and training

- Architecture: {arch}.
- Training: {c.train_epochs} epochs x {c.train_steps_per_epoch} steps, batch {c.train_batch_size}, patches
  {tuple(c.n2v_patch_shape)}, learning rate {c.train_learning_rate}, {loss}, {c.n2v_perc_pix}%
  blind-spot pixels, replacement `{c.n2v_manipulator}` (radius {c.n2v_neighborhood_radius}).
{struct}{pn2v_lines}- The full n2v_tf configuration is attached as `{_CONFIG_NAME}`.
{"" if test_note is None else chr(10) + test_note + chr(10)}
## Weights

{chr(10).join(fmt_lines[w] for w in weight_formats)}

## How to use

Python (n2v_tf): `from n2v_tf.export import import_bioimageio; model = import_bioimageio("model.bioimage.io.zip",
basedir="models")`, then `model.predict(img, axes="{'ZYX' if c.n_dim == 3 else 'YX'}")` or continue training.
Python (bioimageio.core, `KERAS_BACKEND=tensorflow`): `bioimageio predict model.bioimage.io.zip ...`.
Fiji: install deepImageJ, then *Plugins > deepImageJ > deepImageJ Run*, install the model from the zip file and
run it on an open image; choose the TensorFlow or ONNX engine.

# Validation

The package passed `bioimageio.core.test_model` (reproduction of the test output and inference at several input
sizes) for each of its weight formats when it was exported. To validate the model on your data:

1. Denoise a few images the network did not see in training and look at them next to the raw images.
2. If a noise-free reference exists (a long exposure, an average of many frames), report PSNR/SSIM of the raw and
   of the denoised image against it.
3. Without a reference, the residual `raw - denoised` should look like noise only (no structure of the sample);
   its autocorrelation (`n2v_tf.autocorrelation`) shows noise correlations the model could not remove.

Like every N2V model, it is specific to the kind of data (sample, microscope, noise level) it was trained on.

## References

{refs}
"""
    path.write_text(text, encoding="utf-8")


def _build_description(*, name: str, description: str, authors: list[dict], license: str,
                       tags: list[str], cite_keys: Sequence[str], config, geo: Mapping[str, int],
                       weight_formats: Sequence[str], files: Mapping[str, Path]):
    import keras
    import tensorflow as tf
    from bioimageio.spec.model import v0_5 as spec

    c = config
    means, stds = (v.tolist() for v in c.normalization())
    pre_stds = _preprocessing_stds(stds)
    space_ids = ["z", "y", "x"] if c.n_dim == 3 else ["y", "x"]
    channel_names = [f"channel{i}" for i in range(c.n_channel_in)]
    in_id = spec.TensorId("input")
    if c.n_channel_in == 1:
        pre = spec.FixedZeroMeanUnitVarianceDescr(
            kwargs=spec.FixedZeroMeanUnitVarianceKwargs(mean=means[0], std=pre_stds[0]))
        post = spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=stds[0], offset=means[0]))
    else:
        pre = spec.FixedZeroMeanUnitVarianceDescr(kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            axis=spec.AxisId("channel"), mean=means, std=pre_stds))
        post = spec.ScaleLinearDescr(kwargs=spec.ScaleLinearAlongAxisKwargs(
            axis=spec.AxisId("channel"), gain=stds, offset=means))
    inp = spec.InputTensorDescr(
        id=in_id, description="raw image",
        axes=[spec.BatchAxis()]
        + [spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=geo["min"], step=geo["step"]))
           for a in space_ids]
        + [spec.ChannelAxis(channel_names=channel_names)],
        test_tensor=spec.FileDescr(source=files["test_input"]),
        sample_tensor=spec.FileDescr(source=files["sample_input"]),
        preprocessing=[pre])
    out = spec.OutputTensorDescr(
        id=spec.TensorId("output"),
        description=("denoised image: PN2V MMSE estimate (posterior mean of the signal samples under the noise model)"
                     if c.probabilistic else "denoised image"),
        axes=[spec.BatchAxis()]
        + [spec.SpaceOutputAxisWithHalo(id=spec.AxisId(a), halo=geo["halo"],
                                         size=spec.SizeReference(tensor_id=in_id, axis_id=spec.AxisId(a)))
           for a in space_ids]
        + [spec.ChannelAxis(channel_names=channel_names)],
        test_tensor=spec.FileDescr(source=files["test_output"]),
        sample_tensor=spec.FileDescr(source=files["sample_output"]),
        postprocessing=[post])

    tf_version = spec.Version(tf.__version__)
    original = weight_formats[0] if "keras_v3" not in weight_formats else "keras_v3"
    entries: dict[str, Any] = {}
    for wf in weight_formats:
        parent = None if wf == original else original
        src = files[wf]
        if wf == "keras_v3":
            entries[wf] = spec.KerasV3WeightsDescr(source=src, keras_version=spec.Version(keras.__version__),
                                                   backend=("tensorflow", tf_version), parent=parent,
                                                   comment="Keras 3 network with built-in layers only")
        elif wf == "keras_hdf5":
            entries[wf] = spec.KerasHdf5WeightsDescr(source=src, tensorflow_version=tf_version, parent=parent,
                                                     comment="legacy Keras HDF5 full model, saved without optimizer")
        elif wf == "tensorflow_saved_model_bundle":
            entries[wf] = spec.TensorflowSavedModelBundleWeightsDescr(
                source=src, tensorflow_version=tf_version, parent=parent,
                comment="frozen graph (no variables), signature serving_default: input -> output")
        elif wf == "onnx":
            entries[wf] = spec.OnnxWeightsDescr(source=src, opset_version=ONNX_OPSET, parent=parent,
                                                comment="converted with tf2onnx")
    from . import __version__ as n2v_tf_version
    return spec.ModelDescr(
        name=name,
        description=description,
        authors=[spec.Author(**a) for a in authors],
        cite=[spec.CiteEntry(text=CITATIONS[k][0], doi=spec.Doi(CITATIONS[k][1])) for k in cite_keys],
        license=spec.LicenseId(license),
        tags=tags,
        documentation=spec.FileDescr(source=files["documentation"]),
        covers=[spec.FileDescr(source=files["cover"])],
        attachments=[spec.FileDescr(source=files[k]) for k in ("config", "noise_model") if k in files],
        inputs=[inp],
        outputs=[out],
        weights=spec.WeightsDescr(**entries),
        config=spec.Config(n2v_tf={"version": n2v_tf_version, "config_file": _CONFIG_NAME,
                                   **({"noise_model_file": files["noise_model"].name} if "noise_model" in files
                                      else {})}),
    )


# --------------------------------------------------------------------------- validation (fresh process)

_VALIDATE_SCRIPT = r"""
import json, os, sys, traceback
os.environ["KERAS_BACKEND"] = "tensorflow"
src, out_json = sys.argv[1], sys.argv[2]
formats = json.loads(sys.argv[3])
from bioimageio.core import test_model
res = {}
for wf in formats:
    try:
        s = test_model(src, weight_format=wf)
        failed = [d for d in s.details if d.status != "passed"]
        lines = [f"{d.name}: {d.status}" + "".join(f"\n    error {e.loc}: {e.msg}" for e in d.errors)
                 + "".join(f"\n    warning {w.loc}: {w.msg}" for w in d.warnings) for d in s.details]
        res[wf] = {"status": s.status, "summary": "\n".join(lines), "n_details": len(s.details),
                   "n_failed": len(failed)}
    except Exception:
        res[wf] = {"status": "failed", "summary": traceback.format_exc(), "n_details": 0, "n_failed": 1}
with open(out_json, "w") as f:
    json.dump(res, f)
"""


def validate_bioimageio(path: str | Path, weight_formats: Sequence[str] | None = None, *,
                        timeout: float | None = None) -> dict[str, dict]:
    """Run ``bioimageio.core.test_model`` on a package, per weight format, in a fresh Python process.

    The process never imports ``n2v_tf`` and runs with ``KERAS_BACKEND=tensorflow`` in a temporary working
    folder (bioimageio.core unpacks TensorFlow weights into the working folder).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.bioimage.io.zip`` package (or its ``rdf.yaml``/``bioimageio.yaml``).
    weight_formats : sequence of str, optional
        Formats to test; default: those of :data:`WEIGHT_FORMATS` present in the package.
    timeout : float, optional
        Seconds before the test process is stopped.

    Returns
    -------
    dict
        ``{weight_format: {'status': 'passed' | 'failed', 'summary': str, ...}}``.
    """
    _require("bioimageio.core", purpose="Testing a BioImage.IO package")
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if weight_formats is None:
        weight_formats = _formats_in_package(path)
    with tempfile.TemporaryDirectory(prefix="n2v_tf_bioimageio_test_") as work:
        out_json = Path(work) / "result.json"
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", _VALIDATE_SCRIPT, str(path), str(out_json),
                               json.dumps(list(weight_formats))], cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0 or not out_json.exists():
            tail = (proc.stdout + proc.stderr)[-4000:]
            return {wf: {"status": "failed", "summary": f"test process failed (exit {proc.returncode}):\n{tail}"}
                    for wf in weight_formats}
        return json.loads(out_json.read_text())


def _formats_in_package(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return list(WEIGHT_FORMATS)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    return [wf for wf in WEIGHT_FORMATS if _FILES[wf] in names]


# --------------------------------------------------------------------------- export

def export_bioimageio(model, path: str | Path, *, test_img: np.ndarray | None = None, axes: str | None = None,
                      name: str | None = None, description: str | None = None,
                      authors: Sequence[str | Mapping[str, str]] | str | None = None,
                      license: str = "BSD-3-Clause", tags: Sequence[str] | None = None, overwrite: bool = False,
                      weight_formats: Sequence[str] = WEIGHT_FORMATS, validate: bool = True,
                      max_test_size: int | None = None, pad_test_img: bool = False) -> Path:
    """Export a trained N2V / N2V2 / structN2V / PN2V model as one BioImage.IO package (spec 0.5, ``.zip``).

    Parameters
    ----------
    model : n2v_tf.N2V
        A trained model (its model folder holds weights, or it was trained in this session). A PN2V model
        needs its noise model (``model.noise_model``, a ``GaussianMixtureNoiseModel`` or
        ``HistogramNoiseModel``): the exported network computes the MMSE estimate
        (:func:`pn2v_mmse_network`) and the noise model file is attached.
    path : str or pathlib.Path
        Output file, ending in ``.zip`` (recommended: ``<name>.bioimage.io.zip``).
    test_img : numpy.ndarray
        Required. A raw image like the training data (one image, axes ``axes``); a centred crop of at most
        ``max_test_size`` pixels per axis, with a valid input size, becomes the package's test input, its
        prediction the test output and the cover image.
    axes : str, optional
        Axes of ``test_img``: ``'YX'``/``'ZYX'``, with ``'C'`` for channels (default: from ``test_img.ndim``).
    name, description : str, optional
        Name (5-128 characters of letters, digits, ``_+-()`` and spaces) and one-line description.
    authors : list of str or dict, or str
        Author names (or dicts with ``name``, ``affiliation``, ``email``, ``github_user``, ``orcid``); a string
        is split at commas (as in n2v).
    license : str
        SPDX license identifier of the weights.
    tags : sequence of str, optional
        Extra tags (``denoising``, ``n2v``, ``unet``, ``2d``/``3d``, ``tensorflow``, ... are always added).
    overwrite : bool
        Replace an existing file at ``path``.
    weight_formats : sequence of str
        A subset of :data:`WEIGHT_FORMATS`.
    validate : bool
        Run ``bioimageio.core.test_model`` for every weight format (fresh process) before writing ``path``.
    max_test_size : int, optional
        Largest test-image side (default 256 in 2D, 64 in 3D; at least the minimum input size).
    pad_test_img : bool
        Reflect-pad a test image that is smaller than the network's minimum input size to that size (noted in
        the package's README) instead of refusing it. ``N2V.export_TF`` does this, as n2v exported such images.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        Optional dependencies missing (``pip install "n2v_tf[bioimageio]"``).
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Untrained model, PN2V model without a noise model, missing/too small test image, wrong axes, bad
        arguments.
    TypeError
        ``model`` is not an ``N2V``, or its noise model is not one of n2v_tf's two classes.
    BioImageIOValidationError
        ``bioimageio.core`` rejected a weight format (the message holds the test summary).

    Nothing is written at ``path`` unless every step, including validation, succeeded.

    Notes
    -----
    A PN2V package runs the U-Net's ``pn2v_samples`` samples per pixel through the noise model inside the
    graph; memory and time grow with the number of samples (``K`` float32 values per pixel, several times
    over), so with the paper's 800 samples deepImageJ needs smaller tiles than for N2V.
    """
    path = Path(path)
    if not path.name.endswith(".zip"):
        raise ValueError(f"path must name a .zip file (e.g. 'my_model.bioimage.io.zip'), got '{path}'")
    weight_formats = _check_export_args(model, path, overwrite, weight_formats, validate)
    x, test_note = _prepare_test_input(model, test_img, axes, max_test_size, pad_test_img)
    c = model.config
    noise_model = model.noise_model if c.probabilistic else None
    algorithm, cite_keys = _algorithm(c, noise_model)
    geo = package_geometry(c)
    name = _model_name(name, model, algorithm)
    if description is None:
        description = _default_description(c, algorithm, noise_model)
    author_list = _authors(authors)
    tag_list = _tags(c, algorithm, noise_model, weight_formats, tags)

    from . import __version__ as n2v_tf_version

    work = Path(tempfile.mkdtemp(prefix="n2v_tf_export_"))
    try:
        net, files = _write_test_files(model, noise_model, x, work)
        ops = _write_weights(net, c, weight_formats, files, work)
        files["documentation"] = work / "README.md"
        _documentation(files["documentation"], name=name, description=description, algorithm=algorithm,
                       cite_keys=cite_keys, config=c, geo=geo, weight_formats=weight_formats, ops=ops,
                       n2v_tf_version=n2v_tf_version, noise_model=noise_model, test_note=test_note)

        from bioimageio.spec import save_bioimageio_package
        descr = _build_description(name=name, description=description, authors=author_list,
                                   license=license, tags=tag_list, cite_keys=cite_keys, config=c, geo=geo,
                                   weight_formats=weight_formats, files=files)
        package = work / "package.bioimage.io.zip"
        save_bioimageio_package(descr, output_path=package)

        if validate:
            _raise_unless_passed(validate_bioimageio(package, weight_formats), weight_formats, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from .io import atomic_path
        with atomic_path(path) as partial:
            shutil.copyfile(package, partial)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _check_export_args(model, path: Path, overwrite: bool, weight_formats, validate: bool) -> tuple[str, ...]:
    """Check everything that can be checked before work starts; return the weight formats as a tuple."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory; it is never replaced")
    if isinstance(weight_formats, str):
        weight_formats = (weight_formats,)
    weight_formats = tuple(dict.fromkeys(weight_formats))
    unknown = [w for w in weight_formats if w not in WEIGHT_FORMATS]
    if not weight_formats or unknown:
        raise ValueError(f"weight_formats must be a non-empty subset of {WEIGHT_FORMATS}, got {weight_formats}")
    _check_model(model)
    _preprocessing_stds(model.config.normalization()[1])
    _require("bioimageio.spec", purpose="BioImage.IO export")
    if "onnx" in weight_formats:
        _require("tf2onnx", "onnx", purpose="ONNX export")
    if validate:
        _require("bioimageio.core", *(("onnxruntime",) if "onnx" in weight_formats else ()),
                 purpose="Validation of the export")
    return weight_formats


def _default_description(c, algorithm: str, noise_model) -> str:
    if noise_model is None:
        return f"{algorithm} self-supervised denoising of {c.n_dim}D images with {c.n_channel_in} channel(s) (n2v_tf)."
    kind = "Gaussian mixture" if _noise_model_kind(noise_model) == "gmm" else "histogram"
    return (f"{algorithm} self-supervised denoising of {c.n_dim}D images: MMSE estimate from {c.pn2v_samples} "
            f"signal samples per pixel and a {kind} noise model (n2v_tf).")


def _tags(c, algorithm: str, noise_model, weight_formats: Sequence[str], extra: Sequence[str] | None) -> list[str]:
    tags = ["denoising", "n2v", "noise2void", "self-supervised", "unet", f"{c.n_dim}d", "tensorflow",
            "keras", "deepimagej"] + (["onnx"] if "onnx" in weight_formats else [])
    tags += [t for t, on in (("n2v2", algorithm.endswith("2")), ("structn2v", c.structN2Vmask is not None)) if on]
    if noise_model is not None:
        tags += ["pn2v", "probabilistic", "noise-model", _noise_model_kind(noise_model)]
    return list(dict.fromkeys(tags + [str(t) for t in (extra or [])]))


def _write_test_files(model, noise_model, x: np.ndarray, work: Path):
    """The exported network and the package's data files (test/sample tensors, cover, config, noise model)."""
    import tifffile
    c = model.config
    means, stds = c.normalization()
    files: dict[str, Path] = {}
    net = _clean_network(model)
    if noise_model is not None:
        from .noise_models import save_noise_model
        net = pn2v_mmse_network(net, noise_model, means[0], stds[0])
        files["noise_model"] = Path(save_noise_model(work, noise_model))
    y = _predict_normalised(net, x, means, stds)
    for key, arr in (("input", x), ("output", y)):
        files[f"test_{key}"] = work / f"test_{key}.npy"
        np.save(files[f"test_{key}"], arr[np.newaxis])
        files[f"sample_{key}"] = work / f"sample_{key}.tif"
        tifffile.imwrite(files[f"sample_{key}"], np.squeeze(arr, -1) if arr.shape[-1] == 1 else arr)
    files["cover"] = work / "cover.png"
    _cover(x, y, files["cover"])
    files["config"] = work / _CONFIG_NAME
    files["config"].write_text(json.dumps(json.loads(json.dumps(vars(c))), indent=2))
    return net, files


def _write_weights(net, c, weight_formats: Sequence[str], files: dict, work: Path) -> list[str] | None:
    """Write each weight format; return the graph ops of the TensorFlow bundle (for the README), if written."""
    import keras
    ops = None
    for wf in weight_formats:
        files[wf] = work / _FILES[wf]
        with _quiet_tf():
            if wf == "keras_v3":
                net.save(files[wf])
            elif wf == "keras_hdf5":
                keras.saving.save_model(net, str(files[wf]), include_optimizer=False)
            elif wf == "tensorflow_saved_model_bundle":
                ops = _write_saved_model_bundle(net, c.n_dim, c.n_channel_in, files[wf], work)
            elif wf == "onnx":
                _write_onnx(net, c.n_dim, c.n_channel_in, files[wf])
    return ops


def _raise_unless_passed(results: Mapping[str, Mapping[str, str]], weight_formats: Sequence[str], path: Path) -> None:
    failed = [wf for wf in weight_formats if results.get(wf, {}).get("status") != "passed"]
    if failed:
        text = "\n\n".join(f"== {wf}: {results.get(wf, {}).get('status', 'missing')}\n"
                           f"{results.get(wf, {}).get('summary', '')}" for wf in failed)
        raise BioImageIOValidationError(
            f"bioimageio.core.test_model failed for weight format(s) {', '.join(failed)}; nothing was "
            f"written to {path}.\n{text}", results)


def export_tf_compat(model, name: str, description: str, authors, test_img: np.ndarray, axes: str,
                     patch_shape: Sequence[int] | None = None, license: str = "BSD-3-Clause",
                     result_path: str | Path | None = None, **kwargs) -> Path | None:
    """n2v 0.3.3's ``N2V.export_TF(name, description, authors, test_img, axes, patch_shape, license, result_path)``.

    ``result_path`` defaults to ``<model folder>/export.bioimage.io.zip``. A ``result_path`` that does not end in
    ``.zip`` is a folder, as in n2v: it is created if needed and the package is written to
    ``<folder>/<folder name>.bioimage.io.zip``. A test image smaller than the network's minimum input (e.g. a
    training patch ``X_val[0]``) is reflect-padded to the minimum size, as n2v exported it. ``patch_shape`` is
    checked but not needed: the input size rules come from the network. ``authors`` may be a comma-separated
    string, as in n2v. Further keyword arguments go to :func:`export_bioimageio`.

    n2v installs its export dependencies, n2v_tf keeps them in the ``bioimageio`` extra: without them this call
    warns (with the ``pip install "n2v_tf[bioimageio]"`` hint) and returns ``None`` instead of raising, so that a
    notebook that exports at the end of its training cell (ZeroCostDL4Mic's) goes on. :func:`export_bioimageio`
    raises :class:`ImportError`.
    """
    n_dim = model.config.n_dim
    if patch_shape is not None and len(tuple(patch_shape)) != n_dim:
        raise ValueError(f"patch_shape {tuple(patch_shape)} does not fit this {n_dim}D model")
    if result_path is None:
        if model.basedir is None:
            raise ValueError("result_path is required for a model without a model folder (basedir=None)")
        result_path = model.logdir / "export.bioimage.io.zip"
    result_path = Path(result_path)
    if not result_path.name.lower().endswith(".zip"):  # n2v's result folder
        result_path = result_path / f"{result_path.stem}.bioimage.io.zip"
    kwargs.setdefault("pad_test_img", True)
    try:
        _check_export_args(model, result_path, kwargs.get("overwrite", False),
                           kwargs.get("weight_formats", WEIGHT_FORMATS), kwargs.get("validate", True))
    except ImportError as e:  # n2v installs its export dependencies; a notebook must not stop after training
        warnings.warn(f"export_TF skipped, nothing was written: {e}", stacklevel=3)
        return None
    return export_bioimageio(model, result_path, test_img=test_img, axes=axes, name=name, description=description,
                             authors=authors, license=license, **kwargs)


# --------------------------------------------------------------------------- import

def import_bioimageio(path: str | Path, basedir: str | Path, name: str | None = None, *, overwrite: bool = False):
    """Rebuild a normal n2v_tf model folder from a package written by :func:`export_bioimageio`.

    Writes ``basedir/name/config.json``, ``weights_best.h5`` and ``weights_last.h5`` (both the exported weights),
    so the model predicts like the package and can be trained further. For a PN2V package, the U-Net's weights
    are taken from the exported network (which adds the MMSE layers) and the attached noise model is written
    to the folder too (``noise_model_gmm.npz`` / ``noise_model_histogram.npz``), so the model predicts the MMSE
    estimate as the package does.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.bioimage.io.zip`` package.
    basedir : str or pathlib.Path
        Folder for the model folder.
    name : str, optional
        Model folder name; default: the package file name without ``.bioimage.io.zip``/``.zip``.
    overwrite : bool
        Replace weights of an existing model folder of that name.

    Returns
    -------
    n2v_tf.N2V
        The model loaded from the new folder.

    Raises
    ------
    ValueError
        ``path`` is not a zip file, holds no ``config.json`` or Keras weights of n2v_tf, or is a PN2V package
        without exactly one noise model file.
    FileExistsError
        The model folder already holds weights and ``overwrite`` is False.
    """
    import keras

    from .config import N2VConfig
    from .models import N2V
    from .nets import load_weights_h5

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a zip file (a .bioimage.io.zip package)")
    if name is None:
        name = re.sub(r"(\.bioimage\.io)?\.zip$", "", path.name) or "imported_model"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if _CONFIG_NAME not in names:
            raise ValueError(f"{path} holds no '{_CONFIG_NAME}': only packages exported by n2v_tf "
                             "(export_bioimageio) can be imported")
        config_dict = json.loads(zf.read(_CONFIG_NAME))
        weights = next((f for f in (_FILES["keras_v3"], _FILES["keras_hdf5"]) if f in names), None)
        if weights is None:
            raise ValueError(f"{path} holds no Keras weights ('{_FILES['keras_v3']}' or '{_FILES['keras_hdf5']}')")
        try:
            config = N2VConfig(None, **N2VConfig.update_loaded_config(config_dict))
            config.validate()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: the attached {_CONFIG_NAME} is not a valid n2v_tf configuration: {e}") from None
        noise_model = None
        if config.probabilistic:
            noise_model = _read_noise_model(zf, path)
        logdir = Path(basedir) / name
        if logdir.exists() and (any(logdir.glob("*.h5")) or any(logdir.glob("*.hdf5"))) and not overwrite:
            raise FileExistsError(f"{logdir} already holds a model; choose another name or pass overwrite=True")
        created = not logdir.exists()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="output path for model already exists")
                model = N2V(config, name, basedir=basedir, overwrite=overwrite, noise_model=noise_model)
            with tempfile.TemporaryDirectory(prefix="n2v_tf_import_") as tmp:
                local = Path(zf.extract(weights, tmp))
                if local.suffix == ".keras":
                    loaded = keras.models.load_model(local, compile=False)
                    for layer in model.keras_model.layers:
                        if layer.weights:
                            layer.set_weights(loaded.get_layer(layer.name).get_weights())
                else:
                    load_weights_h5(model.keras_model, str(local))
            for fname in dict.fromkeys((config.train_checkpoint or "weights_best.h5",
                                        config.train_checkpoint_last or "weights_last.h5")):
                model.keras_model.save_weights(str(model.logdir / fname))
        except Exception:
            if created:
                shutil.rmtree(logdir, ignore_errors=True)
            raise
    return N2V(None, name, basedir=basedir)


def _read_noise_model(zf: zipfile.ZipFile, path: Path):
    """The noise model attached to a PN2V package (``noise_model_gmm.npz`` or ``noise_model_histogram.npz``)."""
    from .noise_models import NOISE_MODELS, load_noise_model, noise_model_file
    names = set(zf.namelist())
    found = [noise_model_file(kind) for kind in NOISE_MODELS if noise_model_file(kind) in names]
    if len(found) != 1:
        raise ValueError(f"{path} holds a PN2V model (config.probabilistic=True) but "
                         + ("no noise model file" if not found else "more than one noise model file")
                         + f" (expected one of {sorted(noise_model_file(k) for k in NOISE_MODELS)}): it cannot "
                         "predict the MMSE estimate without it")
    with tempfile.TemporaryDirectory(prefix="n2v_tf_import_") as tmp:
        return load_noise_model(zf.extract(found[0], tmp))
