"""The :class:`N2V` model: CSBDeep model folder, training and (tiled) prediction.

``N2V`` subclasses CSBDeep's ``CARE`` (model folder ``basedir/name`` with ``config.json``,
``weights_best.h5``, ``weights_last.h5``; tiled prediction; checkpoint callbacks) and overrides
what Noise2Void does differently: the network, the masked-pixel training data and losses, the
per-channel mean/std normalisation and the loading of n2v 0.3.x weight files.

:func:`train_pn2v_bootstrapped` is fully unsupervised PN2V in one call: N2V, a noise model bootstrapped from its
prediction, and PN2V trained with it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from csbdeep.data import PadAndCropResizer, Resizer
from csbdeep.models import CARE
from csbdeep.utils import axes_check_and_normalize, load_json

from .config import N2VConfig, denormalize, normalize
from .data import N2VSequence, as_image_list, validation_data
from .io import atomic_path, is_lazy, save_npz_atomic, write_text_atomic
from .losses import LOSSES, PN2VLoss
from .masking import box_size, mask_batch
from .nets import (apply_curves, build_unet, calibrate_output, config_receptive_field, fit_curve, fold_batch_norm,
                   load_weights_h5, recalibrate_batch_norm, resolve_mixed_precision, use_fused_batch_norm)
from .tiling import CompiledNetwork, core_size, predict_tiles, weights_fingerprint

__all__ = ["BN_RECALIBRATION_BATCHES", "N2V", "PN2V_SHARED_FIELDS", "PN2VBootstrapResult", "train_pn2v_bootstrapped"]

logger = logging.getLogger(__name__)

_DEFAULT_RESIZER = PadAndCropResizer()  # CSBDeep's default of predict(resizer=...)
#: Training state written after every epoch (optimizer variables, epoch, seed, callback states), for ``resume``.
TRAINING_STATE = "training_state.npz"
#: Fields a loaded ``config.json`` must have (the others have n2v's defaults).
_REQUIRED_FIELDS = ("n_dim", "means", "stds")
#: Values of ``predict(..., nan_policy=...)``.
NAN_POLICIES = ("raise", "fill")
#: Batches of training patches whose batch statistics become the moving statistics of the batch normalisations
#: after training (``N2VConfig.train_recalibrate_bn``; at most as many batches as the training ran).
BN_RECALIBRATION_BATCHES = 100
#: Blind-spot pixels per channel that the output calibration after training fits
#: (``N2VConfig.train_calibrate_output``): the validation patches are masked anew until about this many are reached, in at most
#: :data:`CALIBRATION_MAX_DRAWS` draws (the standard error of the fitted gain falls as one over the square root).
CALIBRATION_PIXELS = 100_000
CALIBRATION_MAX_DRAWS = 32
#: Pixels per network call of that calibration (several small patches, or several draws of them, per call).
CALIBRATION_CHUNK = 2 ** 20
#: ``predict(..., calibrate='auto')``: the image is masked anew until every channel has this many blind spots, in at
#: most :data:`CALIBRATION_IMAGE_MAX_DRAWS` draws (8 draws of a 512x512 image at 1.5 % masked pixels).
CALIBRATION_IMAGE_PIXELS = 30_000
CALIBRATION_IMAGE_MAX_DRAWS = 16
#: ``predict(..., calibrate=...)`` without ``calibrate_bins``: one segment of the fitted curve per this many blind
#: spots of a channel, at least 1 (a gain and an offset) and at most :data:`CALIBRATION_MAX_BINS`.
CALIBRATION_PIXELS_PER_BIN = 4000
CALIBRATION_MAX_BINS = 16


def _check_calibrate(calibrate: Any, calibrate_bins: Any, probabilistic: bool) -> None:
    """A :class:`ValueError` for ``calibrate`` / ``calibrate_bins`` values that ``predict`` does not take."""
    if calibrate != "auto" and (not isinstance(calibrate, (int, np.integer)) or isinstance(calibrate, bool)
                                or calibrate < 0):
        raise ValueError(f"calibrate must be a number of mask draws >= 0 (0: off) or 'auto', got {calibrate!r}")
    if calibrate_bins is not None:
        if not isinstance(calibrate_bins, (int, np.integer)) or isinstance(calibrate_bins, bool) or calibrate_bins < 1:
            raise ValueError(f"calibrate_bins must be a number of curve segments >= 1 (1: a gain and an offset) "
                             f"or None (from the number of blind spots), got {calibrate_bins!r}")
        if not calibrate:
            raise ValueError(f"calibrate_bins={calibrate_bins} needs calibrate (a number of mask draws or 'auto')")
    if calibrate and probabilistic:
        raise ValueError("calibrate is for N2V models, whose prediction at a blind spot does not see the pixel; "
                         "this is a PN2V model (its MMSE estimate uses the pixel itself): predict without it")


class _LearningRateLogger(keras.callbacks.Callback):
    """Write the current learning rate to the logs as ``learning_rate`` and ``lr`` (n2v/ZeroCostDL4Mic read ``lr``)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["learning_rate"] = lr
            logs["lr"] = lr


class _CosineDecay(keras.callbacks.Callback):
    """Cosine learning-rate decay over the steps of one :meth:`N2V.train` call (``config.train_lr_schedule``).

    Before step ``t`` of ``T = epochs * steps_per_epoch`` the learning rate is set to
    ``lr * (1 + cos(pi * t / T)) / 2``: it starts at ``config.train_learning_rate`` and ends near 0, so the last
    weights are those of a small step size instead of a random point of Adam's noisy walk. The step counts from
    epoch 0 of the call's schedule, so a resumed run continues the same curve.
    """

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = float(learning_rate)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        steps, epochs = self.params.get("steps") or 1, self.params.get("epochs") or 1
        t = min(self._epoch * steps + int(batch), epochs * steps)
        lr = self.learning_rate * 0.5 * (1.0 + np.cos(np.pi * t / (epochs * steps)))
        self.model.optimizer.learning_rate.assign(lr)


class _AverageMovingStatistics(keras.callbacks.Callback):
    """Average the batch-normalisation moving statistics over the replicas of a ``tf.distribute`` strategy.

    Keras 3 keeps each replica's moving mean and variance as that replica updated them from its own patches (Keras 2
    averaged them when they were read), so the workers of a multi-worker training would end with different
    statistics, and a saved model would hold those of one replica. Runs before every validation (``fit`` validates
    before the epoch's checkpoints), so validation, checkpoints and the trained model use the same statistics on
    every replica.
    """

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy
        self._average = None

    def on_test_begin(self, logs=None):
        import tensorflow as tf
        if self._average is None:
            stats = [v for v in self.model.non_trainable_variables if v.name in ("moving_mean", "moving_variance")]

            def average():  # on each replica
                means = tf.distribute.get_replica_context().all_reduce("MEAN", [tf.identity(v.value) for v in stats])
                for v, mean in zip(stats, means):
                    v.assign(mean)

            @tf.function
            def average_all():
                self.strategy.run(average)

            self._average = average_all if stats else (lambda: None)
        self._average()


class _EpochState(keras.callbacks.Callback):
    """After every epoch: the last weights and the training state (for ``N2V.train(..., resume=True)``).

    Also restores a saved state when training begins (after the other callbacks have reset themselves).
    """

    def __init__(self, n2v: N2V, seed: int, initial_epoch: int, restore: dict | None = None):
        super().__init__()
        self.n2v, self.seed, self.restore = n2v, int(seed), restore
        self.initial = self.completed = int(initial_epoch)  # completed: epochs whose weights are saved

    def _callback(self, cls):
        return next((cb for cb in self.n2v.callbacks if isinstance(cb, cls)), None)

    def _best_checkpoint(self):
        target = str(self.n2v.logdir / (self.n2v.config.train_checkpoint or ""))
        return next((cb for cb in self.n2v.callbacks if isinstance(cb, keras.callbacks.ModelCheckpoint)
                     and cb.save_best_only and cb.filepath == target), None)

    def on_train_begin(self, logs=None):
        if not self.restore:
            return
        plateau, best = self._callback(keras.callbacks.ReduceLROnPlateau), self._best_checkpoint()
        if plateau is not None and "plateau" in self.restore:
            wait, cooldown, lowest = (float(v) for v in self.restore["plateau"])
            plateau.wait, plateau.cooldown_counter = int(wait), int(cooldown)
            plateau.best = None if np.isnan(lowest) else lowest  # None: no epoch was compared yet
        if best is not None and "best" in self.restore:
            best.best = float(self.restore["best"])

    def on_epoch_end(self, epoch, logs=None):
        n2v = self.n2v
        if n2v.config.train_checkpoint_last is not None:
            n2v.keras_model.save_weights(str(n2v.logdir / n2v.config.train_checkpoint_last))
        opt = n2v.keras_model.optimizer
        state = {"epoch": np.int64(epoch + 1), "seed": np.int64(self.seed),
                 "optimizer_paths": np.array([v.path for v in opt.variables]),
                 **{f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(opt.variables)}}
        plateau, best = self._callback(keras.callbacks.ReduceLROnPlateau), self._best_checkpoint()
        if plateau is not None:
            state["plateau"] = np.array([plateau.wait, plateau.cooldown_counter,
                                         np.nan if plateau.best is None else plateau.best], np.float64)
        if best is not None and best.best is not None:
            state["best"] = np.float64(best.best)
        save_npz_atomic(n2v.logdir / TRAINING_STATE, **state)
        self.completed = epoch + 1


def _config_as_json(config: N2VConfig) -> dict:
    return json.loads(json.dumps(vars(config)))


def _load_config_file(path: Path) -> N2VConfig:
    """Read a model folder's ``config.json`` (n2v 0.3.x or n2v_tf) with errors that name the file and the field."""
    if not path.exists():
        raise FileNotFoundError(f"config file doesn't exist: {path.resolve()} (a model folder holds config.json "
                                "and weight files; check basedir and name)")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text file ({e.reason}): the model configuration is corrupt; restore "
                         "config.json from a copy of the model folder") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): the file is "
                         "corrupt or truncated (an interrupted copy?); restore config.json from a copy of the "
                         "model folder") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a JSON object of configuration fields, got a {type(loaded).__name__}")
    missing = [k for k in _REQUIRED_FIELDS if k not in loaded]
    if missing:
        raise ValueError(f"{path} lacks the required field(s) {', '.join(missing)} (written from the training data "
                         "when the model is created); restore config.json from a copy of the model folder")
    try:
        config = N2VConfig(None, **N2VConfig.update_loaded_config(loaded))
        config.validate()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return config


def _atomic_saver(save_weights):
    """Wrap ``keras_model.save_weights``: write under a temporary name, rename when complete."""
    def save(filepath, overwrite=True):
        if not overwrite and Path(filepath).exists():
            raise FileExistsError(f"weight file {filepath} exists; pass overwrite=True to replace it")
        with atomic_path(filepath) as tmp:
            save_weights(str(tmp), overwrite=True)
    return save


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
        self._writes_folder = _writes_model_folder(_current_strategy())  # False: a non-chief worker
        #: ``{'gain': [...], 'offset': [...]}`` per channel (normalised units) that the last :meth:`train` folded into
        #: the network (``config.train_calibrate_output``); ``None`` before.
        self.output_calibration: dict | None = None
        super().__init__(config, name=name, basedir=basedir)
        self.keras_model.save_weights = _atomic_saver(self.keras_model.save_weights)
        if self.basedir is not None and self.config.probabilistic:
            if noise_model is not None:
                if self._writes_folder:
                    from .noise_models import save_noise_model
                    save_noise_model(self.logdir, noise_model)
            elif config is None:
                self.noise_model = _load_noise_model(self.logdir)

    # ------------------------------------------------------------------ model folder
    def _set_logdir(self) -> None:
        """Model folder: load ``config.json`` (clear errors for bad files) or write it (atomically)."""
        if self.basedir is None:
            return super()._set_logdir()
        self.logdir = self.basedir / self.name
        config_file = self.logdir / "config.json"
        if self.config is None:
            self.config = _load_config_file(config_file)
            return
        if not self._overwrite and config_file.exists():
            try:
                same = load_json(str(config_file)) == _config_as_json(self.config)
            except ValueError:  # unreadable: it holds no usable model either
                same = False
            if not same:
                raise FileExistsError(
                    f"{config_file} holds a different configuration: creating this model would make the weights "
                    f"in {self.logdir} unusable. Choose another name, delete the folder, or pass overwrite=True.")
        if not self._writes_folder:  # multi-worker training: the chief writes the folder, the others only check it
            return
        if self.logdir.exists():
            warnings.warn(f"output path for model already exists, files may be overwritten: {self.logdir.resolve()}",
                          stacklevel=3)
        self.logdir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_file, json.dumps(vars(self.config)))

    def _update_and_check_config(self) -> None:
        self.config.validate()

    @property
    def _config_class(self):
        return N2VConfig

    @property
    def _precision(self) -> str | None:
        """The dtype policy the network was built with (``config.train_mixed_precision``, ``'auto'`` resolved once,
        in :meth:`_build`)."""
        return self._built_precision

    def _build(self) -> keras.Model:
        c = self.config
        policy = getattr(c, "train_mixed_precision", None)
        # 'auto' is resolved here, once per network (it reads the CPU flags / GPU list); PN2V stays float32: its
        # training in bfloat16 has not been measured
        self._built_precision = None if policy == "auto" and c.probabilistic else resolve_mixed_precision(policy)
        net = build_unet(n_dim=c.n_dim, n_channel_in=c.n_channel_in, n_depth=c.unet_n_depth,
                          kern_size=c.unet_kern_size, n_first=c.unet_n_first, batch_norm=c.batch_norm,
                          last_activation=c.unet_last_activation, residual=c.unet_residual, blurpool=c.blurpool,
                          skip_skipone=c.skip_skipone, single_net_per_channel=c.single_net_per_channel,
                          n_out_per_channel=c.pn2v_samples if c.probabilistic else 1,
                          wide_decoder=c.unet_wide_decoder, batch_norm_momentum=float(c.batch_norm_momentum),
                          dtype_policy=self._precision,
                          upsampling=getattr(c, "unet_upsampling", "nearest"),
                          init=getattr(c, "unet_init", "glorot_uniform"),
                          conv_bias=getattr(c, "unet_conv_bias", True))
        if c.train_fused_batch_norm:  # faster training, same layers and weights (see nets.use_fused_batch_norm)
            use_fused_batch_norm(net)
        return net

    def _find_and_load_weights(self, prefer: str = "best") -> None:
        if self.basedir is not None and not any(self.logdir.glob("*.h5")) and not any(self.logdir.glob("*.hdf5")):
            raise FileNotFoundError(f"no weight file (*.h5) in the model folder {self.logdir}: the model was never "
                                    "trained or saved, so it cannot be loaded")
        super()._find_and_load_weights(self._trained_weights(prefer))

    def _trained_weights(self, prefer: str = "best") -> str:
        """The weight file that stands for the trained model where CSBDeep asks for the best one: with
        ``config.train_restore_best=False`` the final weights (``train_checkpoint_last``), else ``prefer``."""
        c = self.config
        if not getattr(c, "train_restore_best", True) and prefer in ("best", c.train_checkpoint):
            return c.train_checkpoint_last or "weights_last.h5"
        return prefer

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
        others = sorted(f.name for f in self.logdir.glob("*.h5") if f.name != path.name)
        advice = ("copy the model folder again" + (f", or load another weight file: model.load_weights({others[0]!r})"
                                                   if others else ""))
        try:
            if str(path).endswith(".weights.h5"):
                self.keras_model.load_weights(str(path))
            else:
                load_weights_h5(self.keras_model, str(path))
        except OSError as e:  # h5py: not an HDF5 file, truncated, unreadable
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise OSError(f"cannot read the weight file {path} ({reason}): it is corrupt or truncated (an "
                          f"interrupted copy or save?); {advice}") from e
        except KeyError as e:  # an HDF5 file without the groups/attributes of Keras weights
            raise ValueError(f"{path} is an HDF5 file but holds no Keras weights (missing {e}); {advice}") from e

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

        The optimizer and the metrics are created and compiled in the scope of the ``tf.distribute`` strategy the
        network was built under (see :meth:`train`); an ``optimizer`` given here must be created in that scope too.
        """
        if kwargs:
            raise TypeError(f"prepare_for_training got unexpected argument(s) {', '.join(kwargs)}")
        with self._strategy_scope():
            self._prepare_for_training(optimizer, metrics)

    def _prepare_for_training(self, optimizer, metrics) -> None:
        """:meth:`prepare_for_training` inside the scope of the model's ``tf.distribute`` strategy."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=self.config.train_learning_rate)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be a keras.optimizers.Optimizer, got {type(optimizer).__name__}")
        strategy = self._strategy()
        if strategy is not None and getattr(optimizer, "_distribution_strategy", strategy) is not strategy:
            raise ValueError(f"optimizer: it was created outside the scope of the {type(strategy).__name__} that the "
                             "model was built under; create it inside `with strategy.scope():` (or pass none: the "
                             "default Adam is created there)")
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
            means, stds = self.config.normalization()
            loss = PN2VLoss(self.noise_model, float(means[0]), float(stds[0]), box=box)
        else:
            loss = LOSSES[self.config.train_loss]
        if self._precision == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients would underflow
        self.keras_model.compile(optimizer=optimizer, loss=loss, metrics=[LOSSES[m] for m in metrics])
        self.callbacks = [_LearningRateLogger(), keras.callbacks.TerminateOnNaN()]
        if self.basedir is not None:
            self.callbacks += self._checkpoint_callbacks()
            if self.config.train_tensorboard:
                if importlib.util.find_spec("tensorboard") is None:
                    warnings.warn("TensorBoard is not installed: pip install tensorboard (or \"n2v_tf[tensorboard]\"); "
                                  "training continues without logs", stacklevel=2)
                else:
                    self.callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.logdir / "logs"),
                                                                      write_graph=False, profile_batch=0))
        if getattr(self.config, "train_lr_schedule", None) == "cosine":
            self.callbacks.insert(1, _CosineDecay(self.config.train_learning_rate))
        elif self.config.train_reduce_lr is not None:
            params = {"verbose": True, **self.config.train_reduce_lr}
            self.callbacks.insert(1, keras.callbacks.ReduceLROnPlateau(**params))
        self._model_prepared = True

    def train(self, X: np.ndarray | Sequence[np.ndarray], validation_X: np.ndarray | Sequence[np.ndarray],
              epochs: int | None = None, steps_per_epoch: int | None = None, *, verbose: int = 1,
              seed: int | None = None, resume: bool = False) -> keras.callbacks.History:
        """Train the network with Noise2Void on noisy data only.

        Parameters
        ----------
        X : numpy.ndarray or list of numpy.ndarray or lazy arrays
            Training data: an n2v patch array ``SYXC``/``SZYXC``, or a list of ``YXC``/``ZYXC`` images of any
            size, from which random ``n2v_patch_shape`` crops are drawn on the fly. Lazy arrays (Zarr, Dask,
            :func:`n2v_tf.io.open_array` with ``.as_axes('ZYXC')``) train data larger than memory: only the patches
            of each batch are read.
        validation_X : numpy.ndarray or list of numpy.ndarray or lazy arrays
            Validation data (array used whole, spatial sizes divisible by ``2**unet_n_depth``; list cut into
            patches, of which only those kept are read); masked once with a fixed seed, so the validation masks
            are the same in every run.
        epochs, steps_per_epoch : int, optional
            Override ``config.train_epochs`` / ``config.train_steps_per_epoch``. With ``resume``, ``epochs`` is the
            total number of epochs, including those already done.
        verbose : int
            Keras progress output.
        seed : int, optional
            Seed of the training batches. Given a seed, the run is reproducible on a CPU: TensorFlow's op
            determinism is switched on for the run (see Notes), so the same initial weights, data and seed give the
            same trained weights. Without a seed the batches' seed is drawn from NumPy's global random state, so
            ``keras.utils.set_random_seed(s)`` before creating and training the model fixes the initial weights and
            the batches alike (op determinism stays off).
        resume : bool
            Continue an interrupted or finished training of this model folder from its last completed epoch: the
            weights of ``weights_last.h5``, the optimizer state, the learning rate and ``ReduceLROnPlateau``'s and
            the best checkpoint's state are restored from ``training_state.npz`` (written after every epoch), the
            epoch count continues, and the batches are those an uninterrupted run would have drawn (with the seed of
            the first run unless ``seed`` is given).

        Returns
        -------
        keras.callbacks.History
            ``history.history`` holds ``loss``, ``val_loss``, the metrics and ``lr``/``learning_rate`` (of this run).

        Notes
        -----
        After every epoch the model folder holds ``weights_last.h5`` (that epoch's weights), ``weights_best.h5``
        (the best validation loss so far) and ``training_state.npz``, each written under a temporary name and
        renamed, so an interrupted training never leaves a truncated file. Ctrl-C (``KeyboardInterrupt``) stops the
        training cleanly: the model gets the best weights of the completed epochs, a warning says how to resume,
        and the history of the completed epochs is returned.

        Op determinism (``tf.config.experimental.enable_op_determinism``) makes TensorFlow choose deterministic
        kernels; on a CPU it costs little (measured for this U-Net: a few percent per step), on a GPU more. It is
        switched off again after the run unless it was on before.

        Several devices (``tf.distribute``): create the model in the strategy's scope, then train it, in the scope
        or not::

            strategy = tf.distribute.MirroredStrategy()        # all local GPUs
            with strategy.scope():
                model = N2V(config, name, basedir)
            model.train(X, X_val)

        ``config.train_batch_size`` stays the global batch, what one step sees: each of the
        ``strategy.num_replicas_in_sync`` replicas gets ``train_batch_size / replicas`` patches of it (it must
        divide evenly, else :class:`ValueError`), so a seeded run draws the same batches on one device and on
        several. The gradients are summed over the replicas of the per-replica losses scaled by ``1 / replicas``
        (Keras' rule); every patch has the same number of blind-spot pixels, so this is the masked loss of the
        global batch. Batch normalisation (``config.batch_norm``) normalises with the statistics of each replica's
        patches; its moving statistics are averaged over the replicas before every validation, so all replicas
        validate, save and predict with the same ones.
        Validation patches are used in a multiple of the replica count (at most ``replicas - 1`` are left out,
        with a warning). The optimizer and metrics are created in the scope, the weight files are those of a
        single-device model (``N2V(None, name, basedir)`` loads them anywhere). Op determinism with several
        replicas depends on the devices' all-reduce.

        Several machines (``MultiWorkerMirroredStrategy``): every worker runs the same script (same data, config,
        ``name``, ``basedir`` and ``seed``) with its own ``TF_CONFIG`` environment variable, e.g. on worker 1 of two
        ``{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 1}}``::

            strategy = tf.distribute.MultiWorkerMirroredStrategy()   # first, before other TensorFlow calls
            with strategy.scope():
                model = N2V(config, name, basedir)
            model.train(X, X_val, seed=1)

        The replicas are those of all workers (``train_batch_size`` is still the global batch). The batch stream
        is sharded by data (``tf.data`` ``AutoShardPolicy.DATA``): each worker draws the whole stream and trains
        on its share of every batch. Only the chief (the ``chief`` task, else worker 0) writes the model folder
        (``config.json``, weights, training state, TensorBoard logs), so ``basedir`` may be one folder on a shared
        file system; the other workers write their checkpoints (the same weights) into a temporary folder of
        their own, deleted after the training, and end with the same best weights loaded. Tested on a CPU with
        two local worker processes.
        """
        c = self.config
        epochs = c.train_epochs if epochs is None else int(epochs)
        steps_per_epoch = c.train_steps_per_epoch if steps_per_epoch is None else int(steps_per_epoch)
        for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        strategy = self._strategy()
        replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
        if c.train_batch_size % replicas:
            raise ValueError(f"train_batch_size={c.train_batch_size} is not divisible by the {replicas} replicas of the "
                             f"{type(strategy).__name__}: it is the global batch of one step, split evenly over the "
                             f"replicas; use a multiple of {replicas}, e.g. train_batch_size="
                             f"{replicas * max(1, round(c.train_batch_size / replicas))}")
        restore = self._resume_state(epochs) if resume else None
        if restore is not None and seed is None:
            seed = int(restore["seed"])
        initial_epoch = 0 if restore is None else int(restore["epoch"])
        train_imgs = as_image_list(X, c.n_dim, c.n_channel_in, "X")
        val_imgs = as_image_list(validation_X, c.n_dim, c.n_channel_in, "validation_X")
        n_train = sum(int(np.prod(im.shape)) for im in train_imgs)
        n_val = sum(int(np.prod(im.shape)) for im in val_imgs)
        if n_val / (n_train + n_val) < 0.05:
            warnings.warn(f"small number of validation images (only {100 * n_val / (n_train + n_val):.1f}% of all "
                          "images)", stacklevel=2)
        means, stds = c.normalization()
        masking = dict(self._masking(), means=means, stds=stds)
        train_data = N2VSequence(X if isinstance(X, np.ndarray) else train_imgs, c.n2v_patch_shape,
                                 batch_size=c.train_batch_size, steps_per_epoch=steps_per_epoch, seed=seed,
                                 augment=bool(getattr(c, "train_augment", False)), **masking)
        val_data = validation_data(validation_X if isinstance(validation_X, np.ndarray) or is_lazy(validation_X)
                                   else val_imgs, c.n2v_patch_shape, div_by=2 ** c.unet_n_depth, **masking)
        val_data = _even_validation(val_data, replicas)
        with self._strategy_scope():
            if not self._model_prepared:
                self.prepare_for_training()
            if restore is not None:
                self._restore_optimizer(restore)
        with self._worker_folder():
            callbacks = list(self.callbacks)
            if replicas > 1:
                callbacks.insert(0, _AverageMovingStatistics(strategy))
            state = None
            if self.basedir is not None:
                state = _EpochState(self, train_data.seed, initial_epoch, restore)
                callbacks.append(state)
            with _op_determinism(seed is not None), self._strategy_scope(), \
                    _multi_worker_fit(self.keras_model, strategy, val_data):
                stream = train_data.tf_dataset(initial_epoch)
                if strategy is None:
                    _build_training_state(self.keras_model, stream.element_spec)
                try:
                    history = self.keras_model.fit(stream,
                                                   steps_per_epoch=len(train_data), validation_data=val_data,
                                                   epochs=epochs, initial_epoch=initial_epoch,
                                                   validation_batch_size=c.train_batch_size, callbacks=callbacks,
                                                   shuffle=False, verbose=verbose)
                except KeyboardInterrupt:
                    return self._interrupted(state)
            self._training_finished()
            recalibrate = c.batch_norm and getattr(c, "train_recalibrate_bn", False)
            calibrate = getattr(c, "train_calibrate_output", False)
            if recalibrate:
                self._recalibrate_batch_norm(train_data, epochs * steps_per_epoch)  # a resumed run: the whole one
            if calibrate:
                self._calibrate_output(val_data)
            if recalibrate or calibrate:
                self._save_trained_weights()
        return history

    def _masking(self) -> dict:
        """The masking arguments of :func:`n2v_tf.masking.mask_batch` that the config asks for."""
        c = self.config
        return {"perc_pix": c.n2v_perc_pix, "manipulator": c.n2v_manipulator, "radius": c.n2v_neighborhood_radius,
                "struct_mask": None if c.structN2Vmask is None else np.array(c.structN2Vmask),
                "struct_replacement": getattr(c, "n2v_struct_replacement", "patch")}

    def _recalibrate_batch_norm(self, train_data: N2VSequence, steps: int) -> None:
        """``config.train_recalibrate_bn``: moving statistics from the batch statistics of the trained network on
        unmasked training batches (seeded by the training seed; as many as the training's steps, at most
        :data:`BN_RECALIBRATION_BATCHES`); :meth:`train` then writes them into the weight file the model stands for."""
        n = max(1, min(BN_RECALIBRATION_BATCHES, int(steps)))
        rng = np.random.default_rng((train_data.seed, 2**31 - 1))  # a stream of its own, not a training batch's
        t0 = time.perf_counter()
        used = recalibrate_batch_norm(self.keras_model, (train_data.crop_batch(rng) for _ in range(n)))
        logger.info("batch normalisation recalibrated on %d training batches in %.1f s", used, time.perf_counter() - t0)

    def _calibrate_output(self, val_data: tuple[np.ndarray, np.ndarray]) -> None:
        """``config.train_calibrate_output``: fit the output's gain and offset per channel on the blind-spot pixels of
        the validation patches (:func:`n2v_tf.nets.calibrate_output`) and fold them into the network; skipped with a
        warning where they cannot be fitted. The patches as masked for validation, then masked anew (fixed seed)
        until about :data:`CALIBRATION_PIXELS` pixels per channel are fitted (at most :data:`CALIBRATION_MAX_DRAWS`
        draws, one prediction of the validation patches each)."""
        c = self.config
        if c.unet_last_activation != "linear":
            warnings.warn(f"train_calibrate_output: not applied, the output has unet_last_activation="
                          f"{c.unet_last_activation!r} and a gain and offset fold exactly only into a linear output; "
                          "set train_calibrate_output=False to silence this", stacklevel=3)
            return
        X, Y = val_data
        n_channel = int(c.n_channel_in)
        per_draw = max(1.0, float((np.asarray(Y[..., n_channel:]) > 0).sum()) / n_channel)
        draws = int(min(CALIBRATION_MAX_DRAWS, math.ceil(CALIBRATION_PIXELS / per_draw)))
        patches = Y[..., :n_channel]  # the validation patches, unmasked and normalised
        chunk = max(int(c.train_batch_size), CALIBRATION_CHUNK // int(np.prod(patches.shape[1:-1])))  # per call

        def batches():
            for i in range(0, len(X), chunk):  # the validation patches as validated
                yield X[i:i + chunk], Y[i:i + chunk]
            rng = np.random.default_rng(1)  # fixed, as the validation masking (seed 0), so a rerun fits the same
            left, group = draws - 1, max(1, chunk // len(patches))
            while left > 0:  # new masks of them; few patches: several draws masked and predicted together
                g = min(group, left)
                xm, y = mask_batch(np.concatenate([patches] * g), rng=rng, **self._masking())
                for i in range(0, len(xm), chunk):
                    yield xm[i:i + chunk], y[i:i + chunk]
                left -= g

        t0 = time.perf_counter()
        try:
            gains, offsets = calibrate_output(self.keras_model, batches(), residual=bool(c.unet_residual),
                                              n_out_per_channel=int(c.pn2v_samples) if c.probabilistic else 1)
        except ValueError as e:
            warnings.warn(f"train_calibrate_output: not applied ({e}); give more validation data", stacklevel=3)
            return
        self.output_calibration = {"gain": gains.tolist(), "offset": offsets.tolist()}
        far = [f"channel {i}: {g:.3f}" for i, g in enumerate(gains) if not 0.5 <= g <= 2]
        if far:
            warnings.warn(f"train_calibrate_output: fitted gain far from 1 ({'; '.join(far)}): the prediction hardly "
                          "follows the validation data, so the network is far from trained (train longer) or the "
                          "validation data differ from the training data; the calibration was applied", stacklevel=3)
        logger.info("output calibrated on %d mask draw(s) of the validation patches in %.1f s: gain %s, offset %s "
                    "(normalised units)", draws, time.perf_counter() - t0, np.round(gains, 4).tolist(),
                    np.round(offsets, 4).tolist())

    def _save_trained_weights(self) -> None:
        """Write the network's weights into the file the model stands for (the one CSBDeep's ``_training_finished``
        loaded, or the last weights); only the folder's writer does (see :meth:`_worker_folder`)."""
        c = self.config
        path = self._trained_weights(c.train_checkpoint) if c.train_checkpoint is not None else c.train_checkpoint_last
        if self.basedir is not None and self._writes_folder and path is not None:
            self.keras_model.save_weights(str(self.logdir / path))

    @contextlib.contextmanager
    def _worker_folder(self):
        """Multi-worker training on a worker other than the chief: a temporary folder stands in for the model folder.

        Only the chief writes ``basedir/name``. The other workers hold the same weights (the replicas stay in sync),
        so each writes its checkpoints into a folder of its own and reloads the best weights from there at the end, as
        the chief does from the model folder. For the block, ``logdir`` and the paths of the callbacks that write into
        it (checkpoints, TensorBoard) point to that folder, which is deleted afterwards. A no-op on the chief and
        without a multi-worker strategy.
        """
        if self.basedir is None or self._writes_folder:
            yield
            return
        folder = self.logdir
        moved = [(cb, attr, getattr(cb, attr)) for cb in self.callbacks for attr in ("filepath", "log_dir")
                 if isinstance(getattr(cb, attr, None), str) and Path(getattr(cb, attr)).is_relative_to(folder)]
        with tempfile.TemporaryDirectory(prefix="n2v_tf_worker_") as tmp:
            self.logdir = Path(tmp)
            for cb, attr, path in moved:
                setattr(cb, attr, str(self.logdir / Path(path).relative_to(folder)))
            try:
                yield
            finally:
                self.logdir = folder
                for cb, attr, path in moved:
                    setattr(cb, attr, path)

    def _strategy(self):
        """The ``tf.distribute`` strategy the network was built under; ``None`` without one (or another backend)."""
        if keras.backend.backend() != "tensorflow":
            return None
        built = getattr(self.keras_model, "_distribute_strategy", None)  # set by Keras when built in a scope
        current = _current_strategy()
        if current is not None and current is not built:
            raise ValueError(f"this model was built {'outside any' if built is None else 'under another'} "
                             f"tf.distribute strategy but is trained inside the scope of a {type(current).__name__}: "
                             "create the model inside the scope, `with strategy.scope(): model = N2V(config, name, "
                             "basedir)`, then train it (inside or outside the scope)")
        return built

    def _strategy_scope(self):
        """The scope of :meth:`_strategy` (a no-op context without a strategy)."""
        strategy = self._strategy()
        return contextlib.nullcontext() if strategy is None else strategy.scope()

    def _resume_state(self, epochs: int) -> dict:
        """The saved training state of this model folder, checked, with the last weights loaded."""
        if self.basedir is None:
            raise ValueError("resume=True needs a model folder (basedir) that holds the state of an earlier training")
        path = self.logdir / TRAINING_STATE
        if not path.exists():
            raise FileNotFoundError(f"resume=True: {path} does not exist: no epoch of an earlier training of this "
                                    "model was completed (or it was trained by n2v 0.3.x or an older n2v_tf); "
                                    "train without resume")
        try:
            with np.load(path, allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise OSError(f"resume=True: cannot read {path} ({e}): it is corrupt; train without resume") from e
        done = int(state["epoch"])
        if done >= epochs:
            raise ValueError(f"resume=True: {self.logdir} was already trained for {done} epoch(s), epochs={epochs}: "
                             f"pass a larger total, e.g. model.train(X, X_val, epochs={done + epochs}, resume=True)")
        last = self.config.train_checkpoint_last or "weights_last.h5"
        self.load_weights(last)
        return state

    def _restore_optimizer(self, state: dict) -> None:
        opt = self.keras_model.optimizer
        opt.build(self.keras_model.trainable_variables)
        paths = [str(p) for p in state["optimizer_paths"]]
        if len(paths) != len(opt.variables) or any(
                tuple(state[f"optimizer_{i}"].shape) != tuple(v.shape) for i, v in enumerate(opt.variables)):
            raise ValueError(f"resume=True: the optimizer state in {self.logdir / TRAINING_STATE} does not fit this "
                             f"model's optimizer ({type(opt).__name__} with {len(opt.variables)} variables, the file "
                             f"has {len(paths)}): resume with the optimizer of the first run")
        for i, v in enumerate(opt.variables):
            v.assign(state[f"optimizer_{i}"])

    def _interrupted(self, state: _EpochState | None) -> keras.callbacks.History:
        """Ctrl-C during ``fit``: keep the files of the completed epochs, load the best weights, say how to resume."""
        history = getattr(self.keras_model, "history", None)
        if not isinstance(history, keras.callbacks.History) or (state is not None and state.completed == state.initial):
            history = keras.callbacks.History()  # no epoch of this run completed
        if state is None:
            warnings.warn("training interrupted; this model has no model folder (basedir=None), so it keeps the "
                          "weights it had when it was stopped", stacklevel=3)
            return history
        done = state.completed
        if done == 0:
            warnings.warn(f"training interrupted during its first epoch: nothing was saved in {self.logdir}; "
                          "train again", stacklevel=3)
            return history
        trained = self._trained_weights(self.config.train_checkpoint or "best")
        if (self.logdir / trained).exists():
            self.load_weights(trained)
        if self.config.train_checkpoint_epoch is not None:
            (self.logdir / self.config.train_checkpoint_epoch).unlink(missing_ok=True)
        warnings.warn(f"training interrupted after {done} completed epoch(s): {self.logdir} holds the weights of "
                      f"epoch {done} (weights_last.h5) and the best ones (weights_best.h5); {trained} is loaded. "
                      "Continue with model.train(X, X_val, resume=True), or N2V(None, name, basedir).train(X, X_val, "
                      "resume=True) in a new session.", stacklevel=3)
        return history

    # ------------------------------------------------------------------ prediction
    def _axes_tile_overlap(self, query_axes: str) -> tuple[int, ...]:
        query_axes = axes_check_and_normalize(query_axes)
        r = config_receptive_field(self.config)
        return tuple((r if a in "XYZT" else 0) for a in query_axes)

    def predict(self, img: np.ndarray, axes: str, resizer: Resizer = _DEFAULT_RESIZER,
                n_tiles: Sequence[int] | None = None, tta: bool = False, *, pn2v_output: str = "mmse",
                nan_policy: str = "raise", match_mean: bool = False, calibrate: int | str = 0,
                calibrate_bins: int | None = None) -> np.ndarray:
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
        nan_policy : {'raise', 'fill'}
            What to do with NaN/Inf pixels, which the network would spread over its whole receptive field:
            ``'raise'`` (default) refuses the image; ``'fill'`` predicts with them replaced by the mean of the finite
            pixels of their channel, warns, and sets them to NaN in the output.
        match_mean : bool
            N2V models only: shift each channel of each image (each ``S``/``T`` entry on its own) by a constant so that
            its mean equals the mean of the input's channel (finite pixels). Removes a global offset that a network
            can pick up on images unlike its training data; see Notes. Needs the whole image: not available in
            block-wise prediction.
        calibrate : int or 'auto'
            N2V models only: if > 0, mask the image this many times with the model's own masking, predict each masked
            copy, and map the prediction of each channel (of each ``S``/``T`` entry on its own) through the curve that
            best maps the predictions at the blind spots onto the noisy pixels there (least squares; a continuous
            piecewise-linear curve, :func:`n2v_tf.nets.fit_curve`). ``'auto'``: as many draws as give
            :data:`CALIBRATION_IMAGE_PIXELS` blind spots per channel, at most :data:`CALIBRATION_IMAGE_MAX_DRAWS`
            (8 for a 512x512 image at 1.5 % masked pixels, 1 from 2 megapixels on). Costs that many further
            predictions (no ``tta`` for them). Block-wise prediction fits the curve on masked blocks instead
            (:func:`n2v_tf.large.predict_blocks`). See Notes.
        calibrate_bins : int, optional
            Segments of that curve; default: one per :data:`CALIBRATION_PIXELS_PER_BIN` blind spots of the channel,
            from 1 to :data:`CALIBRATION_MAX_BINS`. ``1``: a gain and an offset only (a straight line), what training
            fits on the validation data (``config.train_calibrate_output``).

        Returns
        -------
        numpy.ndarray
            Denoised image, float32, same shape and axes as ``img``.

        Raises
        ------
        ValueError
            Axes or channels that do not fit the model, NaN/Inf pixels with ``nan_policy='raise'``, ``n_tiles``
            that make tiles smaller than the ``2**unet_n_depth`` pixels the network needs, or ``match_mean`` with a
            PN2V model.

        Notes
        -----
        An N2V network is trained to predict ``E[x_i | neighbourhood of i]``, the expected noisy value of pixel ``i``
        given the pixels around it (which is the signal when the noise has zero mean). Averaged over an image, these
        expectations equal the image mean of the noisy values up to the noise's standard deviation divided by the
        square root of the number of pixels, whatever the noise. ``match_mean=True`` enforces that on every image:
        it corrects a constant offset of the network on that image and nothing else. Measured in
        ``benchmarks/README.md`` ("mean matching"): +0.2 to +0.3 dB on the natural-image set (the network's offset
        on the two test images varied between seeds by up to 2 grey levels of 255), no change on fluorescence.
        PN2V's MMSE estimate is not such an expectation, so PN2V models refuse the option.

        ``calibrate`` goes further: at a blind spot the prediction ``f`` has not seen the pixel's noise, so for
        zero-mean noise that is independent between pixels any function ``g`` fitted to the noisy pixels,
        ``E[(noisy - g(f))^2] = E[(clean - g(f))^2] + var(noise)``, is fitted to the clean image (see
        :func:`n2v_tf.nets.calibrate_output`); the best such ``g`` is ``E[clean | f]``, which the curve estimates.
        Fitted to the image being denoised, it corrects how a network maps intensities on an image unlike its
        training data (a tone curve that depends on the training images and the seed). Measured in
        ``benchmarks/README.md`` (issue 15, seventh session), ``'auto'``: on the natural-image set, whose test images
        differ from the training images, +0.6 to +1.7 dB per model over the plain prediction and +0.5 to +1.0 dB
        over a straight line (within 0.1 dB of the curve fitted with the clean image), and the seed spread falls
        from 0.7-1.0 to about 0.2 dB; on the 3D fluorescence set +0.03 to +0.37 dB; on a 512x128 fluorescence
        image like the training data -0.03 to +0.02 dB. Time: 6-7x a plain prediction for a 512x512 image (8
        draws), 3.5x for a 60x256x64 volume (3 draws).
        """
        c = self.config
        img = np.asarray(img)
        axes, n_tiles = self._check_predict_args(img, axes, n_tiles, nan_policy, match_mean, calibrate,
                                                 calibrate_bins)
        sample = next((a for a in "ST" if a in axes), None)
        if sample is not None:  # images one by one
            i = axes.index(sample)
            sub_tiles = None if n_tiles is None else n_tiles[:i] + n_tiles[i + 1:]
            out = [self.predict(im, axes.replace(sample, ""), resizer, sub_tiles, tta, pn2v_output=pn2v_output,
                                nan_policy=nan_policy, match_mean=match_mean, calibrate=calibrate,
                                calibrate_bins=calibrate_bins)
                   for im in np.moveaxis(img, i, 0)]
            return np.moveaxis(np.stack(out), 0, i)
        n_ch = img.shape[axes.index("C")] if "C" in axes else 1
        if n_ch != c.n_channel_in:
            raise ValueError(f"img has {n_ch} channel(s) (axes {axes!r}, shape {img.shape}) but the model expects "
                             f"{c.n_channel_in}" + ("; add 'C' to axes" if "C" not in axes else ""))
        x = np.moveaxis(img, axes.index("C"), -1) if "C" in axes else img[..., np.newaxis]
        net_axes = axes.replace("C", "") + "C"
        if n_tiles is not None:
            n_tiles = tuple(n_tiles[axes.index(a)] for a in net_axes) if "C" in axes else n_tiles + (1,)
        x, bad = self._non_finite(x.astype(np.float32, copy=False), nan_policy)
        means, stds = c.normalization()
        raw, x = x, normalize(x, means, stds)
        if c.probabilistic and pn2v_output == "samples":
            if (n_tiles is not None and np.prod(n_tiles) > 1) or tta:
                raise ValueError("pn2v_output='samples' supports neither tiling nor tta")
            padded = resizer.before(x, net_axes, self._axes_div_by(net_axes))
            out = resizer.after(self.keras_model.predict(padded[np.newaxis], verbose=0)[0], net_axes)
            return denormalize(out, means[0], stds[0])
        net = self._inference(pn2v_output, means, stds)
        pred = self._predict_tiles(x, net_axes, n_tiles, tta, resizer, net)
        if calibrate:
            pred = self._calibrate_to_image(x, pred, calibrate, calibrate_bins, lambda xm: self._predict_tiles(
                xm, net_axes, n_tiles, False, resizer, net))
        pred = denormalize(pred, means, stds)
        if match_mean:
            pred = _match_channel_means(pred, raw, bad)
        if bad is not None:
            pred[bad] = np.nan
        return np.moveaxis(pred, -1, axes.index("C")) if "C" in axes else pred[..., 0]

    def _calibrate_to_image(self, x: np.ndarray, pred: np.ndarray, draws: int | str, bins: int | None,
                            predict) -> np.ndarray:
        """``predict(..., calibrate=draws, calibrate_bins=bins)``: ``pred`` of the normalised image ``x``
        (``(*spatial, C)``) mapped per channel through the least-squares curve of ``x`` on ``predict(masked x)`` at
        the blind spots of the maskings (fixed seed, so a call is reproducible)."""
        whole = (slice(None),) * (x.ndim - 1)
        return apply_curves(pred, self._calibration_curves(lambda k: (x, whole), predict, draws, bins))

    def _calibration_curves(self, region, predict, draws: int | str, bins: int | None, parts: int = 1) -> list:
        """The least-squares curve per channel of the noisy values on the prediction at the blind spots of
        ``draws`` maskings of an image in ``parts`` parts (``'auto'``: until :data:`CALIBRATION_IMAGE_PIXELS` per
        channel, at most :data:`CALIBRATION_IMAGE_MAX_DRAWS` maskings); draw ``k`` (of ``draws * parts``) masks ``x``
        of ``region(k) -> (x, core)`` (normalised, ``(*spatial, C)``) and keeps the blind spots inside ``core``
        (slices of ``x``); ``predict(masked x)``. The masks are drawn with a fixed seed, so a call is reproducible.
        Returns ``[(knots, values), ...]``."""
        rng = np.random.default_rng(0)
        n_ch = self.config.n_channel_in
        f, t = [[] for _ in range(n_ch)], [[] for _ in range(n_ch)]
        for k in range((CALIBRATION_IMAGE_MAX_DRAWS if draws == "auto" else int(draws)) * int(parts)):
            x, core = region(k)
            masked, y = mask_batch(x[np.newaxis], rng=rng, **self._masking())
            fm, at, xc = predict(masked[0])[core], (y[0, ..., n_ch:] > 0)[core], x[core]
            for ch in range(n_ch):
                f[ch].append(fm[..., ch][at[..., ch]])
                t[ch].append(xc[..., ch][at[..., ch]])
            if draws == "auto" and min(sum(len(v) for v in fc) for fc in f) >= CALIBRATION_IMAGE_PIXELS:
                break
        curves = []
        for ch in range(n_ch):
            fc, tc = np.concatenate(f[ch]), np.concatenate(t[ch])
            n_bins = bins or int(np.clip(len(fc) // CALIBRATION_PIXELS_PER_BIN, 1, CALIBRATION_MAX_BINS))
            try:
                curves.append(fit_curve(fc, tc, n_bins))
            except ValueError as e:
                raise ValueError(f"calibrate={draws!r}, channel {ch}: {e}; use more draws, fewer calibrate_bins or a "
                                 "larger image") from None
        return curves

    def _check_predict_args(self, img: np.ndarray, axes: str, n_tiles, nan_policy: str, match_mean: bool = False,
                            calibrate: int | str = 0,
                            calibrate_bins: int | None = None) -> tuple[str, tuple[int, ...] | None]:
        """Normalised axes and ``n_tiles`` of a ``predict`` call, or a ValueError that says what does not fit."""
        c = self.config
        axes = axes_check_and_normalize(axes, img.ndim)
        spatial = "ZYX" if c.n_dim == 3 else "YX"
        if set(axes) - set("CST") != set(spatial):
            raise ValueError(f"axes {axes!r} do not fit this {c.n_dim}D model: it needs the axes {spatial!r}, "
                             "optionally 'C' and one sample axis 'S' or 'T'")
        if "S" in axes and "T" in axes:
            raise ValueError(f"axes {axes!r}: use only one of 'S' and 'T'")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        if match_mean and c.probabilistic:
            raise ValueError("match_mean=True is for N2V models, whose prediction estimates E[x | neighbourhood]; "
                             "this is a PN2V model (its MMSE estimate also uses the pixel itself): predict without it")
        _check_calibrate(calibrate, calibrate_bins, c.probabilistic)
        n_tiles = None if n_tiles is None else tuple(int(t) for t in n_tiles)
        if n_tiles is not None and len(n_tiles) != img.ndim:
            raise ValueError(f"n_tiles must have one entry per axis of img ({axes!r}), got {n_tiles}")
        if n_tiles is not None:
            self._check_tiles(img.shape, axes, n_tiles)
        return axes, n_tiles

    def _inference(self, pn2v_output: str, means: np.ndarray, stds: np.ndarray) -> CompiledNetwork:
        """The compiled inference network that tiled prediction runs: the trained network with batch norm folded into
        its convolutions (PN2V: with the MMSE head, keeping the MMSE estimate or the prior mean). Built once and
        reused until the weights, the noise model or the normalisation change."""
        c = self.config
        if c.probabilistic:
            if pn2v_output not in ("mmse", "prior_mean"):
                raise ValueError(f"pn2v_output must be 'mmse', 'prior_mean' or 'samples', got {pn2v_output!r}")
            if pn2v_output == "mmse" and self.noise_model is None:
                raise ValueError("pn2v_output='mmse' needs the noise model: N2V(..., noise_model=...)")
        key = (weights_fingerprint(self.keras_model), id(self.keras_model), id(self.noise_model),
               pn2v_output if c.probabilistic else None, float(means[0]), float(stds[0]))
        cache = getattr(self, "_inference_cache", None)
        if cache is None or cache[0] != key:
            if c.probabilistic:
                net = self._pn2v_head(fold_batch_norm(self.keras_model), key[-2], key[-1])
                compiled = CompiledNetwork(net, 0 if pn2v_output == "mmse" else 1)
            elif self._precision in (None, "float32"):  # fold when tracing; a first small call runs eagerly
                compiled = CompiledNetwork(lambda: fold_batch_norm(self.keras_model), eager=self.keras_model)
            else:  # a float32 folded copy of a mixed network; a first small call runs it eagerly, as above
                folded = fold_batch_norm(self.keras_model)
                compiled = CompiledNetwork(folded, eager=folded)
            cache = self._inference_cache = (key, compiled)
        return cache[1]

    def _pn2v_head(self, net: keras.Model, mean: float, std: float) -> keras.Model:
        """Normalised image -> normalised (MMSE estimate, prior mean): the network of the exported package
        (:func:`n2v_tf.export_layers.pn2v_mmse_network`) with the prior mean as a second channel. Without a noise
        model both channels are the prior mean."""
        inp = keras.Input(net.input_shape[1:])
        network = keras.Model(inp, net(inp))  # a graph of its own around the trained layers
        from .export_layers import pn2v_mmse_network, sample_mean_layer
        if self.noise_model is None:
            prior = sample_mean_layer(net.output_shape[-1])(network.output)
            return keras.Model(inp, keras.layers.Concatenate(axis=-1)([prior, prior]))
        return pn2v_mmse_network(network, self.noise_model, mean, std, with_prior=True)

    def _predict_tiles(self, x: np.ndarray, net_axes: str, n_tiles, tta: bool, resizer: Resizer,
                       net: CompiledNetwork) -> np.ndarray:
        """Tiled prediction (:func:`n2v_tf.tiling.predict_tiles`) of a normalised channel-last image, each tile
        averaged over the 8 YX transforms if ``tta``."""
        block = 2 ** self.config.unet_n_depth
        padded = resizer.before(x, net_axes, self._axes_div_by(net_axes))
        spatial = padded.shape[:-1]
        if any(s % block for s in spatial):
            raise ValueError(f"the resizer {type(resizer).__name__} gave an image of spatial shape {spatial}, not "
                             f"divisible by 2**unet_n_depth = {block}: use csbdeep's PadAndCropResizer (the default)")
        tiles = (1,) * len(spatial) if n_tiles is None else n_tiles[:-1]
        cores = [core_size(s, t, block) for s, t in zip(spatial, tiles)]
        n_out = self.keras_model.output_shape[-1] if net.output_index is None else 1
        out = np.empty(spatial + (n_out,), np.float32)

        def write(region, pred):
            out[region] = pred

        overlap = config_receptive_field(self.config)
        predict_tiles(lambda region: padded[region], write, spatial, cores, overlap, block, net, tta=tta)
        return resizer.after(out, net_axes)

    def _check_tiles(self, shape: Sequence[int], axes: str, n_tiles: Sequence[int]) -> None:
        """Refuse ``n_tiles`` < 1, or so large that a tile is smaller than the network's ``2**unet_n_depth`` block."""
        block = 2 ** self.config.unet_n_depth
        for a, size, t in zip(axes, shape, n_tiles):
            if t < 1:
                raise ValueError(f"n_tiles must be positive, got {tuple(n_tiles)} for axes {axes!r}")
            if a in "ZYX" and t > 1 and math.ceil(size / t) < block:
                raise ValueError(f"n_tiles={tuple(n_tiles)}: {t} tiles along {a} ({size} px) would be "
                                 f"{math.ceil(size / t)} px each, smaller than the {block} px (2**unet_n_depth) the "
                                 f"network needs; use at most {max(1, size // block)} tiles along {a}")

    @staticmethod
    def _non_finite(x: np.ndarray, nan_policy: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply ``nan_policy`` to a channel-last image: (image to predict, mask of its NaN/Inf pixels or None)."""
        bad = ~np.isfinite(x)
        if not bad.any():
            return x, None
        n = int(bad.sum())
        if nan_policy == "raise":
            raise ValueError(f"img contains {n} NaN/Inf value(s) ({100 * n / bad.size:.3g}% of the pixels): the "
                             "network would spread each of them over its receptive field. Replace them (e.g. "
                             "numpy.nan_to_num or an inpainting), or pass nan_policy='fill' to predict with them "
                             "replaced by the channel mean and get NaN at those pixels")
        warnings.warn(f"img contains {n} NaN/Inf value(s): predicted with them replaced by the mean of their "
                      "channel; they are NaN in the output (nan_policy='fill')", stacklevel=3)
        finite = np.where(bad, 0, x)
        counts = np.maximum((~bad).reshape(-1, x.shape[-1]).sum(0), 1)
        fill = (finite.reshape(-1, x.shape[-1]).sum(0) / counts).astype(np.float32)
        return np.where(bad, fill, x), bad

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
            Output ``.zip``, or a folder (created if needed) that gets ``<folder name>.bioimage.io.zip`` as in n2v
            (default ``<model folder>/export.bioimage.io.zip``). A ``test_img`` smaller than the network's minimum
            input size is reflect-padded to it (noted in the package's README).
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


def _current_strategy():
    """The ``tf.distribute`` strategy whose scope this code runs in; ``None`` outside any (or on another backend)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def _writes_model_folder(strategy) -> bool:
    """Whether this process writes the model folder: not on the workers of a multi-worker strategy
    (``MultiWorkerMirroredStrategy``) other than the chief (the ``chief`` task, else worker 0)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def _multi_worker_fit(model: keras.Model, strategy, batch: tuple[np.ndarray, np.ndarray]):
    """Work around two failures of Keras 3's ``fit``/``evaluate`` (TensorFlow trainer, seen in Keras 3.15) under a
    ``MultiWorkerMirroredStrategy`` of several workers; a no-op with any other strategy.

    1. ``_maybe_symbolic_build`` averages the first distributed ``(x, y)`` batch over the replicas with
       ``strategy.reduce``, which this strategy cannot do for a tuple ("ValueError: Attempt to convert a value
       (PerReplica: ...) with an unsupported type ... to a Tensor"). The batch only lends its shapes to build the
       model's state, so here Keras builds from ``batch``, arrays of this process.
    2. Each step's scalar logs (loss, metrics) are averaged over the replicas with ``strategy.reduce("MEAN", v,
       axis=0)``, which fails for a 0-d value ("Invalid reduction dimension 0 for input with 0 dimensions";
       tensorflow/tensorflow#72388). Here the steps return them with a length-1 axis, which that reduction removes.

    The model's train/test steps, losses and epoch logs are unchanged otherwise.
    """
    import tensorflow as tf
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):  # the condition of Keras' failing code path
        yield
        return
    cls = type(model)

    def symbolic_build(iterator=None, data_batch=None):
        return cls._maybe_symbolic_build(model, data_batch=batch if data_batch is None else data_batch)

    def with_axis(step):
        def run(data):
            return keras.tree.map_structure(lambda v: keras.ops.reshape(v, (1,)) if len(v.shape) == 0 else v,
                                            step(model, data))
        return run

    patches = {"_maybe_symbolic_build": symbolic_build, "train_step": with_axis(cls.train_step),
               "test_step": with_axis(cls.test_step)}
    for name, f in patches.items():
        setattr(model, name, f)
    try:
        yield
    finally:
        for name in patches:
            delattr(model, name)


def _match_channel_means(pred: np.ndarray, x: np.ndarray, bad: np.ndarray | None) -> np.ndarray:
    """``pred`` (channel-last) shifted per channel so that its mean equals ``x``'s over the finite pixels (``~bad``)."""
    flat_p, flat_x = pred.reshape(-1, pred.shape[-1]), x.reshape(-1, x.shape[-1])
    good = True if bad is None else ~bad.reshape(flat_p.shape)
    shift = flat_x.mean(0, dtype=np.float64, where=good) - flat_p.mean(0, dtype=np.float64, where=good)
    return pred + shift.astype(np.float32)


def _even_validation(val_data: tuple[np.ndarray, np.ndarray], replicas: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation patches in a multiple of ``replicas``: the last validation batch then splits evenly over the
    replicas (a replica given no patch fails in TensorFlow's batch normalisation). Drops at most ``replicas - 1``."""
    n = len(val_data[0])
    if replicas <= 1 or n % replicas == 0:
        return val_data
    if n < replicas:
        raise ValueError(f"validation_X gives {n} validation patch(es), fewer than the {replicas} replicas of the "
                         "tf.distribute strategy: give more validation data (at least one patch per replica)")
    warnings.warn(f"validation: {n % replicas} of {n} validation patches left out, so that each of the {replicas} "
                  "replicas gets the same number", stacklevel=3)
    return tuple(v[:n - n % replicas] for v in val_data)


def _build_training_state(model: keras.Model, batch_spec) -> None:
    """Create the optimizer's and the compiled metrics' variables before ``fit`` traces its training step.

    Without a distribution strategy Keras 3 defers this to the first trace of the step function; a
    ``tf.function`` that creates variables is traced twice (once to create them, once more to run), so every
    training paid for a second trace of the whole forward/backward/Adam graph (about 4 s for a tiny network on
    2 CPU cores, more for a real one). Building them here, symbolically from the shapes of the batch stream
    (``batch_spec``, the ``element_spec`` of the ``tf.data`` stream), leaves one trace; the variables start with
    the same values (zeros), so the training is unchanged. Uses Keras' own ``Trainer._symbolic_build`` (what
    ``fit`` runs under a strategy); a Keras without it keeps the old behaviour.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=batch_spec)


@contextlib.contextmanager
def _op_determinism(on: bool):
    """Switch TensorFlow's op determinism on for a block (and off after it, unless it was on before)."""
    if not on or keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def _load_noise_model(logdir: Path):
    from .noise_models import load_noise_model
    noise_model = load_noise_model(logdir)
    if noise_model is None:
        warnings.warn(f"{logdir} holds a PN2V model without a noise model file: predict(..., pn2v_output='mmse') "
                      "needs N2V(None, name, basedir, noise_model=...)", stacklevel=3)
    return noise_model


# --------------------------------------------------------------------------- fully unsupervised PN2V

#: The fields that the default ``pn2v_config`` of :func:`train_pn2v_bootstrapped` takes from the config of the N2V
#: stage: the network's size, the patches and the training budget. The others are those of
#: ``N2VConfig.preset('pn2v', X)``.
PN2V_SHARED_FIELDS = ("unet_n_depth", "unet_n_first", "unet_kern_size", "n2v_patch_shape", "n2v_perc_pix",
                      "train_epochs", "train_steps_per_epoch", "train_batch_size", "train_learning_rate",
                      "train_tensorboard", "train_augment")
#: File name of the noise-model figure in the PN2V model folder.
NOISE_MODEL_FIGURE = "noise_model.png"


@dataclass
class PN2VBootstrapResult:
    """What :func:`train_pn2v_bootstrapped` returns.

    Attributes
    ----------
    n2v_model : N2V
        The plain N2V model of the first stage (folder ``basedir/n2v_name``), trained or reused.
    pn2v_model : N2V
        The PN2V model (folder ``basedir/name``, with the noise model file): ``pn2v_model.predict(img, axes)`` is the
        MMSE estimate.
    noise_model : GaussianMixtureNoiseModel or HistogramNoiseModel
        The bootstrapped noise model (also in ``pn2v_model.noise_model``).
    n2v_history : keras.callbacks.History or None
        The N2V training; ``None`` when the N2V model was reused.
    pn2v_history : keras.callbacks.History
        The PN2V training.
    figure : pathlib.Path or None
        ``basedir/name/noise_model.png`` (:func:`n2v_tf.qc.plot_noise_model`), or ``None`` if none was written.
    coverage : float
        Fraction of the N2V prediction inside the noise model's signal range (about ``1 - 2 * clip_percent / 100``:
        the clipped predictions lie outside it).
    seconds : dict of str to float
        Wall-clock seconds of the stages ``'n2v'`` (0 when reused), ``'noise_model'`` (prediction and fit) and
        ``'pn2v'``.
    """

    n2v_model: N2V
    pn2v_model: N2V
    noise_model: Any
    n2v_history: keras.callbacks.History | None
    pn2v_history: keras.callbacks.History
    figure: Path | None
    coverage: float
    seconds: dict[str, float] = field(default_factory=dict)


class _CachingPredictor:
    """Passes ``predict`` on to an N2V model and keeps the predictions (the figure then needs no second pass)."""

    def __init__(self, model: N2V):
        self.model, self.config, self.predictions = model, model.config, []

    def predict(self, img, axes, **kwargs):
        pred = self.model.predict(img, axes, **kwargs)
        self.predictions.append(pred)
        return pred


def _check_bootstrap_folders(basedir: str | Path, name: str, n2v_name: str, overwrite: bool,
                             reuse_n2v: bool) -> tuple[Path, Path]:
    """The folders ``(basedir/name, basedir/n2v_name)`` of :func:`train_pn2v_bootstrapped`, checked before training.

    Raises :class:`ValueError` (same names), :class:`FileExistsError` (a folder that would be replaced without
    ``overwrite``/``reuse_n2v``) or :class:`FileNotFoundError` (``reuse_n2v`` without a trained N2V model).
    """
    for label, value in (("name", name), ("n2v_name", n2v_name)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{label} must be a non-empty str (a folder name), got {value!r}")
    if n2v_name == name:
        raise ValueError(f"n2v_name must differ from name ({name!r}): the N2V and PN2V models need two folders")
    basedir = Path(basedir)
    folder, n2v_folder = basedir / name, basedir / n2v_name
    if (folder / "config.json").exists() and not overwrite:
        raise FileExistsError(f"model folder '{folder}' already exists: choose another name or pass overwrite=True")
    if reuse_n2v:
        if not (n2v_folder / "config.json").is_file():
            raise FileNotFoundError(f"reuse_n2v=True: no model '{n2v_name}' in '{basedir}' "
                                    f"('{n2v_folder / 'config.json'}' not found): train it first, or give the "
                                    "n2v_name of a trained N2V model")
    elif (n2v_folder / "config.json").exists() and not overwrite:
        raise FileExistsError(f"model folder '{n2v_folder}' (the N2V stage) already exists: pass reuse_n2v=True to "
                              "bootstrap from it, overwrite=True to retrain it, or choose another n2v_name")
    return folder, n2v_folder


def _bootstrap_images(images, axes: str, n_dim: int) -> tuple[list[np.ndarray], str]:
    """The noisy images of the bootstrap as a list, checked against ``axes`` (single channel, ``n_dim`` spatial)."""
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a str such as 'YX', 'ZYX' or 'SYX', got {type(axes).__name__}")
    axes = axes.upper()
    spatial = "".join(a for a in axes if a in "ZYX")
    if spatial != ("ZYX" if n_dim == 3 else "YX"):
        raise ValueError(f"axes {axes!r} do not fit the {n_dim}D training data: the images need the axes "
                         f"{'ZYX' if n_dim == 3 else 'YX'} (optionally S/T and C)")
    images = [images] if isinstance(images, np.ndarray) else list(images)
    if not images:
        raise ValueError("images: no images given (the noisy images the noise model is bootstrapped from)")
    out = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != len(axes):
            raise ValueError(f"images[{i}] has shape {img.shape} ({img.ndim} dimensions), but axes {axes!r} has "
                             f"{len(axes)} letters")
        if "C" in axes and img.shape[axes.index("C")] != 1:
            raise ValueError(f"PN2V works on single-channel images, but images[{i}] has {img.shape[axes.index('C')]} "
                             f"channels (axes {axes!r}, shape {img.shape}); bootstrap each channel on its own")
        out.append(img)
    return out, axes


def _check_stage_config(config, what: str, probabilistic: bool) -> None:
    if not isinstance(config, N2VConfig):
        raise TypeError(f"{what} must be an N2VConfig or None, got {type(config).__name__}")
    if bool(config.probabilistic) != probabilistic:
        raise ValueError(f"{what} must have probabilistic={probabilistic} (the "
                         f"{'PN2V' if probabilistic else 'plain N2V'} stage), got probabilistic={config.probabilistic}"
                         + ("; e.g. N2VConfig.preset('pn2v', X)" if probabilistic else ""))
    if config.n_channel_in != 1:
        raise ValueError(f"PN2V works on single-channel images, but {what} has n_channel_in={config.n_channel_in} "
                         "(multi-channel training data); bootstrap each channel on its own")
    config.validate()


def _new_model(config: N2VConfig, name: str, basedir: Path, overwrite: bool, seed: int | None,
               noise_model=None) -> N2V:
    if seed is not None:
        keras.utils.set_random_seed(seed)
    with warnings.catch_warnings():   # the folder checks came first: replacing one is what overwrite asked for
        warnings.filterwarnings("ignore", message="output path for model already exists")
        return N2V(config, name, basedir=str(basedir), overwrite=overwrite, noise_model=noise_model)


def _train_stage(model: N2V, X, X_val, what: str, seed: int | None, verbose: int
                 ) -> tuple[keras.callbacks.History, float, bool]:
    """Train ``model``; returns ``(history, seconds, completed)`` (``completed`` False after a Ctrl-C)."""
    t0 = time.perf_counter()
    try:
        history = model.train(X, X_val, verbose=verbose, seed=seed)
    except ValueError as e:
        raise ValueError(f"training the {what} model '{model.logdir}' failed: {e}") from e
    seconds = time.perf_counter() - t0
    logs = getattr(history, "history", {})
    best = min((float(v) for v in logs.get("val_loss", []) if np.isfinite(v)), default=float("nan"))
    logger.info("%s trained in %.0f s (best val_loss %.4g).", what, seconds, best)
    return history, seconds, len(logs.get("loss", [])) >= model.config.train_epochs


def _noise_model_figure(noise_model, signal: np.ndarray, observation: np.ndarray, path: Path, title: str
                        ) -> Path | None:
    from .qc import plot_noise_model
    try:
        plot_noise_model(noise_model, signal, observation, path=path, title=title)
    except ImportError as e:
        warnings.warn(f"{e}; no noise-model figure written", stacklevel=3)
        return None
    logger.info("Wrote the noise-model figure '%s'.", path)
    return path


def train_pn2v_bootstrapped(X: np.ndarray | Sequence[np.ndarray], X_val: np.ndarray | Sequence[np.ndarray],
                            images: np.ndarray | Sequence[np.ndarray], axes: str, name: str, basedir: str | Path, *,
                            n2v_config: N2VConfig | None = None, pn2v_config: N2VConfig | None = None,
                            n2v_name: str | None = None, kind: str = "gmm", clip_percent: float = 0.5,
                            noise_model_kwargs: Mapping[str, Any] | None = None, reuse_n2v: bool = False,
                            overwrite: bool = False, qc_figure: bool = True, n_tiles: Sequence[int] | None = None,
                            bootstrap_tta: bool = False, seed: int | None = None,
                            verbose: int = 1) -> PN2VBootstrapResult:
    """Fully unsupervised Probabilistic Noise2Void: train N2V, bootstrap a noise model from it, train PN2V.

    The Python form of ``n2v-tf bootstrap``: the three stages, with both models kept in model folders.

    Parameters
    ----------
    X, X_val : numpy.ndarray or list of numpy.ndarray
        Training and validation data of both networks, as :meth:`N2V.train` takes them (an n2v patch array
        ``SYXC``/``SZYXC``, or lists of ``YXC``/``ZYXC`` images); single channel.
    images : numpy.ndarray or list of numpy.ndarray
        The noisy images the noise model is bootstrapped from (usually all the data to denoise, training and
        validation parts together), each with ``axes``.
    axes : str
        Axes of each of ``images``: ``'YX'``, ``'ZYX'``, optionally with ``S``/``T`` (a stack) and a ``C`` of size 1.
    name : str
        The PN2V model: folder ``basedir/name``, which also holds the noise model file (``noise_model_gmm.npz`` or
        ``noise_model_histogram.npz``) and its figure ``noise_model.png``.
    basedir : str or pathlib.Path
        Folder that holds both model folders.
    n2v_config : N2VConfig, optional
        The N2V stage (``probabilistic=False``); default ``N2VConfig.preset('n2v', X)`` (100 epochs of 400 steps).
        Ignored, with a warning, when ``reuse_n2v`` loads a trained model.
    pn2v_config : N2VConfig, optional
        The PN2V stage (``probabilistic=True``, ``pn2v_samples`` signal samples per pixel). Default:
        ``N2VConfig.preset('pn2v', X, **shared)``, where ``shared`` holds the :data:`PN2V_SHARED_FIELDS` (network size,
        patch shape, blind-spot percentage, epochs, steps, batch size, learning rate, TensorBoard, augmentation) of the
        N2V stage's config: ``n2v_config``, or the reused model's, or the ``'n2v'`` preset. So giving only
        ``n2v_config`` trains both networks with the same size, budget and augmentation; the PN2V-specific fields (800
        samples per pixel, as in the paper) come from the preset: pass ``pn2v_config`` to change them.
    n2v_name : str, optional
        The N2V model's folder name (default ``f"{name}_n2v"``); must differ from ``name``.
    kind : {'gmm', 'histogram'}
        Noise model: :class:`~n2v_tf.GaussianMixtureNoiseModel` (recommended for bootstrapping: smooth in the
        signal) or :class:`~n2v_tf.HistogramNoiseModel`.
    clip_percent : float
        Pairs whose N2V prediction lies in the lowest or highest ``clip_percent`` % of the predicted values are left
        out of the fit (in [0, 50)).
    noise_model_kwargs : dict, optional
        Passed to the noise model's ``fit`` (e.g. ``n_gaussian``, ``n_coeff``, ``steps``, ``batch_size``, ``seed`` of
        the GMM; ``bins`` of the histogram); checked before any training.
    reuse_n2v : bool
        Bootstrap from the trained N2V model already in ``basedir/n2v_name`` instead of training it (its weights are
        not changed).
    overwrite : bool
        Replace existing model folders (the PN2V one, and the N2V one unless ``reuse_n2v``). Without it an existing
        folder raises :class:`FileExistsError` before anything is trained.
    qc_figure : bool
        Write ``basedir/name/noise_model.png`` (:func:`n2v_tf.qc.plot_noise_model`: the noise model against the
        (prediction, noisy) pairs) before the PN2V training; without matplotlib, a warning instead.
    n_tiles : sequence of int, optional
        Tiles per axis of ``images`` for the N2V prediction (large images).
    bootstrap_tta : bool
        Bootstrap from N2V's test-time-augmented prediction (the mean over the 8 YX flips/rotations; 8 times the
        prediction time of the second stage): a pseudo ground truth closer to the signal, so a noise model closer to
        the true one (measured in ``benchmarks/README.md``, "PN2V").
    seed : int, optional
        Seeds the initial weights (``keras.utils.set_random_seed``, which also seeds Python's and NumPy's global
        generators) and the batches of both trainings, for a reproducible run.
    verbose : int
        Keras progress output of the trainings.

    Returns
    -------
    PN2VBootstrapResult
        Both models, the noise model, both histories, the figure's path, the coverage of the N2V prediction by the
        noise model and the seconds of each stage.

    Raises
    ------
    ValueError
        ``n2v_name == name``, a config of the wrong kind (probabilistic or not), multi-channel data, ``axes`` that do
        not fit, bad ``kind``/``clip_percent``; a failed training or fit (the message names the stage).
    TypeError
        ``noise_model_kwargs`` that the noise model's ``fit`` does not take.
    FileExistsError
        A model folder exists and neither ``overwrite`` nor (for the N2V folder) ``reuse_n2v`` is given.
    FileNotFoundError
        ``reuse_n2v`` without a trained model in ``basedir/n2v_name``.
    KeyboardInterrupt
        Ctrl-C during the N2V training: its folder keeps the completed epochs (continue with ``reuse_n2v=True``, or
        resume it with :meth:`N2V.train`); Ctrl-C during the PN2V training returns the result with the best weights
        of its completed epochs, as :meth:`N2V.train` does.

    See Also
    --------
    n2v_tf.bootstrap_noise_model : the second stage alone.
    n2v_tf.qc.plot_noise_model : the figure.

    Notes
    -----
    PN2V [1]_ needs a noise model ``p(x|s)``, the probability of observing ``x`` at a pixel whose true signal is
    ``s``, usually fitted to a calibration stack. Prakash et al. [2]_ bootstrap it from the data to denoise instead:
    the prediction of a plain N2V network is taken as the pseudo ground truth ``s`` of every pixel, and the noise
    model is fitted to the pairs (N2V prediction, noisy value); PN2V is then trained with it and predicts the MMSE
    estimate, which also uses the pixel's own noisy value. The N2V prediction is smoother than the truth, so the
    bootstrapped noise is somewhat broader than the true noise; a GMM, smooth in the signal, suffers less from the
    few pairs at extreme signals than a histogram, and ``clip_percent`` drops the outliers of the prediction.

    The stages are logged at INFO level on the logger ``'n2v_tf.models'`` (e.g. ``logging.basicConfig(level=
    logging.INFO)`` shows them). Reload the models with ``N2V(None, name, basedir)`` (the PN2V model with its noise
    model) and ``N2V(None, n2v_name, basedir)``.

    References
    ----------
    .. [1] A. Krull, T. Vičar, M. Prakash, M. Lalit, F. Jug, "Probabilistic Noise2Void: Unsupervised Content-Aware
       Denoising", Frontiers in Computer Science 2, 2020.
    .. [2] M. Prakash, M. Lalit, P. Tomancak, A. Krull, F. Jug, "Fully Unsupervised Probabilistic Noise2Void",
       IEEE ISBI 2020.

    Examples
    --------
    >>> from n2v_tf import N2VConfig, train_pn2v_bootstrapped
    >>> config = N2VConfig.preset('n2v', X, train_epochs=50, unet_n_first=16)          # doctest: +SKIP
    >>> result = train_pn2v_bootstrapped(X, X_val, noisy, 'YX', 'my_pn2v', 'models',
    ...                                  n2v_config=config)                              # doctest: +SKIP
    >>> denoised = result.pn2v_model.predict(noisy, 'YX')       # MMSE estimate           # doctest: +SKIP
    """
    from .noise_models import NOISE_MODELS, bootstrap_noise_model, noise_model_file
    if basedir is None:
        raise ValueError("basedir: train_pn2v_bootstrapped keeps both models in model folders; give a folder")
    n2v_name = f"{name}_n2v" if n2v_name is None else n2v_name
    folder, n2v_folder = _check_bootstrap_folders(basedir, name, n2v_name, overwrite, reuse_n2v)
    basedir = Path(basedir)
    if kind not in NOISE_MODELS:
        raise ValueError(f"kind must be one of {sorted(NOISE_MODELS)}, got {kind!r}")
    if isinstance(clip_percent, bool) or not isinstance(clip_percent, (int, float, np.integer, np.floating)) \
            or not 0 <= clip_percent < 50:
        raise ValueError(f"clip_percent must be a number in [0, 50), got {clip_percent!r}")
    fit_kwargs = dict(noise_model_kwargs or {})
    try:
        inspect.signature(NOISE_MODELS[kind].fit).bind(None, None, **fit_kwargs)
    except TypeError as e:
        raise TypeError(f"noise_model_kwargs: {NOISE_MODELS[kind].__name__}.fit does not take them ({e})") from None

    # the N2V stage: a config to train, or the trained model to reuse
    n2v_model = None
    if reuse_n2v:
        if n2v_config is not None:
            warnings.warn(f"n2v_config is ignored: reuse_n2v=True bootstraps from the trained model in '{n2v_folder}' "
                          "(its config is the N2V stage's)", stacklevel=2)
        with warnings.catch_warnings():     # a PN2V folder is refused below, with or without its noise model
            warnings.filterwarnings("ignore", message=".*PN2V model without a noise model file")
            n2v_model = N2V(None, n2v_name, basedir=str(basedir))
        if n2v_model.config.probabilistic:
            raise ValueError(f"reuse_n2v=True: '{n2v_folder}' is a PN2V model; bootstrapping needs a plain N2V model")
        n2v_config = n2v_model.config
    elif n2v_config is None:
        n2v_config = N2VConfig.preset("n2v", X)
    _check_stage_config(n2v_config, "n2v_config", probabilistic=False)
    if pn2v_config is None:
        pn2v_config = N2VConfig.preset("pn2v", X, **{f: getattr(n2v_config, f) for f in PN2V_SHARED_FIELDS})
    _check_stage_config(pn2v_config, "pn2v_config", probabilistic=True)
    if n2v_config.n_dim != pn2v_config.n_dim:
        what = f"reuse_n2v=True: '{n2v_folder}' is" if reuse_n2v else "n2v_config is"
        raise ValueError(f"{what} a {n2v_config.n_dim}D model, but the training data (pn2v_config) are "
                         f"{pn2v_config.n_dim}D")
    images, axes = _bootstrap_images(images, axes, pn2v_config.n_dim)

    seconds = {"n2v": 0.0, "noise_model": 0.0, "pn2v": 0.0}
    n2v_history = None
    if n2v_model is None:
        logger.info("[1/3] Training N2V: %d epoch(s) x %d step(s) -> '%s'", n2v_config.train_epochs,
                    n2v_config.train_steps_per_epoch, n2v_folder)
        n2v_model = _new_model(n2v_config, n2v_name, basedir, overwrite, seed)
        n2v_history, seconds["n2v"], completed = _train_stage(n2v_model, X, X_val, "N2V", seed, verbose)
        if not completed:
            raise KeyboardInterrupt(f"the N2V training was interrupted: '{n2v_folder}' holds its completed epochs; "
                                    "bootstrap from them with reuse_n2v=True, or resume the training first")
    else:
        logger.info("[1/3] Reusing the trained N2V model '%s'.", n2v_folder)

    logger.info("[2/3] Predicting with N2V and fitting the %s noise model (the lowest and highest %g %% of the "
                "predicted values are dropped)", kind, clip_percent)
    predictor = _CachingPredictor(n2v_model)
    t0 = time.perf_counter()
    try:
        noise_model = bootstrap_noise_model(predictor, images, axes, kind=kind, clip_percent=clip_percent,
                                            n_tiles=n_tiles, tta=bootstrap_tta, **fit_kwargs)
    except ValueError as e:
        raise ValueError(f"bootstrapping the {kind} noise model from the N2V prediction failed: {e}") from e
    seconds["noise_model"] = time.perf_counter() - t0
    pseudo = np.concatenate([p.ravel() for p in predictor.predictions])
    predictor.predictions.clear()
    coverage = noise_model.coverage(pseudo)
    lo, hi = noise_model.signal_range
    logger.info("Predicted and fitted in %.1f s: %r; its signal range [%.6g, %.6g] covers %.1f %% of the N2V "
                "prediction.", seconds["noise_model"], noise_model, lo, hi, 100 * coverage)

    logger.info("[3/3] Training PN2V (%d samples per pixel): %d epoch(s) x %d step(s) -> '%s'",
                pn2v_config.pn2v_samples, pn2v_config.train_epochs, pn2v_config.train_steps_per_epoch, folder)
    pn2v_model = _new_model(pn2v_config, name, basedir, overwrite, seed, noise_model=noise_model)
    logger.info("Saved the noise model as '%s'.", folder / noise_model_file(kind))
    figure = None
    (folder / NOISE_MODEL_FIGURE).unlink(missing_ok=True)   # the figure of a replaced model
    if qc_figure:
        observed = np.concatenate([np.ravel(im) for im in images]).astype(np.float32, copy=False)
        figure = _noise_model_figure(noise_model, pseudo, observed, folder / NOISE_MODEL_FIGURE,
                                     f"bootstrapped {type(noise_model).__name__} ({n2v_name} prediction vs noisy)")
        del observed
    del pseudo
    pn2v_history, seconds["pn2v"], _ = _train_stage(pn2v_model, X, X_val, "PN2V", seed, verbose)
    return PN2VBootstrapResult(n2v_model=n2v_model, pn2v_model=pn2v_model, noise_model=noise_model,
                               n2v_history=n2v_history, pn2v_history=pn2v_history, figure=figure, coverage=coverage,
                               seconds=seconds)
