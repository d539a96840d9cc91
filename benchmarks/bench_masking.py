"""Timing of n2v_tf.masking (pure NumPy, CPU).

Run from the repository root::

    .venv/bin/python benchmarks/bench_masking.py [--repeats 20] [--check]

Prints machine info and a table of the median wall time (ms) of ``mask_batch`` over
``--repeats`` calls (after one warm-up call), for every manipulator on a 2D batch of
128 patches 64x64x1 and a 3D batch of 16 patches 32x64x64x1 (perc_pix 0.198, radius 5),
plus structN2V and multi-channel variants. Targets: 2D uniform_withCP < 5 ms,
2D median < 100 ms, 3D uniform_withCP < 20 ms. ``--check`` exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# Load masking.py by path: it is pure NumPy, and importing the n2v_tf package would start TensorFlow.
_PATH = Path(__file__).resolve().parents[1] / "n2v_tf" / "masking.py"
_spec = importlib.util.spec_from_file_location("n2v_tf_masking_bench", _PATH)
masking = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(masking)

TARGETS_MS = {("2D", "uniform_withCP", ""): 5.0, ("2D", "median", ""): 100.0, ("3D", "uniform_withCP", ""): 20.0}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_ms(fn, repeats: int) -> float:
    fn()                                                      # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()

    print(f"date        : {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine     : {platform.node()} {platform.machine()} {cpu_model()}")
    print(f"cpu count   : {os.cpu_count()} (usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'})")
    print(f"python/numpy: {platform.python_version()} / numpy {np.__version__}")
    if hasattr(os, "getloadavg"):
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min; other jobs skew timings)")
    print(f"repeats     : {args.repeats} (median, after one warm-up)\n")

    rng = np.random.default_rng(0)
    batches = {"2D": rng.normal(size=(128, 64, 64, 1)).astype(np.float32),
               "3D": rng.normal(size=(16, 32, 64, 64, 1)).astype(np.float32)}
    struct = {"2D": np.array([[1, 1, 1, 1, 1, 1, 1, 1, 1]]), "3D": np.array([[[1, 1, 1, 1, 1, 1, 1, 1, 1]]])}
    cases = [(dim, m, "") for dim in ("2D", "3D") for m in masking.MANIPULATORS]
    cases += [(dim, m, "struct 1x9") for dim in ("2D", "3D") for m in ("uniform_withCP", "median")]
    cases += [(dim, "uniform_withCP", "C=3") for dim in ("2D", "3D")]

    header = f"{'dim':<4}{'batch':<20}{'manipulator':<19}{'variant':<12}{'N masked':>9}{'ms':>9}{'target':>9}  ok"
    print(header)
    print("-" * len(header))
    missed = 0
    for dim, manipulator, variant in cases:
        X = batches[dim]
        if variant == "C=3":
            X = np.repeat(X, 3, axis=-1)
        smask = struct[dim] if variant.startswith("struct") else None
        gen = np.random.default_rng(1)
        ms = median_ms(lambda: masking.mask_batch(X, 0.198, manipulator, 5, gen, smask), args.repeats)
        n_masked = int(masking.mask_batch(X, 0.198, manipulator, 5, 2, smask)[1][..., -1].sum())
        target = TARGETS_MS.get((dim, manipulator, variant))
        ok = "" if target is None else ("yes" if ms < target else "NO")
        missed += ok == "NO"
        print(f"{dim:<4}{'x'.join(map(str, X.shape)):<20}{manipulator:<19}{variant:<12}{n_masked:>9}{ms:>9.2f}"
              f"{'' if target is None else f'< {target:g}':>9}  {ok}")
    gen = np.random.default_rng(3)
    for dim, shape, n in (("2D", (64, 64), 128), ("3D", (32, 64, 64), 16)):
        ms = median_ms(lambda: masking.stratified_coords(n, shape, 0.198, gen), args.repeats)
        print(f"stratified_coords only, {dim} {n}x{'x'.join(map(str, shape))}: {ms:.3f} ms")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
