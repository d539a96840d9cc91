"""Quality benchmark of OUR package (n2v_tf) + the combined comparison table.

Runs n2v_tf through the n2v-0.3.3-compatible API only
(``N2VConfig(X, **kw)``, ``N2V(config, name, basedir)``, ``model.train(X, X_val)``,
``model.predict(img, 'YX')``) on the datasets of ``quality_data.py`` with the
common protocol, writes ``benchmarks/_runs/n2v_tf_<variant>_<dataset>.json`` and
prints ONE markdown table merging these results with the reference runs
(``ref_n2v033.py``, ``ref_careamics.py``) found in ``benchmarks/_runs/``.

Variants: ``uniform_withCP`` (N2V, n2v's default), ``uniform_withoutCP`` (N2V)
and ``n2v2`` (N2V2: blurpool=True, skip_skipone=True, unet_residual=False,
n2v_manipulator='median').

Usage (from the repo root)::

    nice -n 15 .venv/bin/python benchmarks/bench_quality.py --quick           # smoke run, tiny steps
    nice -n 15 .venv/bin/python benchmarks/bench_quality.py                   # full protocol, all variants
    .venv/bin/python benchmarks/bench_quality.py --only n2v2 fluo             # one variant on one dataset
    .venv/bin/python benchmarks/bench_quality.py --only uniform_withCP/natural
    .venv/bin/python benchmarks/bench_quality.py --table-only                 # just print the table
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402

TOOL = "n2v_tf"
VARIANTS = ("uniform_withCP", "uniform_withoutCP", "n2v2")

LABELS = {
    ("n2v033", "uniform_withCP"): "n2v 0.3.3 — N2V uniform_withCP (reference)",
    ("n2v033", "uniform_withoutCP"): "n2v 0.3.3 — N2V uniform_withoutCP (reference)",
    ("n2v033", "n2v2"): "n2v 0.3.3 — N2V2 median/blurpool/skip_skipone (reference)",
    (TOOL, "uniform_withCP"): "n2v_tf — N2V uniform_withCP",
    (TOOL, "uniform_withoutCP"): "n2v_tf — N2V uniform_withoutCP",
    (TOOL, "n2v2"): "n2v_tf — N2V2 median/blurpool/skip_skipone",
}
TOOL_ORDER = {"n2v033": 0, "careamics": 1, TOOL: 2}


# --------------------------------------------------------------------------
# running n2v_tf
# --------------------------------------------------------------------------
def run_one(variant: str, ds: dict, args) -> dict:
    import numpy as np

    from n2v_tf import N2V, N2VConfig

    epochs, spe = qd.schedule(args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    try:
        import keras

        keras.utils.set_random_seed(args.seed)
    except Exception:  # pragma: no cover - seeding is best effort
        pass

    kw = qd.n2v_config_kwargs(variant, epochs, spe)
    X, X_val = ds["X_train"], ds["X_val"]
    config = N2VConfig(X, **kw)
    name = f"{TOOL}_{variant}_{ds['name']}"
    basedir = str(qd.models_dir(args))
    model = N2V(config, name, basedir=basedir, overwrite=True)  # a re-run replaces its own earlier run

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    hist = model.train(X, X_val)
    train_time = time.perf_counter() - t0
    load1 = os.getloadavg()

    history = {}
    if hist is not None and hasattr(hist, "history"):
        history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    val = history.get("val_loss", [])
    best_epoch = int(np.argmin(val)) + 1 if val else None
    ckpt = getattr(config, "train_checkpoint", None)

    preds, pred_time = qd.predict_timed(lambda img: model.predict(img, "YX"), ds)
    res = qd.run_record(
        ds, preds,
        train_time=train_time,
        pred_time=pred_time,
        epochs=epochs,
        steps_per_epoch=spe,
        batch_size=kw["train_batch_size"],
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
        checkpoint=(f"{ckpt} (best val_loss, epoch {best_epoch}/{len(val)}; per n2v API reloaded after train())"
                    if ckpt else "last"),
        n_params=_count_params(model),
        best_epoch=best_epoch,
        history=history,
        loadavg_before=list(load0),
        loadavg_after=list(load1),
        seed=args.seed,
        versions=qd.pkg_versions("n2v_tf", "tensorflow", "keras", "numpy", "scikit-image"),
        model_dir=str(Path(basedir) / name),
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


def load_results(quick: bool) -> list[dict]:
    d = qd.RUNS_DIR / "quick" if quick else qd.RUNS_DIR
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except Exception as e:  # pragma: no cover
            print(f"(skipping unreadable {p}: {e})", file=sys.stderr)
            continue
        if {"tool", "variant", "dataset", "psnr"} <= set(r):
            out.append(r)
    return out


def make_table(results: list[dict]) -> str:
    datasets = [d for d in qd.DATASETS if any(r["dataset"] == d for r in results)]
    rows: dict[tuple, dict] = {}
    for r in results:
        rows.setdefault((r["tool"], r["variant"]), {})[r["dataset"]] = r

    def fmt(x, spec):
        return "—" if x is None else format(x, spec)

    head = ["method"] + [f"{d} PSNR (dB)" for d in datasets] + [f"{d} input PSNR" for d in datasets] \
        + [f"{d} train time (s)" for d in datasets] + ["steps", "checkpoint", "versions"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for key in sorted(rows, key=lambda k: (TOOL_ORDER.get(k[0], 9), list(qd.N2V_VARIANTS).index(k[1])
                                           if k[1] in qd.N2V_VARIANTS else 9, k[1])):
        per = rows[key]
        any_r = next(iter(per.values()))
        steps = sorted({r.get("steps") for r in per.values()})
        ckpts = []
        for d in datasets:
            if d not in per:
                continue
            r = per[d]
            n_ep = len(r.get("history", {}).get("val_loss", [])) or r.get("epochs")
            c = r.get("checkpoint", "?")
            ckpts.append(f"{d}: last" if c.startswith("last") else f"{d}: best-val ep {r.get('best_epoch')}/{n_ep}")
        cells = [_label(any_r)]
        cells += [fmt(per[d]["psnr"], ".2f") if d in per else "—" for d in datasets]
        cells += [fmt(per[d]["psnr_input"], ".2f") if d in per else "—" for d in datasets]
        cells += [fmt(per[d].get("train_time_s"), ".0f") if d in per else "—" for d in datasets]
        cells += ["/".join(str(s) for s in steps), "; ".join(ckpts), _version_str(any_r)]
        lines.append("| " + " | ".join(cells) + " |")

    notes = []
    shas = {}
    for r in results:
        sha = r.get("data", {}).get("sha256", {}).get("X_train")
        shas.setdefault(r["dataset"], set()).add(sha)
    for d, s in shas.items():
        if len(s) > 1:
            notes.append(f"WARNING: results for {d} were produced on DIFFERENT data (data sha256 differs).")
    steps_all = {r.get("steps") for r in results}
    if len(steps_all) > 1:
        notes.append(f"WARNING: runs used different numbers of optimiser steps: {sorted(steps_all, key=str)}.")
    notes.append("PSNR: natural = mean over camera, moon (data_range 255); fluo = right 1/4 of the stardist nuclei "
                 "image (data_range = clean max - min). Train times are wall-clock on a shared 2-core CPU "
                 "(contention varies between runs).")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


# --------------------------------------------------------------------------
def _select(only: list[str] | None) -> list[tuple[str, str]]:
    pairs = [(v, d) for d in qd.DATASETS for v in VARIANTS]
    if not only:
        return pairs
    vs = {t for t in only if t in VARIANTS}
    ds = {t for t in only if t in qd.DATASETS}
    explicit = {tuple(t.split("/", 1)) for t in only if "/" in t}
    bad = [t for t in only if t not in VARIANTS and t not in qd.DATASETS and "/" not in t]
    if bad:
        raise SystemExit(f"--only: unknown token(s) {bad}; use variant names {VARIANTS}, dataset names "
                         f"{qd.DATASETS} or variant/dataset")
    sel = [(v, d) for v, d in pairs if (not vs or v in vs) and (not ds or d in ds)] if (vs or ds) else []
    sel += [p for p in pairs if p in explicit and p not in sel]
    return sel


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="n2v_tf quality benchmark + combined table with the references")
    qd.add_common_args(ap)
    ap.add_argument("--only", nargs="+", default=None, metavar="TOKEN",
                    help=f"restrict runs: variant names {VARIANTS}, dataset names {qd.DATASETS}, or variant/dataset")
    ap.add_argument("--table-only", action="store_true", help="do not train; print the table from _runs/*.json")
    ap.add_argument("--no-table", action="store_true")
    args = ap.parse_args(argv)

    if not args.table_only:
        sel = [(v, d) for v, d in _select(args.only) if d in args.datasets]
        cache = {}
        for variant, dname in sel:
            ds = cache.setdefault(dname, qd.load(dname))
            res = run_one(variant, ds, args)
            qd.write_result(TOOL, variant, ds, res, args.quick)

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
