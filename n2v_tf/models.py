"""The :class:`N2V` model: CSBDeep model folder, training and (tiled) prediction.

``N2V`` subclasses CSBDeep's ``CARE`` (model folder ``basedir/name`` with ``config.json``,
``weights_best.h5``, ``weights_last.h5``; tiled prediction; checkpoint callbacks) and overrides
what Noise2Void does differently: the network, the masked-pixel training data and losses, the
per-channel mean/std normalisation and the loading of n2v 0.3.x weight files.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from csbdeep.data import PadAndCropResizer, Resizer
from csbdeep.models import CARE
from csbdeep.utils import axes_check_and_normalize, load_json

from .config import N2VConfig
from .data import N2VSequence, as_image_list, validation_data
from .losses import LOSSES, PN2VLoss, pn2v_mmse
from .masking import box_size, tta_backward, tta_forward
from .nets import build_unet, load_weights_h5, receptive_field_radius

__all__ = ["N2V"]

_DEFAULT_RESIZER = PadAndCropResizer()  # CSBDeep's default of predict(resizer=...)


class _LearningRateLogger(keras.callbacks.Callback):
    """Write the current learning rate to the logs as ``learning_rate`` and ``lr`` (n2v/ZeroCostDL4Mic read ``lr``)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["learning_rate"] = lr
            logs["lr"] = lr


def _config_as_json(config: N2VConfig) -> dict:
    return json.loads(json.dumps(vars(config)))


class N2V(CARE):
    """Noise2Void / N2V2 model (n2v 0.3.3-compatible API).

    Parameters
    ----------
    config : N2VConfig or None
        Configuration; ``None`` loads ``basedir/name/config.json`` and the weights found there
        (also folders written by n2v 0.3.x).
    name : str, optional
        Model name (folder name); a time stamp if ``None``.
    basedir : str or pathlib.Path or None
        Folder that holds the model folder; ``None`` keeps everything in memory.
    overwrite : bool
        Allow a new ``config`` to replace a *different* ``config.json`` already in ``basedir/name``.
        Without it that raises :class:`FileExistsError`, so a trained model is never silently lost.
        (Re-creating a model with the identical config, as a re-run notebook cell does, is allowed.)
    noise_model : HistogramNoiseModel or GaussianMixtureNoiseModel, optional
        Noise model p(x|s) of a PN2V model (``config.probabilistic=True``), needed for training and for the
        MMSE prediction. It is saved in the model folder and reloaded with ``N2V(None, name, basedir)``.

    Attributes
    ----------
    config : N2VConfig
    keras_model : keras.Model
    name : str
    logdir : pathlib.Path

    Examples
    --------
    >>> from n2v_tf import N2VConfig, N2V
    >>> model = N2V(config, 'my_model', basedir='models')  # doctest: +SKIP
    >>> history = model.train(X, X_val)                      # doctest: +SKIP
    >>> denoised = model.predict(img, axes='YX')             # doctest: +SKIP

    References
    ----------
    .. [1] A. Krull, T.-O. Buchholz, F. Jug, "Noise2Void - Learning Denoising from Single Noisy Images", CVPR 2019.
    .. [2] E. Höck et al., "N2V2 - Fixing Noise2Void Checkerboard Artifacts with Modified Sampling Strategies and a
       Tweaked Network Architecture", ECCV Workshops 2022.
    """

    def __init__(self, config: N2VConfig | None, name: str | None = None, basedir: str | Path | None = ".",
                 overwrite: bool = False, noise_model=None) -> None:
        if config is not None:
            if not isinstance(config, N2VConfig):
                raise TypeError(f"config must be an N2VConfig or None, got {type(config).__name__}")
            config.validate()
        self._overwrite = bool(overwrite)
        self.noise_model = noise_model
        super().__init__(config, name=name, basedir=basedir)
        if self.basedir is not None and self.config.probabilistic:
            if noise_model is not None:
                _save_noise_model(noise_model, self.logdir)
            elif config is None:
                self.noise_model = _load_noise_model(self.logdir)

    # ------------------------------------------------------------------ model folder
    def _set_logdir(self) -> None:
        if self.config is not None and self.basedir is not None and not self._overwrite:
            existing = self.basedir / self.name / "config.json"
            if existing.exists() and load_json(str(existing)) != _config_as_json(self.config):
                raise FileExistsError(
                    f"{existing} holds a different configuration: creating this model would make the weights in "
                    f"{existing.parent} unusable. Choose another name, delete the folder, or pass overwrite=True.")
        super()._set_logdir()

    def _update_and_check_config(self) -> None:
        self.config.validate()

    @property
    def _config_class(self):
        return N2VConfig

    def _build(self) -> keras.Model:
        c = self.config
        return build_unet(n_dim=c.n_dim, n_channel_in=c.n_channel_in, n_depth=c.unet_n_depth,
                          kern_size=c.unet_kern_size, n_first=c.unet_n_first, batch_norm=c.batch_norm,
                          last_activation=c.unet_last_activation, residual=c.unet_residual, blurpool=c.blurpool,
                          skip_skipone=c.skip_skipone, single_net_per_channel=c.single_net_per_channel,
                          n_out_per_channel=c.pn2v_samples if c.probabilistic else 1,
                          wide_decoder=c.unet_wide_decoder, batch_norm_momentum=float(c.batch_norm_momentum))

    def _find_and_load_weights(self, prefer: str = "best") -> None:
        if self.basedir is not None and not any(self.logdir.glob("*.h5")) and not any(self.logdir.glob("*.hdf5")):
            raise FileNotFoundError(f"no weight file (*.h5) in the model folder {self.logdir}: the model was never "
                                    "trained or saved, so it cannot be loaded")
        super()._find_and_load_weights(prefer)

    def load_weights(self, name: str = "weights_best.h5") -> None:
        """Load weights from the model folder (files of n2v 0.3.x and of n2v_tf).

        Parameters
        ----------
        name : str
            Weight file name in ``basedir/name``.
        """
        if self.basedir is None:
            raise ValueError("load_weights: this model has basedir=None, so there is no model folder to load from")
        path = self.logdir / name
        if not path.exists():
            raise FileNotFoundError(f"weight file {path} does not exist")
        if str(path).endswith(".weights.h5"):
            self.keras_model.load_weights(str(path))
        else:
            load_weights_h5(self.keras_model, str(path))

    # ------------------------------------------------------------------ training
    def prepare_for_training(self, optimizer: keras.optimizers.Optimizer | None = None,
                             metrics: Sequence[str] | None = None, **kwargs) -> None:
        """Compile the network and create the training callbacks.

        Parameters
        ----------
        optimizer : keras.optimizers.Optimizer, optional
            Default: Adam with ``config.train_learning_rate``.
        metrics : sequence of str, optional
            Masked metrics to log, from ``'mse'``, ``'mae'`` (logged as ``n2v_mse``, ``n2v_abs``); default both for
            N2V, none for PN2V (whose loss is the noise-model likelihood).
        **kwargs
            Not used; accepted names raise :class:`TypeError` so typos do not pass silently.

        Notes
        -----
        Callbacks: learning-rate logging (``lr`` and ``learning_rate`` in the history),
        ``TerminateOnNaN``, CSBDeep's best/last checkpoints, TensorBoard (``config.train_tensorboard``)
        and ``ReduceLROnPlateau`` (``config.train_reduce_lr``).
        """
        if kwargs:
            raise TypeError(f"prepare_for_training got unexpected argument(s) {', '.join(kwargs)}")
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=self.config.train_learning_rate)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be a keras.optimizers.Optimizer, got {type(optimizer).__name__}")
        if metrics is None:
            metrics = () if self.config.probabilistic else ("mse", "mae")
        unknown = [m for m in metrics if m not in LOSSES]
        if unknown:
            raise ValueError(f"metrics: unknown name(s) {unknown}; choose from {sorted(LOSSES)}")
        if self.config.probabilistic:
            if self.noise_model is None:
                raise ValueError("a PN2V model (config.probabilistic=True) needs a noise model: "
                                 "N2V(config, name, basedir, noise_model=...)")
            box = box_size(float(self.config.n2v_perc_pix), self.config.n_dim)
            loss = PN2VLoss(self.noise_model, float(self.config.means[0]), float(self.config.stds[0]), box=box)
        else:
            loss = LOSSES[self.config.train_loss]
        self.keras_model.compile(optimizer=optimizer, loss=loss, metrics=[LOSSES[m] for m in metrics])
        self.callbacks = [_LearningRateLogger(), keras.callbacks.TerminateOnNaN()]
        if self.basedir is not None:
            self.callbacks += self._checkpoint_callbacks()
            if self.config.train_tensorboard:
                self.callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.logdir / "logs"),
                                                                  write_graph=False, profile_batch=0))
        if self.config.train_reduce_lr is not None:
            params = {"verbose": True, **self.config.train_reduce_lr}
            self.callbacks.insert(1, keras.callbacks.ReduceLROnPlateau(**params))
        self._model_prepared = True

    def train(self, X: np.ndarray | Sequence[np.ndarray], validation_X: np.ndarray | Sequence[np.ndarray],
              epochs: int | None = None, steps_per_epoch: int | None = None, *, verbose: int = 1,
              seed: int | None = None) -> keras.callbacks.History:
        """Train the network with Noise2Void on noisy data only.

        Parameters
        ----------
        X : numpy.ndarray or list of numpy.ndarray
            Training data: an n2v patch array ``SYXC``/``SZYXC``, or a list of ``YXC``/``ZYXC`` images of any
            size, from which random ``n2v_patch_shape`` crops are drawn on the fly.
        validation_X : numpy.ndarray or list of numpy.ndarray
            Validation data (array used whole, spatial sizes divisible by ``2**unet_n_depth``; list cut into
            patches); masked once with a fixed seed.
        epochs, steps_per_epoch : int, optional
            Override ``config.train_epochs`` / ``config.train_steps_per_epoch``.
        verbose : int
            Keras progress output.
        seed : int, optional
            Seed of the training batches.

        Returns
        -------
        keras.callbacks.History
            ``history.history`` holds ``loss``, ``val_loss``, the metrics and ``lr``/``learning_rate``.
        """
        c = self.config
        epochs = c.train_epochs if epochs is None else int(epochs)
        steps_per_epoch = c.train_steps_per_epoch if steps_per_epoch is None else int(steps_per_epoch)
        for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        train_imgs = as_image_list(X, c.n_dim, c.n_channel_in, "X")
        val_imgs = as_image_list(validation_X, c.n_dim, c.n_channel_in, "validation_X")
        n_train = sum(im.size for im in train_imgs)
        n_val = sum(im.size for im in val_imgs)
        if n_val / (n_train + n_val) < 0.05:
            warnings.warn(f"small number of validation images (only {100 * n_val / (n_train + n_val):.1f}% of all "
                          "images)", stacklevel=2)
        struct = None if c.structN2Vmask is None else np.array(c.structN2Vmask)
        masking = {"perc_pix": c.n2v_perc_pix, "manipulator": c.n2v_manipulator, "radius": c.n2v_neighborhood_radius,
                   "struct_mask": struct, "means": [float(m) for m in c.means], "stds": [float(s) for s in c.stds]}
        train_data = N2VSequence(X if isinstance(X, np.ndarray) else train_imgs, c.n2v_patch_shape,
                                 batch_size=c.train_batch_size, steps_per_epoch=steps_per_epoch, seed=seed, **masking)
        val_data = validation_data(validation_X if isinstance(validation_X, np.ndarray) else val_imgs,
                                   c.n2v_patch_shape, div_by=2 ** c.unet_n_depth, **masking)
        if not self._model_prepared:
            self.prepare_for_training()
        history = self.keras_model.fit(train_data, validation_data=val_data, epochs=epochs,
                                       validation_batch_size=c.train_batch_size, callbacks=self.callbacks,
                                       verbose=verbose)
        self._training_finished()
        return history

    # ------------------------------------------------------------------ prediction
    def _axes_tile_overlap(self, query_axes: str) -> tuple[int, ...]:
        query_axes = axes_check_and_normalize(query_axes)
        r = receptive_field_radius(self.config.unet_n_depth, self.config.unet_kern_size, self.config.blurpool)
        return tuple((r if a in "XYZT" else 0) for a in query_axes)

    def predict(self, img: np.ndarray, axes: str, resizer: Resizer = _DEFAULT_RESIZER,
                n_tiles: Sequence[int] | None = None, tta: bool = False, *, pn2v_output: str = "mmse") -> np.ndarray:
        """Denoise a raw (not normalised) image.

        Parameters
        ----------
        img : numpy.ndarray
            Image with axes ``axes``.
        axes : str
            Axes of ``img``, e.g. ``'YX'``, ``'ZYX'``, ``'YXC'``, ``'SYX'`` (``S``/``T``: images predicted one by one).
        resizer : csbdeep.data.Resizer
            Pads the image to a size the network accepts and crops the result back.
        n_tiles : sequence of int, optional
            Tiles per axis of ``img`` (1 for channel and sample axes); tiles overlap by the receptive field,
            so tiled and untiled predictions agree.
        tta : bool
            Average over the 8 rotations/flips of the YX plane.
        pn2v_output : {'mmse', 'prior_mean', 'samples'}
            PN2V models only: the MMSE estimate (default; needs the noise model), the mean of the prior samples,
            or the samples themselves (an extra last axis of ``pn2v_samples``; not tiled, no TTA).

        Returns
        -------
        numpy.ndarray
            Denoised image, float32, same shape and axes as ``img``.
        """
        c = self.config
        img = np.asarray(img)
        axes = axes_check_and_normalize(axes, img.ndim)
        spatial = "ZYX" if c.n_dim == 3 else "YX"
        if set(axes) - set("CST") != set(spatial):
            raise ValueError(f"axes {axes!r} do not fit this {c.n_dim}D model: it needs the axes {spatial!r}, "
                             "optionally 'C' and one sample axis 'S' or 'T'")
        n_tiles = None if n_tiles is None else tuple(int(t) for t in n_tiles)
        if n_tiles is not None and len(n_tiles) != img.ndim:
            raise ValueError(f"n_tiles must have one entry per axis of img ({axes!r}), got {n_tiles}")
        sample = next((a for a in "ST" if a in axes), None)
        if sample is not None:
            if "S" in axes and "T" in axes:
                raise ValueError(f"axes {axes!r}: use only one of 'S' and 'T'")
            i = axes.index(sample)
            sub_tiles = None if n_tiles is None else n_tiles[:i] + n_tiles[i + 1:]
            out = [self.predict(im, axes.replace(sample, ""), resizer, sub_tiles, tta, pn2v_output=pn2v_output)
                   for im in np.moveaxis(img, i, 0)]
            return np.moveaxis(np.stack(out), 0, i)
        n_ch = img.shape[axes.index("C")] if "C" in axes else 1
        if n_ch != c.n_channel_in:
            raise ValueError(f"img has {n_ch} channel(s) (axes {axes!r}, shape {img.shape}) but the model expects "
                             f"{c.n_channel_in}" + ("; add 'C' to axes" if "C" not in axes else ""))
        if img.dtype != np.float32:
            img = img.astype(np.float32)
        x = np.moveaxis(img, axes.index("C"), -1) if "C" in axes else img[..., np.newaxis]
        net_axes = axes.replace("C", "") + "C"
        if n_tiles is not None:
            n_tiles = tuple(n_tiles[axes.index(a)] for a in net_axes) if "C" in axes else n_tiles + (1,)
        means = np.array([float(m) for m in c.means], np.float32)
        stds = np.array([float(s) for s in c.stds], np.float32)
        x = (x - means) / stds
        yx = (net_axes.index("Y"), net_axes.index("X"))

        if c.probabilistic:
            if pn2v_output not in ("mmse", "prior_mean", "samples"):
                raise ValueError(f"pn2v_output must be 'mmse', 'prior_mean' or 'samples', got {pn2v_output!r}")
            if pn2v_output == "samples":
                if (n_tiles is not None and np.prod(n_tiles) > 1) or tta:
                    raise ValueError("pn2v_output='samples' supports neither tiling nor tta")
                div = self._axes_div_by(net_axes)
                padded = resizer.before(x, net_axes, div)
                out = resizer.after(self.keras_model.predict(padded[np.newaxis], verbose=0)[0], net_axes)
                return (out * stds[0] + means[0]).astype(np.float32)
            if pn2v_output == "mmse" and self.noise_model is None:
                raise ValueError("pn2v_output='mmse' needs the noise model: N2V(..., noise_model=...)")
            key = (id(self.keras_model), id(self.noise_model), float(means[0]), float(stds[0]))
            if getattr(self, "_pn2v_cache", (None,))[0] != key:  # build the MMSE head once, not per call
                self._pn2v_cache = (key, _pn2v_predictor(self.keras_model, self.noise_model, *key[2:]))
            predictor = self._pn2v_cache[1]
            part = 0 if pn2v_output == "mmse" else 1
        else:
            predictor, part = self.keras_model, 0

        def _run(arr, tiles):
            with self._predict_with(predictor):
                return self._predict_mean_and_scale(arr, axes=net_axes, normalizer=None, resizer=resizer,
                                                    n_tiles=tiles)[part]

        if tta:
            preds = []
            for k, aug in enumerate(tta_forward(x, yx_axes=yx)):
                tiles = n_tiles
                if tiles is not None and k % 2 == 1:  # rotated by 90 or 270 degrees: swap Y and X tiles
                    tiles = list(tiles)
                    tiles[yx[0]], tiles[yx[1]] = tiles[yx[1]], tiles[yx[0]]
                preds.append(_run(aug, tiles))
            pred = tta_backward(preds, yx_axes=yx)
        else:
            pred = _run(x, n_tiles)
        pred = (pred * stds + means).astype(np.float32)
        return np.moveaxis(pred, -1, axes.index("C")) if "C" in axes else pred[..., 0]

    @contextlib.contextmanager
    def _predict_with(self, model: keras.Model):
        """Let CSBDeep's tiled prediction run ``model`` (e.g. the PN2V MMSE head) instead of the trained network."""
        original, self.keras_model = self.keras_model, model
        try:
            yield
        finally:
            self.keras_model = original

    def export_TF(self, name: str, description: str, authors, test_img: np.ndarray, axes: str,
                  patch_shape=None, license: str = "BSD-3-Clause", result_path=None, **kwargs):
        """n2v 0.3.3-compatible BioImage.IO export (see :func:`n2v_tf.export.export_bioimageio`).

        Parameters
        ----------
        name, description : str
            Model name and short description.
        authors : str or list of str
            Author names (comma-separated string or list).
        test_img : numpy.ndarray
            Raw test image (its denoised version becomes the package's test output).
        axes : str
            Axes of ``test_img``.
        patch_shape : tuple, optional
            Ignored (kept for n2v compatibility); the package accepts any valid size.
        license : str
            SPDX licence identifier.
        result_path : str, optional
            Output ``.zip`` (default ``<model folder>/export.bioimage.io.zip``).
        **kwargs
            Further arguments of :func:`n2v_tf.export.export_bioimageio`.

        Returns
        -------
        pathlib.Path
            The written package.
        """
        from .export import export_tf_compat
        return export_tf_compat(self, name, description, authors, test_img, axes, patch_shape, license=license,
                                result_path=result_path, **kwargs)

    def export_bioimageio(self, path, **kwargs):
        """Export as a BioImage.IO model package (spec 0.5), see :func:`n2v_tf.export.export_bioimageio`."""
        from .export import export_bioimageio
        return export_bioimageio(self, path, **kwargs)

    @classmethod
    def from_bioimageio(cls, path, basedir=".", name: str | None = None, overwrite: bool = False) -> N2V:
        """Rebuild a model folder from a package written by :meth:`export_bioimageio` and load it."""
        from .export import import_bioimageio
        return import_bioimageio(path, basedir, name, overwrite=overwrite)


class _PN2VHead(keras.layers.Layer):
    """Prediction-time head (never saved): normalised (input, samples) -> normalised (MMSE, prior mean)."""

    def __init__(self, noise_model, mean: float, std: float, **kwargs):
        super().__init__(**kwargs)
        self.noise_model, self.mean, self.std = noise_model, mean, std

    def call(self, inputs):
        x, samples = inputs
        x = x * self.std + self.mean
        samples = samples * self.std + self.mean
        prior = keras.ops.mean(samples, axis=-1, keepdims=True)
        mmse = pn2v_mmse(samples, x, self.noise_model) if self.noise_model is not None else prior
        return keras.ops.concatenate([(mmse - self.mean) / self.std, (prior - self.mean) / self.std], axis=-1)


def _pn2v_predictor(network: keras.Model, noise_model, mean: float, std: float) -> keras.Model:
    inp = keras.Input(network.input_shape[1:])
    return keras.Model(inp, _PN2VHead(noise_model, mean, std)([inp, network(inp)]))


def _noise_model_classes() -> dict:
    from .noise_models import GaussianMixtureNoiseModel, HistogramNoiseModel
    return {"gmm": GaussianMixtureNoiseModel, "histogram": HistogramNoiseModel}


def _save_noise_model(noise_model, logdir: Path) -> None:
    kinds = {cls: kind for kind, cls in _noise_model_classes().items()}
    if type(noise_model) not in kinds:
        raise TypeError(f"noise_model must be a HistogramNoiseModel or GaussianMixtureNoiseModel, "
                        f"got {type(noise_model).__name__}")
    for old in logdir.glob("noise_model_*.npz"):
        old.unlink()
    noise_model.save(str(logdir / f"noise_model_{kinds[type(noise_model)]}.npz"))


def _load_noise_model(logdir: Path):
    for kind, cls in _noise_model_classes().items():
        path = logdir / f"noise_model_{kind}.npz"
        if path.exists():
            return cls.load(str(path))
    warnings.warn(f"{logdir} holds a PN2V model without a noise model file: predict(..., pn2v_output='mmse') "
                  "needs N2V(None, name, basedir, noise_model=...)", stacklevel=3)
    return None
