"""Quality benchmark of OUR package (n2v_tf) + the combined multi-seed comparison table.

Runs n2v_tf through its n2v-0.3.3-compatible API (``N2VConfig.preset(name, X, **kw)``,
``N2V(config, name, basedir)``, ``model.train(X, X_val)``, ``model.predict(img, axes)``) on the datasets of
``quality_data.py`` (natural, fluo, fluo3d) with the common protocol, writes
``benchmarks/_runs/n2v_tf_<variant>_<dataset>_seed<k>.json`` (model folders
``_runs/models/n2v_tf_<variant>_<dataset>_seed<k>``) and prints one markdown table per dataset merging
these results with the reference runs (``ref_n2v033.py``, ``ref_careamics.py``) found in ``benchmarks/_runs/``:
mean PSNR +- spread (max - min over the seeds), the number of seeds, each seed's PSNR, the mean over the
seeds of each test image (natural: camera, moon) and the mean train time. The protocol's PSNR is the plain
prediction's; n2v_tf's N2V runs also record (and the table shows) ``predict(..., calibrate='auto')``, the
intensity curve fitted on each test image's own blind spots (README, "Calibration on the image itself").

Variants
    n2v 0.3.3's network and training (``N2VConfig.preset('n2v-0.3', X, **protocol)``: batch-norm momentum
    0.99, narrow decoder, nearest upsampling, Glorot init, whatever the library's defaults become):
    ``uniform_withCP`` (N2V, n2v's default), ``uniform_withoutCP`` (N2V) and ``n2v2`` (N2V2: blurpool,
    skip_skipone, no residual, median replacement).
    The library's recommended presets, with only the protocol's budget on top
    (``quality_data.budget_kwargs``: depth, first filters, kernel 3, learning rate, batch, epochs x steps,
    patch, neighbourhood radius, no TensorBoard; the masked percentage is the preset's): ``rec_n2v`` (preset
    'n2v') and ``rec_n2v2`` (preset 'n2v2'); ``rec_n2v_keras_bn``: preset 'n2v' with Keras' own batch-norm ops and a bias
    before every batch norm (``train_fused_batch_norm=False, unet_conv_bias=True``, the defaults before 2026-12-02),
    the paired control of the fused-kernel / no-bias defaults.
    ``pn2v_boot`` (fluo only): fully unsupervised PN2V: rec_n2v, its prediction of the noisy training image
    as pseudo ground truth for a bootstrapped GMM noise model (``n2v_tf.noise_models.bootstrap_noise_model``,
    the defaults of ``n2v-tf bootstrap``), then preset 'pn2v' with the same budget and ``--pn2v-samples``
    samples per pixel; scored by the PN2V MMSE estimate, the N2V stage's PSNR is recorded too; the train
    time is the whole pipeline's.

Usage (from the repo root)::

    nice -n 15 /work/venv/bin/python benchmarks/bench_quality.py --quick --only rec_n2v fluo    # smoke run
    nice -n 15 /work/venv/bin/python benchmarks/bench_quality.py --seeds 3 --only rec_n2v rec_n2v2 natural fluo
    nice -n 15 /work/venv/bin/python benchmarks/bench_quality.py --seeds 3                      # everything
    nice -n 15 /work/venv/bin/python benchmarks/bench_quality.py --seed 1 --only pn2v_boot      # one seed
    /work/venv/bin/python benchmarks/bench_quality.py --only uniform_withCP/natural
    /work/venv/bin/python benchmarks/bench_quality.py --table-only                              # just the table
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402

TOOL = "n2v_tf"
#: n2v 0.3.3's network (preset 'n2v-0.3') with the protocol dict of quality_data.n2v_config_kwargs
N2V033_VARIANTS = tuple(qd.N2V_VARIANTS)
#: the library's recommended presets with only the protocol's budget (quality_data.budget_kwargs)
PRESET_VARIANTS = {"rec_n2v": "n2v", "rec_n2v2": "n2v2", "rec_n2v_keras_bn": "n2v", "rec_n2v_p15": "n2v",
                   "rec_n2v_aug": "n2v", "rec_n2v_noaug": "n2v", "rec_n2v2_noaug": "n2v2", "rec_n2v_bf16": "n2v",
                   "rec_n2v_aug_bf16": "n2v", "rec_n2v2_p15": "n2v2", "rec_n2v_p0198": "n2v",
                   "rec_n2v2_p0198": "n2v2", "rec_n2v2_aug": "n2v2", "rec_n2v2_uwocp": "n2v2",
                   "rec_n2v_uwocp": "n2v", "rec_n2v2_fp32": "n2v2", "rec_n2v_fp32": "n2v", "rec_n2v_nocal": "n2v",
                   "rec_n2v2_nocal": "n2v2"}
#: fields a variant sets on top of its preset: ``rec_n2v_keras_bn`` is preset 'n2v' with Keras' own batch-norm ops and
#: a bias before every batch norm (the defaults before 2026-12-02), the control of the fused-kernel/no-bias defaults
#: ``rec_n2v_p15`` / ``rec_n2v2_p15`` mask n2v 0.3.x's default 1.5 % of the pixels of a patch (the presets' value since
#: 2026-12-05), ``rec_n2v_p0198`` / ``rec_n2v2_p0198`` the presets' earlier 0.198 %
#: ``rec_n2v_aug`` / ``rec_n2v2_aug`` / ``rec_n2v_noaug`` / ``rec_n2v2_noaug``: the preset with on-the-fly flips/rotations of the
#: training patches (``train_augment``) switched on / off, whatever the preset's default is; ``rec_n2v_bf16`` /
#: ``rec_n2v_aug_bf16``: trained with ``train_mixed_precision='mixed_bfloat16'``; ``rec_n2v2_uwocp`` / ``rec_n2v_uwocp``: the
#: preset with the blind spots replaced by a uniform neighbour other than the centre (``uniform_withoutCP``);
#: ``rec_n2v2_fp32`` / ``rec_n2v_fp32``: the preset trained in float32 whatever 'auto' picks on the machine;
#: ``rec_n2v_nocal`` / ``rec_n2v2_nocal``: the preset without the output calibration after training
#: (``train_calibrate_output=False``, the paired control of that default)
PRESET_EXTRA = {"rec_n2v_keras_bn": dict(train_fused_batch_norm=False, unet_conv_bias=True),
                "rec_n2v_p15": dict(n2v_perc_pix=1.5), "rec_n2v2_p15": dict(n2v_perc_pix=1.5),
                "rec_n2v_p0198": dict(n2v_perc_pix=0.198), "rec_n2v2_p0198": dict(n2v_perc_pix=0.198),
                "rec_n2v_aug": dict(train_augment=True), "rec_n2v2_aug": dict(train_augment=True),
                "rec_n2v_noaug": dict(train_augment=False),
                "rec_n2v2_noaug": dict(train_augment=False),
                "rec_n2v_bf16": dict(train_mixed_precision="mixed_bfloat16"),
                "rec_n2v_aug_bf16": dict(train_augment=True, train_mixed_precision="mixed_bfloat16"),
                "rec_n2v2_uwocp": dict(n2v_manipulator="uniform_withoutCP"),
                "rec_n2v_uwocp": dict(n2v_manipulator="uniform_withoutCP"),
                "rec_n2v2_fp32": dict(train_mixed_precision=None), "rec_n2v_fp32": dict(train_mixed_precision=None),
                "rec_n2v_nocal": dict(train_calibrate_output=False), "rec_n2v2_nocal": dict(train_calibrate_output=False)}
#: ``pn2v_boot_tta``: the same pipeline bootstrapped from N2V's test-time-augmented prediction (``bootstrap_tta``)
PN2V_VARIANTS = ("pn2v_boot", "pn2v_boot_tta")
VARIANTS = N2V033_VARIANTS + tuple(PRESET_VARIANTS) + PN2V_VARIANTS
ONLY_ON = {"pn2v_boot": ("fluo",), "pn2v_boot_tta": ("fluo",)}  # variants restricted to some datasets

PN2V_SAMPLES = 200  # default of --pn2v-samples (bench_pn2v.py's full runs used 200 as well)
# the bootstrap of `n2v-tf bootstrap` (its defaults): GMM 3 Gaussians, linear, 1000 Adam steps of 25000 pairs,
# the lowest and highest 0.5 % of the predicted values dropped
BOOTSTRAP = dict(kind="gmm", clip_percent=0.5, n_gaussian=3, n_coeff=2, steps=1000, batch_size=25_000)

LABELS = {
    ("n2v033", "uniform_withCP"): "n2v 0.3.3 — N2V uniform_withCP (reference)",
    ("n2v033", "uniform_withoutCP"): "n2v 0.3.3 — N2V uniform_withoutCP (reference)",
    ("n2v033", "n2v2"): "n2v 0.3.3 — N2V2 median/blurpool/skip_skipone (reference)",
    (TOOL, "uniform_withCP"): "n2v_tf — N2V uniform_withCP (n2v 0.3.3 network)",
    (TOOL, "uniform_withoutCP"): "n2v_tf — N2V uniform_withoutCP (n2v 0.3.3 network)",
    (TOOL, "n2v2"): "n2v_tf — N2V2 median/blurpool/skip_skipone (n2v 0.3.3 network)",
    (TOOL, "rec_n2v"): "n2v_tf — preset 'n2v'",
    (TOOL, "rec_n2v2"): "n2v_tf — preset 'n2v2'",
    (TOOL, "rec_n2v_keras_bn"): "n2v_tf — preset 'n2v', Keras batch-norm ops + conv bias (control)",
    (TOOL, "rec_n2v_p15"): "n2v_tf — preset 'n2v', 1.5 % masked pixels",
    (TOOL, "rec_n2v2_p15"): "n2v_tf — preset 'n2v2', 1.5 % masked pixels",
    (TOOL, "rec_n2v_p0198"): "n2v_tf — preset 'n2v', 0.198 % masked pixels",
    (TOOL, "rec_n2v2_p0198"): "n2v_tf — preset 'n2v2', 0.198 % masked pixels",
    (TOOL, "rec_n2v_aug"): "n2v_tf — preset 'n2v', on-the-fly flips/rotations",
    (TOOL, "rec_n2v2_aug"): "n2v_tf — preset 'n2v2', on-the-fly flips/rotations",
    (TOOL, "rec_n2v_noaug"): "n2v_tf — preset 'n2v', no flips/rotations",
    (TOOL, "rec_n2v2_noaug"): "n2v_tf — preset 'n2v2', no flips/rotations",
    (TOOL, "rec_n2v_bf16"): "n2v_tf — preset 'n2v', mixed_bfloat16",
    (TOOL, "rec_n2v2_fp32"): "n2v_tf — preset 'n2v2', float32",
    (TOOL, "rec_n2v_fp32"): "n2v_tf — preset 'n2v', float32",
    (TOOL, "rec_n2v_nocal"): "n2v_tf — preset 'n2v', no output calibration (control)",
    (TOOL, "rec_n2v2_nocal"): "n2v_tf — preset 'n2v2', no output calibration (control)",
    (TOOL, "rec_n2v_aug_bf16"): "n2v_tf — preset 'n2v', flips/rotations, mixed_bfloat16",
    (TOOL, "pn2v_boot"): "n2v_tf — PN2V, bootstrapped GMM (preset 'n2v' -> 'pn2v')",
    (TOOL, "pn2v_boot_tta"): "n2v_tf — PN2V, GMM bootstrapped from the TTA prediction",
}
TOOL_ORDER = {"n2v033": 0, "careamics": 1, TOOL: 2}
VARIANT_ORDER = list(N2V033_VARIANTS) + ["uniform", "uniform_aug"] + list(PRESET_VARIANTS) + list(PN2V_VARIANTS)


# --------------------------------------------------------------------------
# running n2v_tf
# --------------------------------------------------------------------------
def _seed_all(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import keras

        keras.utils.set_random_seed(seed)
    except Exception:  # pragma: no cover - seeding is best effort
        pass


def make_config(variant: str, X, epochs: int, spe: int, dataset: str, **extra):
    """The ``N2VConfig`` of ``variant`` and the keywords given on top of its preset."""
    from n2v_tf import N2VConfig

    if variant in N2V033_VARIANTS:
        preset, kw = "n2v-0.3", qd.n2v_config_kwargs(variant, epochs, spe, dataset)
    elif variant in PRESET_VARIANTS:
        preset, kw = PRESET_VARIANTS[variant], dict(qd.budget_kwargs(epochs, spe, dataset), **PRESET_EXTRA.get(variant, {}))
    else:
        raise KeyError(variant)
    kw.update(extra)
    return N2VConfig.preset(preset, X, **kw), dict(preset=preset, **kw)


def _record(model, hist, train_time: float, load0, basedir: str, name: str) -> dict:
    """The record of one trained model: history, best epoch, checkpoint, size, the config used."""
    import numpy as np

    config = model.config
    history = {}
    if hist is not None and hasattr(hist, "history"):
        history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    val = history.get("val_loss", [])
    best_epoch = int(np.nanargmin(val)) + 1 if val else None
    ckpt = getattr(config, "train_checkpoint", None)
    return dict(
        model=model, train_time=train_time, history=history, best_epoch=best_epoch, loadavg_before=list(load0),
        loadavg_after=list(os.getloadavg()), n_params=_count_params(model), model_dir=str(Path(basedir) / name),
        checkpoint=(f"{ckpt} (best val_loss, epoch {best_epoch}/{len(val)}; per n2v API reloaded after train())"
                    if ckpt and getattr(config, "train_restore_best", True)
                    else f"last (epoch {len(val)}; train_restore_best=False)"),
        config_used={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()
                     if isinstance(v, (int, float, str, bool, tuple, list, dict, type(None)))},
        output_calibration=getattr(model, "output_calibration", None),
    )


def _train(config, name: str, basedir: str, X, X_val, seed: int, batch_seed: int | None = None) -> dict:
    """Create and train one model (a re-run replaces its own earlier folder); returns the model and its record.

    ``seed`` seeds everything; ``batch_seed`` (``experiment_seed_split.py``) reseeds Python's and NumPy's global
    state after the model is built, so the batches and masks are those of ``--seed batch_seed`` (building the model
    draws nothing from either) while the initial weights stay those of ``seed``.
    """
    from n2v_tf import N2V

    _seed_all(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="output path for model already exists")
        model = N2V(config, name, basedir=basedir, overwrite=True)
    if batch_seed is not None:
        import numpy as np

        random.seed(batch_seed)
        np.random.seed(batch_seed)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    hist = model.train(X, X_val)
    return _record(model, hist, time.perf_counter() - t0, load0, basedir, name)


def _tiles(shape, samples: int) -> tuple[int, ...]:
    """Tiles along the first axis so that one tile holds at most ~2**23 (pixel, sample) pairs (PN2V's MMSE head)."""
    n = max(1, math.ceil(math.prod(shape) * max(samples, 1) / 2 ** 23))
    first = max(1, min(2 ** math.ceil(math.log2(n)), shape[0] // 32 if shape[0] >= 64 else 1))
    return (first,) + (1,) * (len(shape) - 1)


def pn2v_bootstrap(X, X_val, train_imgs, axes: str, budget: dict, *, name: str, basedir: str, seed: int,
                   samples: int, bootstrap: dict = BOOTSTRAP, bootstrap_tta: bool = False, n2v_name: str | None = None,
                   reuse_n2v: bool = False, verbose: int = 1) -> dict:
    """Fully unsupervised PN2V with :func:`n2v_tf.train_pn2v_bootstrapped` (what ``n2v-tf bootstrap`` runs).

    N2V with preset 'n2v' and ``budget`` (folder ``n2v_name``, default ``<name>_n2v``; ``reuse_n2v``: the trained
    model already there), a noise model fitted to (N2V prediction, noisy) pairs of ``train_imgs``, PN2V with preset
    'pn2v', the same ``budget`` and ``samples`` samples per pixel. Returns ``n2v`` and ``pn2v`` (records as
    :func:`_record`, with the models under ``'model'``), ``noise_model`` and the seconds of each step.
    """
    from n2v_tf import N2VConfig, train_pn2v_bootstrapped

    fit = {k: v for k, v in bootstrap.items() if k not in ("kind", "clip_percent")}
    if bootstrap["kind"] == "gmm":
        fit.setdefault("seed", seed)
    _seed_all(seed)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="output path for model already exists")
        n2v_name = n2v_name or f"{name}_n2v"
        out = train_pn2v_bootstrapped(
            X, X_val, train_imgs, axes, name, basedir, n2v_name=n2v_name,
            n2v_config=None if reuse_n2v else N2VConfig.preset("n2v", X, **budget),
            pn2v_config=N2VConfig.preset("pn2v", X, **budget, pn2v_samples=int(samples)),
            kind=bootstrap["kind"], clip_percent=bootstrap["clip_percent"], noise_model_kwargs=fit, overwrite=True,
            qc_figure=False, bootstrap_tta=bootstrap_tta, reuse_n2v=reuse_n2v, seed=seed, verbose=verbose)
    sec = out.seconds
    return dict(n2v=_record(out.n2v_model, out.n2v_history, sec["n2v"], load0, basedir, n2v_name),
                pn2v=_record(out.pn2v_model, out.pn2v_history, sec["pn2v"], load0, basedir, name),
                noise_model=out.noise_model, n2v_train_s=sec["n2v"], bootstrap_s=sec["noise_model"],
                pn2v_train_s=sec["pn2v"], total_s=time.perf_counter() - t_start)


def run_one(variant: str, ds: dict, args, seed: int) -> dict:
    epochs, spe = qd.schedule(args)
    X, X_val = ds["X_train"], ds["X_val"]
    axes = qd.spatial_axes(ds)
    name = qd.run_name(TOOL, variant, ds["name"], seed)
    basedir = str(qd.models_dir(args))
    versions = qd.pkg_versions("n2v_tf", "tensorflow", "keras", "numpy", "scikit-image")
    extra = {}
    if variant in PN2V_VARIANTS:
        budget = qd.budget_kwargs(epochs, spe, ds["name"])
        out = pn2v_bootstrap(X, X_val, qd.train_images(ds["name"]), axes, budget, name=name, basedir=basedir,
                             seed=seed, samples=args.pn2v_samples, bootstrap_tta=variant == "pn2v_boot_tta")
        n2v_model, model = out["n2v"]["model"], out["pn2v"]["model"]
        n2v_preds, n2v_pred_s = qd.predict_timed(lambda img: n2v_model.predict(img, axes), ds)
        n2v_eval = qd.evaluate(ds, n2v_preds)

        def predict(img, output="mmse"):
            return model.predict(img, axes, n_tiles=_tiles(img.shape, args.pn2v_samples), pn2v_output=output)

        preds, pred_time = qd.predict_timed(predict, ds)
        prior = qd.evaluate(ds, [predict(img, "prior_mean") for img in ds["test_noisy"]])
        rec = out["pn2v"]
        train_time = out["total_s"]
        extra = dict(
            pipeline="N2V (preset 'n2v') -> bootstrapped noise model -> PN2V (preset 'pn2v'), same budget",
            n2v_stage=dict(psnr=n2v_eval["psnr"], per_image=n2v_eval["per_image"], predict_time_s=n2v_pred_s,
                           train_time_s=out["n2v_train_s"], best_epoch=out["n2v"]["best_epoch"],
                           checkpoint=out["n2v"]["checkpoint"], history=out["n2v"]["history"],
                           model_dir=out["n2v"]["model_dir"], n_params=out["n2v"]["n_params"],
                           config_used=out["n2v"]["config_used"],
                           output_calibration=out["n2v"]["output_calibration"]),
            psnr_prior_mean=prior["psnr"],
            pn2v_samples=int(args.pn2v_samples),
            bootstrap=dict(BOOTSTRAP, fitted_on=f"N2V {'TTA ' if variant == 'pn2v_boot_tta' else ''}prediction of "
                                                f"the noisy training images ({axes})",
                           seconds=out["bootstrap_s"], noise_model=repr(out["noise_model"])),
            n2v_train_time_s=out["n2v_train_s"], bootstrap_time_s=out["bootstrap_s"],
            pn2v_train_time_s=out["pn2v_train_s"],
            config=dict(preset="pn2v", pn2v_samples=int(args.pn2v_samples),
                        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in budget.items()}),
        )
    else:
        config, kw = make_config(variant, X, epochs, spe, ds["name"])
        rec = _train(config, name, basedir, X, X_val, seed)
        model = rec["model"]
        preds, pred_time = qd.predict_timed(lambda img: model.predict(img, axes), ds)
        # the prediction-time option that pays on images unlike the training data (README, "Calibration on the
        # image itself"): scored next to the plain prediction, which stays the protocol's PSNR
        cal_preds, cal_time = qd.predict_timed(lambda img: model.predict(img, axes, calibrate="auto"), ds)
        cal = qd.evaluate(ds, cal_preds)
        train_time = rec["train_time"]
        extra = dict(config={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
                     calibrate_auto=dict(psnr=cal["psnr"], per_image=cal["per_image"], predict_time_s=cal_time))
    res = qd.run_record(
        ds, preds,
        train_time=train_time,
        pred_time=pred_time,
        epochs=epochs,
        steps_per_epoch=spe,
        batch_size=qd.protocol(ds["name"])["train_batch_size"],
        checkpoint=rec["checkpoint"],
        n_params=rec["n_params"],
        best_epoch=rec["best_epoch"],
        history=rec["history"],
        loadavg_before=rec["loadavg_before"],
        loadavg_after=rec["loadavg_after"],
        seed=seed,
        versions=versions,
        model_dir=rec["model_dir"],
        config_used=rec["config_used"],
        output_calibration=rec["output_calibration"],
        **extra,
    )
    try:
        import n2v_tf

        res["versions"]["n2v_tf_module"] = getattr(n2v_tf, "__version__", None)
    except Exception:
        pass
    return res


def _count_params(model):
    try:
        return int(model.keras_model.count_params())
    except Exception:
        return None


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------
def _label(r: dict) -> str:
    key = (r["tool"], r["variant"])
    if key in LABELS:
        return LABELS[key]
    if r["tool"] == "careamics":
        v = r.get("versions", {}).get("careamics")
        return f"CAREamics {v or ''} — {r.get('algorithm', 'n2v').upper()} {r['variant']} (reference)".replace("  ", " ")
    return f"{r['tool']} — {r['variant']}"


def _version_str(r: dict) -> str:
    v = r.get("versions", {})
    keys = {"n2v033": ("n2v", "tensorflow-cpu", "tensorflow", "csbdeep"),
            "careamics": ("careamics", "torch", "lightning"),
            TOOL: ("n2v_tf", "tensorflow", "keras")}.get(r["tool"], tuple(v))
    parts, seen_tf = [], False
    for k in keys:
        if v.get(k) and not (k == "tensorflow" and seen_tf):
            parts.append(f"{k} {v[k]}")
            seen_tf = seen_tf or k.startswith("tensorflow")
    return ", ".join(parts)


def _protocol_seed(r: dict) -> int:
    """The protocol seed k of a result (files written before ``protocol_seed`` existed: CAREamics stored k + 1)."""
    if "protocol_seed" in r:
        return int(r["protocol_seed"])
    s = int(r.get("seed") or 0)
    return s - 1 if r["tool"] == "careamics" and s > 0 else s


def load_results(quick: bool) -> list[dict]:
    """Every result in ``_runs[/quick]``, one per (tool, variant, dataset, seed) (a ``_seed<k>`` file wins)."""
    d = qd.RUNS_DIR / "quick" if quick else qd.RUNS_DIR
    out: dict[tuple, tuple[bool, dict]] = {}
    for p in sorted(d.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except Exception as e:  # pragma: no cover
            print(f"(skipping unreadable {p}: {e})", file=sys.stderr)
            continue
        if not {"tool", "variant", "dataset", "psnr"} <= set(r):
            continue
        r["protocol_seed"] = _protocol_seed(r)
        key = (r["tool"], r["variant"], r["dataset"], r["protocol_seed"])
        new = "_seed" in p.stem
        if key not in out or (new and not out[key][0]):
            out[key] = (new, r)
    return [r for _, r in out.values()]


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _pm(xs, spec=".2f") -> str:
    """``mean ± spread`` (spread = max - min) of ``xs``; the value alone for one."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return format(xs[0], spec)
    return f"{format(_mean(xs), spec)} ± {format(max(xs) - min(xs), spec)}"


def _sort_key(k):
    tool, variant = k
    return (TOOL_ORDER.get(tool, 9), VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else 99, variant)


def make_table(results: list[dict]) -> str:
    """One markdown table per dataset; rows grouped by (tool, variant) over the seeds."""
    datasets = [d for d in qd.DATASETS if any(r["dataset"] == d for r in results)]
    datasets += sorted({r["dataset"] for r in results} - set(datasets))
    out = []
    for dname in datasets:
        rs = [r for r in results if r["dataset"] == dname]
        groups: dict[tuple, list[dict]] = {}
        for r in rs:
            groups.setdefault((r["tool"], r["variant"]), []).append(r)
        images = list(dict.fromkeys(p["image"] for r in rs for p in r.get("per_image", [])))
        per_image_cols = images if len(images) > 1 else []
        inputs = sorted({round(r["psnr_input"], 2) for r in rs})
        any_notes = any(r["variant"] in PN2V_VARIANTS for r in rs)
        any_cal = any("calibrate_auto" in r for r in rs)
        head = (["method", "seeds", "PSNR (dB) mean ± spread", "per seed (dB)"]
                + (["`predict(..., calibrate='auto')`: mean ± spread (the seeds that recorded it)"] if any_cal else [])
                + [f"{im} (mean)" for im in per_image_cols]
                + ["train (s, mean)", "steps", "checkpoint (best-val epoch per seed)"]
                + (["notes"] if any_notes else []) + ["versions"])
        lines = [f"### {dname} (input PSNR " + " / ".join(f"{v:.2f}" for v in inputs) + " dB)", "",
                 "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for key in sorted(groups, key=_sort_key):
            g = sorted(groups[key], key=lambda r: r["protocol_seed"])
            psnrs = [r["psnr"] for r in g]
            cells = [_label(g[0]), str(len(g)), _pm(psnrs),
                     ", ".join(f"s{r['protocol_seed']}: {r['psnr']:.2f}" for r in g)]
            if any_cal:
                cal = [(r["protocol_seed"], r["calibrate_auto"]["psnr"]) for r in g if "calibrate_auto" in r]
                cells.append(f"{_pm([v for _, v in cal])} ({', '.join(f's{k}: {v:.2f}' for k, v in cal)})"
                             if cal else "—")
            for im in per_image_cols:
                vals = [p["psnr"] for r in g for p in r.get("per_image", []) if p["image"] == im]
                cells.append(_pm([_mean(vals)]) if vals else "—")
            cells.append(_pm([_mean([r.get("train_time_s") for r in g])], ".0f"))
            cells.append("/".join(str(s) for s in sorted({r.get("steps") for r in g}, key=str)))
            ck = []
            for r in g:
                c = r.get("checkpoint", "?")
                ck.append("last" if c.startswith("last") else str(r.get("best_epoch")))
            n_ep = sorted({len(r.get("history", {}).get("val_loss", [])) or r.get("epochs") for r in g}, key=str)
            cells.append(("last" if set(ck) == {"last"} else ", ".join(ck) + f" (of {'/'.join(map(str, n_ep))})"))
            if any_notes:
                if key[1] in PN2V_VARIANTS:
                    n2v = [r.get("n2v_stage", {}).get("psnr") for r in g]
                    prior = [r.get("psnr_prior_mean") for r in g]
                    samples = sorted({r.get("pn2v_samples") for r in g}, key=str)
                    cells.append(f"N2V stage {_pm(n2v)}; prior mean {_pm(prior)}; "
                                 f"{'/'.join(map(str, samples))} samples; train = N2V + bootstrap + PN2V")
                else:
                    cells.append("")
            cells.append(_version_str(g[0]))
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))

    notes = []
    shas = {}
    for r in results:
        sha = r.get("data", {}).get("sha256", {}).get("X_train")
        shas.setdefault(r["dataset"], set()).add(sha)
    for d, s in shas.items():
        if len(s) > 1:
            notes.append(f"WARNING: results for {d} were produced on DIFFERENT data (data sha256 differs).")
    for d in datasets:
        steps_all = {r.get("steps") for r in results if r["dataset"] == d}
        if len(steps_all) > 1:
            notes.append(f"WARNING: {d} runs used different numbers of optimiser steps: {sorted(steps_all, key=str)}.")
    notes.append("Spread = max - min over the seeds (seed k = --seed k; CAREamics is seeded with k + 1). "
                 "PSNR: natural = mean over camera, moon (data_range 255); fluo = right 1/4 of the stardist nuclei "
                 "image; fluo3d = X columns 192-255 of the cells3d nuclei volume (data_range = clean max - min). "
                 "Train times are wall-clock on a shared 2-core CPU (contention varies between runs).")
    return "\n\n".join(out) + "\n\n" + "\n".join(f"- {n}" for n in notes)


# --------------------------------------------------------------------------
def _allowed(variant: str, dataset: str) -> bool:
    return dataset in ONLY_ON.get(variant, (dataset,))


def _select(only: list[str] | None) -> list[tuple[str, str]]:
    pairs = [(v, d) for d in qd.DATASETS for v in VARIANTS if _allowed(v, d)]
    if not only:
        return pairs
    vs = {t for t in only if t in VARIANTS}
    ds = {t for t in only if t in qd.DATASETS}
    explicit = {tuple(t.split("/", 1)) for t in only if "/" in t}
    bad = [t for t in only if t not in VARIANTS and t not in qd.DATASETS and "/" not in t]
    bad += [t for t in only if "/" in t and tuple(t.split("/", 1)) not in pairs]
    if bad:
        raise SystemExit(f"--only: unknown token(s) {bad}; use variant names {VARIANTS}, dataset names "
                         f"{qd.DATASETS} or variant/dataset ({', '.join(f'{v}: {d}' for v, d in ONLY_ON.items())} "
                         "only)")
    sel = [(v, d) for v, d in pairs if (not vs or v in vs) and (not ds or d in ds)] if (vs or ds) else []
    sel += [p for p in pairs if p in explicit and p not in sel]
    return sel


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="n2v_tf quality benchmark + combined table with the references")
    qd.add_common_args(ap)
    ap.add_argument("--only", nargs="+", default=None, metavar="TOKEN",
                    help=f"restrict runs: variant names {VARIANTS}, dataset names {qd.DATASETS}, or variant/dataset")
    ap.add_argument("--pn2v-samples", type=int, default=PN2V_SAMPLES, metavar="K",
                    help=f"pn2v_boot: signal samples per pixel of the PN2V model (default {PN2V_SAMPLES})")
    ap.add_argument("--table-only", action="store_true", help="do not train; print the table from _runs/*.json")
    ap.add_argument("--no-table", action="store_true")
    args = ap.parse_args(argv)
    if args.pn2v_samples < 2:
        ap.error("--pn2v-samples must be >= 2")

    if not args.table_only:
        sel = [(v, d) for v, d in _select(args.only) if d in args.datasets]
        if not sel:
            print("nothing selected (pn2v_boot runs on fluo only)")
        cache = {}
        for seed in qd.seeds(args):
            for variant, dname in sel:
                ds = cache.setdefault(dname, qd.load(dname))
                res = run_one(variant, ds, args, seed)
                qd.write_result(TOOL, variant, ds, res, args.quick, seed)

    if not args.no_table:
        results = load_results(args.quick)
        if not results:
            print("no results found in", qd.runs_dir(args.quick))
            return
        print()
        if args.quick:
            print("**QUICK smoke-run results (not meaningful PSNRs)**\n")
        print(make_table(results))


if __name__ == "__main__":
    main()
