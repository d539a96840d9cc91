"""Speed of n2v_tf against n2v 0.3.3 and CAREamics 0.3.5: training, data pipeline, prediction, memory (issue 13).

Run from the repository root with the project's virtualenv; each tool's part runs as a subprocess in that
tool's own virtualenv (``speed_worker.py``), one after the other, on the same data::

    nice -n 10 /work/venv/bin/python benchmarks/bench_speed.py --quick        # smoke run (tiny sizes, minutes)
    /work/venv/bin/python benchmarks/bench_speed.py                           # full protocol (idle machine!)
    /work/venv/bin/python benchmarks/bench_speed.py --tools n2v_tf n2v033     # a subset
    /work/venv/bin/python benchmarks/bench_speed.py --table-only              # reprint the last run's table

Tools: ``n2v_tf``, ``n2v_tf_auto`` (n2v_tf's training with ``train_mixed_precision='auto'``: bfloat16 on CPUs with
AMX-BF16/AVX512-BF16, float32 elsewhere; training columns only, its prediction is n2v_tf's float32 network; an
extra ratio row), ``n2v033``, ``careamics``.

Virtualenvs (flags ``--venv-n2v-tf``, ``--venv-n2v033``, ``--venv-careamics``): ``/work/venv`` (n2v_tf dev),
``/work/venvs/n2v033`` (n2v 0.3.3, TF 2.15; setup in ``ref_n2v033.py``), ``/work/venvs/careamics``
(CAREamics 0.3.5, PyTorch CPU; setup and torchvision stub in ``ref_careamics.py``).  A missing virtualenv
gives a row "not run (venv missing: ...)", a failing part "failed: ..." (its log is in the output folder).

Writes ``benchmarks/_runs/speed/`` (``_runs/speed/quick/`` for ``--quick``): ``<tool>_<part>.json`` and
``.log`` of every worker, ``machine.json``, the prediction images (``data/``), the model folders
(``models/``) and ``speed_summary.json`` (everything, plus the table); prints ONE markdown table.

Protocol (flags, defaults): U-Net depth 2, 32 first filters, kernel 3, batch norm, batch 16, 64x64 patches,
0.198 % masked pixels, ``uniform_withCP`` for n2v/n2v_tf (CAREamics: its default N2V masking, ``uniform``
without the centre pixel), Adam 4e-4, ``--steps 300`` in epochs of ``--steps-per-epoch 50`` with validation
(the 200 validation patches) after every epoch; data: ``quality_data.py``'s ``fluo`` set (1800 training
patches).  ``--quick``: 6 steps in epochs of 2, 3 timed steps/batches, 2 images of 256x256 and 4 of 128x128.

Columns (one row per tool; the last row: n2v_tf divided by the best reference, < 1 is better for times):

``train s/step``
    Whole training through the tool's own API (n2v_tf / n2v: ``N2V(config, name, basedir).train(X, X_val)``,
    CAREamics: ``CAREamist.train``), STEADY STATE: (end of the last epoch - end of epoch 1) / steps of epochs
    2..n, from a callback; includes each epoch's validation, checkpoint writing and callbacks, EXCLUDES epoch 1
    (graph tracing / compilation, data set-up).  ``median step s``: the median interval between two training
    batches of epochs 2..n (the step inside the tool's loop, without validation).  ``epoch 1 s``: from the
    ``train`` call to the end of epoch 1 (compilation + first steps + first validation; CAREamics: also
    Lightning's sanity-check validation).  ``train wall s``: the whole ``train`` call (incl. reloading the best
    weights after training).
``net s/step``
    The same network's training step alone on ONE fixed pre-made batch, in a loop after 3 warm-up calls:
    n2v_tf / n2v ``keras_model.train_on_batch(x, y)`` (compiled train function); CAREamics the torch module's
    forward + masked MSE (``careamics.losses.n2v_loss``) + backward + ``torch.optim.Adam`` step.
``producer ms/batch`` (at the protocol batch size, and at ``--big-batch 128``)
    One training batch from the tool's data pipeline alone: n2v_tf ``N2VSequence.batch(e, i)`` / iterating
    ``N2VSequence.tf_dataset()`` (prefetch 2; a consumer that takes batches as fast as they come); n2v
    ``N2V_DataWrapper.__getitem__``; CAREamics its train dataloader (patching, normalisation, collation;
    ``num_workers=0`` as in ``ref_careamics.py``) + its ``N2VManipulate`` masking, which CAREamics runs inside
    the Lightning module on the batch tensor (shown as total (loader + mask)).
``1st predict s`` and ``import + load s``
    In a FRESH process: the first ``predict`` call on a 256x256 image with the model loaded from its folder
    (n2v_tf / n2v ``N2V(None, name, basedir)``, CAREamics ``CAREamist(checkpoint_path=<last.ckpt>)``), i.e.
    including its tracing/compilation; and the time to import the tool and load the model before it.
``2048² tiled Mpx/s``
    ``--n-big 4`` images of 2048x2048, ``model.predict(img, 'YX', n_tiles=(2, 2))`` (n2v_tf, n2v); CAREamics
    ``predict(img, tile_size=(T, T), tile_overlap=(O, O))`` with O = 2 x the context that n2v_tf's tiling gives
    each tile (csbdeep: the receptive-field radius rounded up to 2**depth: 28 px, so O = 56) and T chosen so
    that CAREamics also makes 2 x 2 tiles (T = 1052 for 2048): the same tiles and context as n2v_tf.  After one
    warm-up call (the first image), all images timed.
``512² loop Mpx/s``
    ``--n-small 24`` images of 512x512 predicted one by one from memory (untiled; CAREamics ``batch_size=1``),
    after one warm-up call.
``512² folder Mpx/s``
    The same 24 images as a folder of TIFFs: n2v_tf through its CLI ``n2v-tf predict <folder> --model-dir ...
    --name ... --output ...`` (a new process: start-up + import + load + TIFF read/write included; in brackets
    the marginal rate without start-up, from the difference of a 1-image and the 24-image run); CAREamics
    ``CAREamist.predict(<folder>, data_type='tiff')`` (in the warm process, no writing); n2v: none.
``peak RSS MB``
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the training process (after ``train``) / of the
    prediction process (after the in-process predictions; the CLI runs in its own process).

Below the table: the machine (``lscpu`` model name, avx2 / avx512f / amx flags), date, versions, load averages
before/after each tool, the machine's fp32 matrix-product GFLOP/s (numpy and TensorFlow, 2048x2048), the
network's FLOPs per pixel (sum over the conv layers of 2*k^d*Cin*Cout / (downsampling factor)^d; bias, batch
norm, activations not counted) and the fraction of the matrix-product rate each tool's tiled prediction reaches.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import quality_data as qd  # noqa: E402
import speed_worker as sw  # noqa: E402  (imports neither TensorFlow nor torch)

WORKER = HERE / "speed_worker.py"
LABELS = {"n2v_tf": "n2v_tf", "n2v_tf_auto": "n2v_tf, mixed precision 'auto'", "n2v033": "n2v 0.3.3",
          "careamics": "CAREamics 0.3.5"}
DEFAULT_VENVS = {"n2v_tf": "/work/venv", "n2v033": "/work/venvs/n2v033", "careamics": "/work/venvs/careamics"}
REFS = ("n2v033", "careamics")


# --------------------------------------------------------------------------
# machine and data
# --------------------------------------------------------------------------
def machine_info() -> dict:
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), None)
    except OSError:
        pass
    flags = set()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("flags"):
                flags = set(ln.split(":", 1)[1].split())
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError):
        pass
    return dict(model_name=model or platform.processor() or platform.machine(), cpus=os.cpu_count(), mem_gib=mem,
                avx2="avx2" in flags, avx512f="avx512f" in flags,
                amx=sorted(f for f in flags if f.startswith("amx")),
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), python=platform.python_version())


def _noisy(shape, clean_src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fluo-like noisy image: the clean fluo test region tiled (randomly shifted) + Poisson/read noise."""
    reps = [int(np.ceil(s / c)) + 1 for s, c in zip(shape, clean_src.shape)]
    big = np.tile(clean_src, reps)
    y0, x0 = (int(rng.integers(0, c)) for c in clean_src.shape)
    clean = big[y0:y0 + shape[0], x0:x0 + shape[1]].astype(np.float64)
    return (rng.poisson(clean) + rng.normal(0.0, qd.FLUO_READ_SIGMA, clean.shape)).astype(np.float32)


def write_pred_data(p: dict, data_dir: Path) -> dict:
    """The prediction images, shared by all tools: latency.npy, big.npy, small/*.tif, small1/ (first only)."""
    import tifffile

    ds = qd.load(sw.DATASET)
    src = ds["test_clean"][0]
    data_dir.mkdir(parents=True, exist_ok=True)
    np.save(data_dir / "latency.npy", _noisy((p["latency_size"],) * 2, src, np.random.default_rng([qd.SEED, 90])))
    big = np.stack([_noisy((p["big_size"],) * 2, src, np.random.default_rng([qd.SEED, 91, i]))
                    for i in range(p["n_big"])])
    np.save(data_dir / "big.npy", big)
    for sub in ("small", "small1"):
        d = data_dir / sub
        d.mkdir(exist_ok=True)
        for f in d.glob("*.tif"):
            f.unlink()
    for i in range(p["n_small"]):
        im = _noisy((p["small_size"],) * 2, src, np.random.default_rng([qd.SEED, 92, i]))
        tifffile.imwrite(data_dir / "small" / f"img_{i:02d}.tif", im)
        if i == 0:
            tifffile.imwrite(data_dir / "small1" / f"img_{i:02d}.tif", im)
    return dict(latency=[p["latency_size"]] * 2, big=list(big.shape), small=[p["n_small"], p["small_size"],
                p["small_size"]], source="fluo clean test region tiled + Poisson + read noise (seeded)")


# --------------------------------------------------------------------------
# running the workers
# --------------------------------------------------------------------------
def venv_python(venv: str) -> Path:
    return Path(venv) / "bin" / "python"


def run_worker(py: Path, tool: str, part: str, args, outdir: Path, extra=()) -> dict:
    out, log = outdir / f"{tool}_{part}.json", outdir / f"{tool}_{part}.log"
    out.unlink(missing_ok=True)
    cmd = [str(py), str(WORKER), "--tool", tool, "--part", part, "--out", str(out),
           "--workdir", str(outdir / "models"), "--data-dir", str(outdir / "data"), *sw.protocol_argv(args), *extra]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each venv sees only its own packages
    t = time.perf_counter()
    print(f"[bench_speed] {tool}/{part} ... (log {log})", flush=True)
    err = None
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n\n")
        f.flush()
        try:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env, timeout=args.timeout)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc, err = None, f"timed out after {args.timeout} s"
    if out.exists():
        res = json.loads(out.read_text())
    else:
        res = dict(ok=False, error=err or f"no result (exit code {rc})")
    if not res.get("ok"):
        res["error"] = f"{res.get('error')} (log: {log.relative_to(REPO) if log.is_relative_to(REPO) else log})"
    print(f"[bench_speed] {tool}/{part}: {'ok' if res.get('ok') else 'FAILED: ' + res['error']} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return res


def run_all(args, p: dict, outdir: Path) -> dict:
    summary = dict(machine=machine_info(), protocol=p, tools={}, argv=sys.argv[1:])
    print(f"[bench_speed] writing prediction images into {outdir / 'data'} ...", flush=True)
    summary["pred_data"] = write_pred_data(p, outdir / "data")
    venvs = {"n2v_tf": args.venv_n2v_tf, "n2v_tf_auto": args.venv_n2v_tf, "n2v033": args.venv_n2v033,
             "careamics": args.venv_careamics}
    py_tf = venv_python(venvs["n2v_tf"])
    summary["matmul"] = run_worker(py_tf if py_tf.exists() else Path(sys.executable), "n2v_tf", "machine", args,
                                   outdir)
    context = None
    old_tf = outdir / "n2v_tf_train.json"  # an earlier run's n2v_tf context, in case n2v_tf is not run now
    if "n2v_tf" not in args.tools and old_tf.exists():
        old = json.loads(old_tf.read_text())
        if old.get("ok") and old.get("protocol", {}).get("depth") == p["depth"] and old.get("tile_context_px"):
            context = int(old["tile_context_px"])
            summary["n2v_tf_tile_context_px"] = context
    for tool in args.tools:
        py = venv_python(venvs[tool])
        entry = dict(venv=venvs[tool])
        summary["tools"][tool] = entry
        if not py.exists():
            entry["skipped"] = f"not run (venv missing: {venvs[tool]})"
            print(f"[bench_speed] {tool}: {entry['skipped']}", flush=True)
            continue
        entry["loadavg_before"] = list(os.getloadavg())
        entry["train"] = run_worker(py, tool, "train", args, outdir)
        if tool == "n2v_tf" and entry["train"].get("tile_context_px"):
            context = int(entry["train"]["tile_context_px"])
            summary["n2v_tf_tile_context_px"] = context
        extra = ["--train-json", str(outdir / f"{tool}_train.json")]
        if tool == "careamics" and args.careamics_overlap is None and context is not None:
            extra += ["--careamics-overlap", str(2 * context)]
        if tool in sw.MIXED_PRECISION_TOOLS:
            entry["predict"] = None  # predicts with the same float32 network as n2v_tf
        elif entry["train"].get("ok"):
            entry["predict"] = run_worker(py, tool, "predict", args, outdir, extra)
        else:
            entry["predict"] = dict(ok=False, error="not run (training failed)")
        entry["loadavg_after"] = list(os.getloadavg())
    return summary


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------
def g(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def f(v, nd=3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def ratio(a, b) -> float | None:
    return None if a is None or b in (None, 0) else a / b


COLUMNS = ("tool", "train s/step (ep 2..n)", "median step s", "epoch 1 s", "train wall s", "net s/step",
           "producer ms/batch ({b})", "producer ms/batch ({bb})", "1st predict s", "import + load s",
           "{big}² tiled Mpx/s", "{small}² loop Mpx/s", "{small}² folder Mpx/s", "peak RSS train / predict MB")


def producer_cell(tool: str, prod: dict | None, bs: int) -> str:
    if not prod:
        return "–"
    if tool.startswith("n2v_tf"):
        return f"{f(prod.get(f'batch_{bs}_ms'), 2)} / {f(prod.get(f'tf_dataset_{bs}_ms'), 2)}"
    if tool == "careamics":
        return (f"{f(prod.get(f'batch_{bs}_ms'), 2)} ({f(prod.get(f'loader_{bs}_ms'), 2)} + "
                f"{f(prod.get(f'mask_{bs}_ms'), 2)})")
    return f(prod.get(f"batch_{bs}_ms"), 2)


def metrics(entry: dict) -> dict:
    tr, pr = entry.get("train") or {}, entry.get("predict") or {}
    return dict(step=g(tr, "training", "s_per_step"), median=g(tr, "training", "median_batch_s"),
                epoch1=g(tr, "training", "first_epoch_s"), wall=g(tr, "training", "total_s"),
                net=g(tr, "network", "s_per_step"), first=g(pr, "first_predict_s"),
                big=g(pr, "big", "mpx_s"), loop=g(pr, "small_loop", "mpx_s"), folder=g(pr, "small_folder", "mpx_s"))


def build_table(summary: dict) -> tuple[str, dict]:
    p = summary["protocol"]
    head = [c.format(b=p["batch"], bb=p["big_batch"], big=p["big_size"], small=p["small_size"]) for c in COLUMNS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tools = summary["tools"]
    for tool, e in tools.items():
        label = LABELS[tool]
        if tool in sw.MIXED_PRECISION_TOOLS and g(e, "train", "precision"):
            label += f" (-> {g(e, 'train', 'precision')})"
        if e.get("skipped"):
            rows.append(f"| {label} | {e['skipped']} |" + " |" * (len(head) - 2))
            continue
        tr, pr = e.get("train") or {}, e.get("predict") or {}
        if not tr.get("ok"):
            rows.append(f"| {label} | failed: {tr.get('error')} |" + " |" * (len(head) - 2))
            continue
        m = metrics(e)
        prod = tr.get("producer")
        if tool == "n2v_tf":
            cli = g(pr, "small_folder", "cli")
            folder = f"{f(m['folder'], 2)} CLI ({f(g(cli, 'marginal_mpx_s'), 2)} w/o start-up)" if cli else "–"
        else:
            folder = f(m["folder"], 2)
        if pr and not pr.get("ok"):
            pred_cells = [f"failed: {pr.get('error')}"] + [""] * 4
        else:
            imp = None if g(pr, "import_s") is None else pr["import_s"] + (pr.get("load_s") or 0.0)
            pred_cells = [f(m["first"], 2), f(imp, 1), f(m["big"], 2), f(m["loop"], 2), folder]
        rss = f"{f(tr.get('rss_train_mb'), 0)} / {f(pr.get('rss_predict_mb'), 0)}"
        cells = [label, f(m["step"]), f(m["median"]), f(m["epoch1"], 1), f(m["wall"], 1), f(m["net"]),
                 producer_cell(tool, prod, p["batch"]), producer_cell(tool, prod, p["big_batch"]), *pred_cells, rss]
        rows.append("| " + " | ".join(cells) + " |")

    # ratios: n2v_tf / best reference (times: the smallest; rates: the largest); first call: n2v_tf / n2v
    ours = metrics(tools["n2v_tf"]) if "n2v_tf" in tools and not tools["n2v_tf"].get("skipped") else None
    refs = {t: metrics(tools[t]) for t in REFS if t in tools and not tools[t].get("skipped")}
    ratios = {}

    def best(key, fn):
        vals = [(m[key], t) for t, m in refs.items() if m[key] is not None]
        return fn(vals) if vals else (None, None)

    if ours:
        for key, fn in (("step", min), ("median", min), ("net", min), ("big", max), ("loop", max)):
            v, t = best(key, fn)
            ratios[key] = dict(value=ratio(ours[key], v), ref=t)
        prod_ours = g(tools["n2v_tf"], "train", "producer", f"batch_{p['batch']}_ms")
        prods = [(g(tools[t], "train", "producer", f"batch_{p['batch']}_ms"), t) for t in refs]
        prods = [x for x in prods if x[0] is not None]
        v, t = min(prods) if prods else (None, None)
        ratios["producer"] = dict(value=ratio(prod_ours, v), ref=t)
        ratios["first"] = dict(value=ratio(ours["first"], refs.get("n2v033", {}).get("first")), ref="n2v033")

        def rc(key):
            r = ratios.get(key) or {}
            return "–" if r.get("value") is None else f"{r['value']:.2f} (vs {LABELS[r['ref']]})"

        cells = ["**n2v_tf / best ref**", rc("step"), rc("median"), "", "", rc("net"), rc("producer"), "",
                 rc("first"), "", rc("big"), rc("loop"), "", ""]
        rows.append("| " + " | ".join(cells) + " |")
    for tool in sw.MIXED_PRECISION_TOOLS:  # training columns of the mixed-precision row against the references
        e = tools.get(tool)
        if not e or e.get("skipped") or not g(e, "train", "ok") or not refs:
            continue
        m = metrics(e)
        rt = {}
        for key in ("step", "median", "net"):
            v, t = best(key, min)
            rt[key] = dict(value=ratio(m[key], v), ref=t)
        ratios[tool] = rt

        def rcm(key):
            r = rt.get(key) or {}
            return "–" if r.get("value") is None else f"{r['value']:.2f} (vs {LABELS[r['ref']]})"

        cells = [f"**{LABELS[tool]} / best ref**", rcm("step"), rcm("median"), "", "", rcm("net")] + [""] * 8
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows), ratios


def notes(summary: dict, ratios: dict) -> list[str]:
    mc, p, tools = summary["machine"], summary["protocol"], summary["tools"]
    mm = summary.get("matmul") or {}
    amx = ", ".join(mc["amx"]) if mc["amx"] else "no"
    quick = "; QUICK smoke run (tiny sizes, numbers not meaningful)" if p["quick"] else ""
    lines = [
        f"Machine: {mc['model_name']}, {mc['cpus']} CPUs, {mc.get('mem_gib')} GiB; "
        f"avx2 {'yes' if mc['avx2'] else 'no'}, avx512f {'yes' if mc['avx512f'] else 'no'}, amx {amx}; "
        f"date {mc['date']}.",
        f"Protocol: depth {p['depth']}, {p['n_first']} filters, kernel {p['kernel']}, batch norm "
        f"{'on' if p['batch_norm'] else 'off'}, batch {p['batch']}, {p['patch']}x{p['patch']} patches, "
        f"{p['perc_pix']} % masked, Adam {p['lr']}, {p['steps']} steps = {p['epochs']} epochs x "
        f"{p['steps_per_epoch']} with validation; network-only {p['net_steps']} steps, producer "
        f"{p['producer_batches']} batches{quick}.",
    ]
    if mm.get("ok"):
        lines.append(f"fp32 matrix product {mm['n']}x{mm['n']} (x{mm['reps']}): numpy {f(mm.get('numpy_gflops'), 1)} "
                     f"GFLOP/s ({mm.get('numpy_blas')}), TensorFlow {f(mm.get('tf_gflops'), 1)} GFLOP/s.")
    peak = mm.get("tf_gflops") or mm.get("numpy_gflops")
    for tool, e in tools.items():
        if e.get("skipped"):
            lines.append(f"{LABELS[tool]}: {e['skipped']}.")
            continue
        tr, pr = e.get("train") or {}, e.get("predict") or {}
        v = {k: val for k, val in (tr.get("versions") or pr.get("versions") or {}).items() if val}
        fl = g(tr, "flops", "flops_per_px")
        big = g(pr, "big", "mpx_s")
        frac = None if None in (fl, big, peak) else big * 1e6 * fl / (peak * 1e9)
        e["matmul_fraction"] = frac
        la0, la1 = e.get("loadavg_before"), e.get("loadavg_after")
        line = (f"{LABELS[tool]}: " + ", ".join(f"{k} {val}" for k, val in v.items())
                + (f"; threads {tr['threads']}" if tr.get("threads") else "")
                + (f"; {tr['n_params']:,} parameters" if tr.get("n_params") else "")
                + (f"; {fl / 1e3:.1f} kFLOP/px (conv layers)" if fl else "")
                + (f"; tiled prediction reaches {100 * frac:.1f} % of the matrix-product rate" if frac else "")
                + (f"; load average before {la0[0]:.2f} / after {la1[0]:.2f}" if la0 and la1 else ""))
        lines.append(line + ".")
        if tool == "careamics" and g(pr, "tiling"):
            t = pr["tiling"]
            lines.append(f"CAREamics tiling for {p['big_size']}²: tile_size {tuple(t['tile_size'])}, tile_overlap "
                         f"{tuple(t['tile_overlap'])} -> {t['tiles_per_axis']} x {t['tiles_per_axis']} tiles with "
                         f"{t['context_px']} px context per inner edge (n2v_tf: n_tiles=({p['n_tiles']}, "
                         f"{p['n_tiles']}), context {summary.get('n2v_tf_tile_context_px') or '?'} px); "
                         f"predict batch_size {t['batch_size']}; every CAREamics predict call builds a datamodule "
                         f"and runs trainer.predict.")
    r = ratios or {}
    if r:
        parts = [f"{name} {r[k]['value']:.2f}" for k, name in (("step", "training s/step"), ("big", "prediction Mpx/s"),
                                                                ("first", "first-call latency vs n2v 0.3.3"))
                 if r.get(k) and r[k].get("value") is not None]
        if parts:
            lines.append("Ratios n2v_tf / best reference: " + "; ".join(parts) + ".")
    lines.append("Times exclude compilation where stated: train s/step and median step skip epoch 1 (its tracing "
                 "is in 'epoch 1 s'); net s/step, producer and throughput columns follow warm-up calls; "
                 "'1st predict s' deliberately includes the first call's tracing.")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", nargs="+", default=list(sw.TOOLS), choices=list(sw.TOOLS))
    ap.add_argument("--venv-n2v-tf", default=DEFAULT_VENVS["n2v_tf"])
    ap.add_argument("--venv-n2v033", default=DEFAULT_VENVS["n2v033"])
    ap.add_argument("--venv-careamics", default=DEFAULT_VENVS["careamics"])
    ap.add_argument("--timeout", type=int, default=7200, help="seconds per worker process")
    ap.add_argument("--table-only", action="store_true", help="reprint the table of the last run's speed_summary.json")
    sw.add_protocol_args(ap)
    args = ap.parse_args(argv)
    p = sw.protocol(args)
    outdir = qd.RUNS_DIR / "speed" / ("quick" if p["quick"] else "")
    outdir.mkdir(parents=True, exist_ok=True)
    summary_path = outdir / "speed_summary.json"
    if args.table_only:
        summary = json.loads(summary_path.read_text())
    else:
        summary = run_all(args, p, outdir)
    table, ratios = build_table(summary)
    lines = notes(summary, ratios)
    summary.update(table=table, ratios=ratios, notes=lines)
    if not args.table_only:
        summary_path.write_text(json.dumps(summary, indent=2, default=float))
    print()
    print(f"# Speed: n2v_tf vs n2v 0.3.3 vs CAREamics ({summary['machine']['date']}, "
          f"{summary['machine']['model_name']}, {summary['machine']['cpus']} CPUs)")
    print()
    print(table)
    print()
    for ln in lines:
        print(f"- {ln}")
    print(f"\n(JSON: {summary_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
