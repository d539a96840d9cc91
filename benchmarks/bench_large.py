"""Large data (issue 14): peak memory and speed of in-memory, block-wise and Dask prediction, and of training from Zarr.

Run from the repository root with the project's virtualenv (each measurement runs in a FRESH subprocess of this
script, so that its peak RSS is its own)::

    nice -n 10 /work/venv/bin/python benchmarks/bench_large.py --quick      # smoke run (small sizes, minutes)
    /work/venv/bin/python benchmarks/bench_large.py                         # full protocol (idle machine; ~1 h)
    /work/venv/bin/python benchmarks/bench_large.py --sizes 2d-16k --methods blocks dask2
    /work/venv/bin/python benchmarks/bench_large.py --train-gb 1 4 --no-predict

Protocol
--------
Model: a small UNTRAINED N2V (U-Net depth 2, 32 first filters, kernel 3, batch norm; 2D and 3D) saved to a model
folder (training is not the point: the network's cost is). Images: synthetic uint16 (a smooth pattern around 1000
plus Gaussian noise), written as tiled (512 x 512) uncompressed BigTIFFs tile by tile (never whole in memory):
``2d-4k`` 4096 x 4096, ``2d-16k`` 16384 x 16384, ``3d-256x2k`` 256 x 2048 x 2048 (``--quick``: ``2d-1k``,
``2d-2k``, ``3d-32x512``). Every method reads the TIFF and writes a float32 result to disk:

``memory``
    ``tifffile.imread`` + ``N2V.predict(img, axes, n_tiles=...)`` (tiles of about the block size) + ``write_tiff``.
    Skipped where it would not fit (estimate: uint16 image + 3.5 x the float32 image + the activations of one batch
    of tiles, vs 85 % of the available RAM): "skipped (would need ~N GB)".
``blocks``
    ``n2v_tf.large.predict_blocks(model, tif, out.zarr, axes)`` (default block shape: 1024 x 1024, 64 x 128 x 128).
``dask1``, ``dask2``
    ``predict_dask`` on ``da.from_array`` of the TIFF (chunks = the block shape; the file is reopened in each worker,
    ``n2v_tf.large._FileArray``), stored to Zarr with ``da.store`` on a ``distributed.LocalCluster`` of 1 or 2 worker
    processes with 1 thread each (no memory limit). The workers load the model before the clock starts (as the
    other methods, whose model loading is not timed); tracing the network is timed everywhere.

``wall s``: from after loading the model to the result on disk. ``Mpx/s``: pixels (voxels) / wall. ``peak RSS MB``:
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the measuring process; for Dask the largest worker's (from
``client.run``), with the sum over all workers and the client process in parentheses.

Training row: ``N2V.train`` for 2 epochs x 5 steps (batch 16, 64 x 64 patches) from a list of Zarr-backed lazy
images (``open_array(path, axes='YX')[0].as_axes('YXC')``, 4096 x 4096 uint16 each, 32 MiB) of growing total
size (``--train-gb``, default 1 4 16; ``--quick`` 0.0625 0.25); wall includes ``N2VConfig``'s pass over the data
for the normalisation statistics. Sizes that do not fit on the disk (half of the free space) are skipped.

Writes ``benchmarks/_runs/large/`` (``_runs/large/quick/`` for ``--quick``): ``bench_large.json`` (machine, rows,
table) and one ``<row>.log`` per measurement; the synthetic data go to ``data/`` there and are deleted at the end
unless ``--keep-data`` (kept images of the right shape are reused). Prints ONE markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs" / "large"
SIZES = {
    "2d-1k": ("YX", (1024, 1024)), "2d-2k": ("YX", (2048, 2048)), "3d-32x512": ("ZYX", (32, 512, 512)),
    "2d-4k": ("YX", (4096, 4096)), "2d-16k": ("YX", (16384, 16384)), "3d-256x2k": ("ZYX", (256, 2048, 2048)),
    "3d-64x1k": ("ZYX", (64, 1024, 1024)),  # 3D on a 2-core machine in minutes (256 x 2k x 2k takes about an hour)
}
FULL_SIZES, QUICK_SIZES = ["2d-4k", "2d-16k", "3d-256x2k"], ["2d-1k", "2d-2k", "3d-32x512"]
METHODS = ["memory", "blocks", "dask1", "dask2"]
FULL_TRAIN_GB, QUICK_TRAIN_GB = [1.0, 4.0, 16.0], [0.0625, 0.25]
TILE = 512
TRAIN_IMAGE = (4096, 4096)           # one training image: 32 MiB of uint16
QUICK_TRAIN_IMAGE = (2048, 2048)     # 8 MiB
NET = dict(unet_n_depth=2, unet_n_first=32, unet_kern_size=3, batch_norm=True)


# --------------------------------------------------------------------------- synthetic data (parent process)

def _tiles(shape, seed=0):
    """The tiles of a synthetic uint16 image in tifffile's order (page by page, row-major tiles)."""
    rng = np.random.default_rng(seed)
    pages = shape[0] if len(shape) == 3 else 1
    ny, nx = shape[-2] // TILE, shape[-1] // TILE
    yy, xx = np.meshgrid(np.arange(TILE), np.arange(TILE), indexing="ij")
    for z in range(pages):
        for ty in range(ny):
            for tx in range(nx):
                y, x = yy + ty * TILE, xx + tx * TILE
                clean = 1000 + 400 * np.sin(y / 97.0 + z / 13.0) * np.cos(x / 61.0)
                yield np.clip(clean + rng.normal(0, 60, clean.shape), 0, 65535).astype(np.uint16)


def write_image(path: Path, axes: str, shape) -> Path:
    """A tiled BigTIFF of ``shape`` written tile by tile (reused if it exists with this shape)."""
    import tifffile
    if path.exists():
        try:
            with tifffile.TiffFile(path) as tif:
                if tuple(tif.series[0].shape) == tuple(shape):
                    return path
        except Exception:  # noqa: BLE001 - rewrite a broken file
            pass
    assert all(s % TILE == 0 for s in shape[-2:]), shape
    tmp = path.with_name(path.name + ".tmp.tif")
    tifffile.imwrite(tmp, data=_tiles(shape), shape=shape, dtype=np.uint16, tile=(TILE, TILE), bigtiff=True,
                     photometric="minisblack", metadata={"axes": axes})
    os.replace(tmp, path)
    return path


def write_training_images(folder: Path, n: int, shape) -> list[Path]:
    """``n`` uncompressed Zarr arrays of ``shape`` uint16 (reused if present)."""
    import zarr
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"train{i:04d}.zarr"
        if not (p / ".zarray").exists():
            z = zarr.open_array(str(p), mode="w", shape=shape, chunks=(512, 512), dtype="uint16", compressor=None,
                                zarr_format=2)
            gen = _tiles((1,) + tuple(shape), seed=100 + i)
            for ty in range(shape[0] // TILE):
                z[ty * TILE:(ty + 1) * TILE] = np.concatenate([next(gen) for _ in range(shape[1] // TILE)], axis=1)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- measurements (worker subprocesses)

def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _default_block(n_dim):
    from n2v_tf.large import _default_block
    return _default_block(n_dim)


def _warm(folder):
    """Run on each Dask worker: load the model (and its compiled network) once, before the clock starts."""
    from n2v_tf.large import _worker_network
    _worker_network(folder)
    return os.getpid()


def _worker_peak():
    import resource as r
    return r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict) -> dict:
    """One measurement (in a fresh process): ``spec`` names the method, image, axes, model folder and output."""
    method, src, axes, folder, out = spec["method"], spec["src"], spec["axes"], spec["model"], Path(spec["out"])
    n_px = int(np.prod(spec["shape"]))
    if method == "train":
        return measure_training(spec)
    from n2v_tf import N2V
    folder_p = Path(folder)
    model = N2V(None, folder_p.name, basedir=str(folder_p.parent))
    n_dim = model.config.n_dim
    block = tuple(spec.get("block") or _default_block(n_dim))
    result = {"block": list(block)}
    if method == "memory":
        import tifffile

        from n2v_tf.io import write_tiff
        n_tiles = [max(1, -(-s // b)) for s, b in zip(spec["shape"][-n_dim:], block)]
        n_tiles = [1] * (len(spec["shape"]) - n_dim) + n_tiles
        t0 = time.perf_counter()
        img = tifffile.imread(src)
        pred = model.predict(img, axes, n_tiles=n_tiles)
        write_tiff(out, pred.astype(np.float32, copy=False), axes=axes)
        wall = time.perf_counter() - t0
        result.update(n_tiles=n_tiles)
        peak = total = _peak_mb()
    elif method == "blocks":
        from n2v_tf.large import predict_blocks
        t0 = time.perf_counter()
        predict_blocks(model, src, out, axes, block_shape=block, progress=False)
        wall = time.perf_counter() - t0
        peak = total = _peak_mb()
    elif method.startswith("dask"):
        import dask.array as da
        import zarr
        from distributed import Client, LocalCluster

        from n2v_tf.large import _FileArray, predict_dask
        n_workers = int(method[4:])
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          memory_limit=0) as cluster, Client(cluster) as client:
            client.run(_warm, folder)
            t0 = time.perf_counter()
            chunks = tuple([1] * (len(axes) - n_dim) + list(block))
            src_arr = da.from_array(_FileArray(src, axes), chunks=chunks,
                                    meta=np.empty((0,) * len(axes), np.uint16))
            pred = predict_dask(folder, src_arr, axes)
            pred = pred.rechunk(tuple(max(c) for c in pred.chunks))
            target = zarr.open_array(str(out), mode="w", shape=pred.shape, dtype=np.float32,
                                     chunks=tuple(c[0] for c in pred.chunks), fill_value=0, zarr_format=2)
            da.store(pred, target, lock=False)
            wall = time.perf_counter() - t0
            peaks = list(client.run(_worker_peak).values())
        peak, total = max(peaks), sum(peaks) + _peak_mb()
        result.update(worker_peaks_mb=peaks)
    else:
        raise ValueError(method)
    result.update(wall_s=wall, mpx_s=n_px / 1e6 / wall, peak_rss_mb=peak, total_rss_mb=total)
    return result


def measure_training(spec: dict) -> dict:
    from n2v_tf import N2V, N2VConfig
    from n2v_tf.io import open_array
    X = [open_array(p, axes="YX")[0].as_axes("YXC") for p in spec["paths"]]
    X_val = [X[0][:256, :256].astype(np.float32)]
    t0 = time.perf_counter()
    config = N2VConfig(X, **NET, train_epochs=2, train_steps_per_epoch=5, train_batch_size=16,
                       n2v_patch_shape=(64, 64), n2v_perc_pix=0.198, train_tensorboard=False)
    t_config = time.perf_counter() - t0
    model = N2V(config, "train", basedir=spec["out"])
    history = model.train(X, X_val, verbose=0, seed=0)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "config_s": t_config, "train_s": wall - t_config, "mpx_s": None,
            "peak_rss_mb": _peak_mb(), "total_rss_mb": _peak_mb(), "loss": [float(v) for v in history.history["loss"]],
            "n_images": len(X)}


# --------------------------------------------------------------------------- parent: models, memory estimate, runs

def make_models(folder: Path) -> dict:
    """Untrained 2D and 3D models (in a subprocess, so that the parent imports no TensorFlow)."""
    folders = {2: folder / "bench2d", 3: folder / "bench3d"}
    if all((f / "weights_best.h5").exists() for f in folders.values()):
        return folders
    code = f"""
import numpy as np
from n2v_tf import N2V, N2VConfig
rng = np.random.default_rng(0)
for n_dim, name in ((2, "bench2d"), (3, "bench3d")):
    X = (1000 + 60 * rng.normal(size=(2,) + (64,) * n_dim + (1,))).astype(np.float32)
    config = N2VConfig(X, **{NET!r}, n2v_patch_shape=(64, 64) if n_dim == 2 else (32, 64, 64), train_tensorboard=False)
    model = N2V(config, name, basedir={str(folder)!r})
    model.keras_model.save_weights({str(folder)!r} + "/" + name + "/weights_best.h5")
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), stdout=subprocess.DEVNULL)
    return folders


def _env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    return env


def available_gb() -> float:
    try:
        import psutil
        return psutil.virtual_memory().available / 1e9
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9


def memory_estimate_gb(shape, n_dim: int, block) -> float:
    """In-memory predict: uint16 image + 3.5 x float32 image (float copy, normalised, padded, output) + activations
    of one batch of tiles (about 12 float32 tensors of n_first channels per input pixel)."""
    from math import prod
    n_px = prod(shape)
    tile = prod(b + 2 * 28 for b in block)
    batch = max(tile, (2 ** 21 // tile) * tile)
    return (n_px * (2 + 3.5 * 4) + batch * NET["unet_n_first"] * 4 * 12) / 1e9


def run_worker(spec: dict, log: Path, timeout: float | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        with open(log, "w") as f:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, env=_env(), timeout=timeout,
                                  check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"failed: timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = log.read_text().strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"status": f"failed: {tail[0][:200]} (log {log.name})", "elapsed_s": time.perf_counter() - t0}
    return {"status": "ok", **json.loads(lines[-1][len("RESULT "):])}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _size_label(key: str) -> str:
    axes, shape = SIZES[key]
    return " x ".join(str(s) for s in shape) + f" ({axes}, uint16, {np.prod(shape) * 2 / 2 ** 20:,.0f} MiB)"


def table(rows: list[dict]) -> str:
    out = ["| size | method | wall s | Mpx/s | peak RSS MB |", "|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['size']} | {r['method']} | {r['status']} | | |")
            continue
        rss = f"{r['peak_rss_mb']:,.0f}"
        if r["method"].startswith("dask"):
            rss += f" (all: {r['total_rss_mb']:,.0f})"
        mpx = "" if r.get("mpx_s") is None else f"{r['mpx_s']:.2f}"
        out.append(f"| {r['size']} | {r['method']} | {r['wall_s']:.1f} | {mpx} | {rss} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (1k, 2k, 32x512x512; training 64/256 MiB)")
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None, help="images (default: all of the mode)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--train-gb", nargs="*", type=float, default=None, help="training data sizes (GB of uint16)")
    p.add_argument("--no-predict", action="store_true", help="only the training rows")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--keep-data", action="store_true", help="keep the synthetic images and training Zarrs")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print("RESULT " + json.dumps(measure(json.loads(args.worker))), flush=True)
        return 0

    out = RUNS / "quick" if args.quick else RUNS
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    train_gb = args.train_gb if args.train_gb is not None else (QUICK_TRAIN_GB if args.quick else FULL_TRAIN_GB)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
               "ram_available_gb": available_gb(), "disk_free_gb": shutil.disk_usage(out).free / 1e9,
               "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"bench_large: {machine}", file=sys.stderr)
    models = make_models(data / "models")
    rows: list[dict] = []

    def record(row):
        rows.append(row)
        extra = f"{row.get('wall_s', 0):.1f} s, {row.get('peak_rss_mb', 0):,.0f} MB" if row["status"] == "ok" else ""
        print(f"  {row['size']} {row['method']}: {row['status']} {extra}", file=sys.stderr, flush=True)

    for key in ([] if args.no_predict else sizes):
        axes, shape = SIZES[key]
        n_dim = 3 if axes == "ZYX" else 2
        need = np.prod(shape) * (2 + 4) * 2 / 1e9  # input + float32 output (+ margin)
        if need > shutil.disk_usage(data).free / 1e9 / 2:
            for m in args.methods:
                record({"size": _size_label(key), "method": m, "status": f"skipped (disk: needs ~{need:.0f} GB)"})
            continue
        print(f"writing {key} ...", file=sys.stderr, flush=True)
        src = write_image(data / f"{key}.tif", axes, shape)
        block = [1024, 1024] if n_dim == 2 else [64, 128, 128]
        for m in args.methods:
            row = {"size": _size_label(key), "method": m, "key": key, "shape": list(shape)}
            if m == "memory":
                gb = memory_estimate_gb(shape, n_dim, block)
                if gb > 0.85 * available_gb():
                    record({**row, "status": f"skipped (would need ~{gb:.0f} GB)"})
                    continue
            dst = data / (f"{key}_{m}" + (".tif" if m == "memory" else ".zarr"))
            _remove(dst)
            spec = {"method": m, "src": str(src), "axes": axes, "shape": list(shape), "model": str(models[n_dim]),
                    "out": str(dst), "block": block}
            row.update(run_worker(spec, out / f"{key}_{m}.log", args.timeout))
            _remove(dst)
            record(row)

    img_shape = QUICK_TRAIN_IMAGE if args.quick else TRAIN_IMAGE
    img_gb = np.prod(img_shape) * 2 / 1e9
    for gb in sorted(train_gb):
        n = max(1, round(gb / img_gb))
        label = f"{n} x {img_shape[0]} x {img_shape[1]} uint16 Zarr ({n * img_gb:.2f} GB)"
        row = {"size": label, "method": "N2V.train 2x5 steps", "key": f"train-{gb:g}gb"}
        have = len(list((data / "train").glob("train*.zarr"))) if (data / "train").exists() else 0
        if (n - have) * img_gb > shutil.disk_usage(data).free / 1e9 / 2:
            record({**row, "status": f"skipped (disk: needs ~{n * img_gb:.0f} GB)"})
            continue
        print(f"writing {n} training images ...", file=sys.stderr, flush=True)
        paths = write_training_images(data / "train", n, img_shape)
        tdir = data / "train_models"
        _remove(tdir)
        spec = {"method": "train", "src": None, "axes": "YX", "shape": [n, *img_shape], "model": None,
                "out": str(tdir), "paths": [str(p) for p in paths]}
        row.update(run_worker(spec, out / f"train_{gb:g}gb.log", args.timeout))
        _remove(tdir)
        record(row)

    text = table(rows)
    summary = {"machine": machine, "quick": args.quick, "rows": rows, "table": text}
    (out / "bench_large.json").write_text(json.dumps(summary, indent=1, default=str))
    if not args.keep_data:
        for p in data.iterdir():
            if p.name != "models":
                _remove(p)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
