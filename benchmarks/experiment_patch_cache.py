"""One-off experiment (issue 14): the cost of a training batch read from a lazy Zarr image list, with and without
the chunk cache of ``N2VSequence`` (:class:`n2v_tf.io.ChunkCache`), against the same images in NumPy.

Data: 8 images of 2048 x 2048 uint16 (Poisson noise, 64 MiB in all), stored as one ``(8, 2048, 2048)`` Zarr array
with the default compressor, once with chunks ``(1, 512, 512)`` and once with ``(1, 256, 256)``, in a temporary
folder; training takes them in the list-of-images form (``open_array(...).as_axes('SYXC').sample(i)``). A batch is
``N2VSequence(...).batch(0, i)`` as ``N2V.train`` makes it: 16 random patches of 64 x 64, ``perc_pix=0.198``,
``uniform_withCP`` (so it includes the masking). Modes: ``numpy`` (images in memory), ``direct``
(``cache_bytes=0``: each patch one Zarr slice), ``cache`` (the default cache, 256 MiB: the data fits),
``cache 16 MiB`` (a quarter of the data fits). Each mode times batches ``0..n-1`` from a cold cache and then
``n..2n-1``; the hit rate is that of the chunk look-ups of all ``2n`` batches. Run::

    /work/venv/bin/python benchmarks/experiment_patch_cache.py            # --batches 100
    /work/venv/bin/python benchmarks/experiment_patch_cache.py --batches 30 --chunks 512

Prints a markdown table (milliseconds per batch). On a shared 2-vCPU host repeat it: runs differ by 10-30 %.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from n2v_tf.data import N2VSequence
from n2v_tf.io import PATCH_CACHE_BYTES, open_array, require

MiB = 1024 ** 2


def _time(seq: N2VSequence, first: int, n: int) -> float:
    """Milliseconds per batch of batches ``first .. first + n - 1`` of epoch 0."""
    t = time.perf_counter()
    for i in range(first, first + n):
        seq.batch(0, i)
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=100, help="batches per timing (each mode times 2 x this many)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[512, 256], help="YX chunk sizes to compare")
    a = ap.parse_args()
    zarr = require("zarr")
    data = np.random.default_rng(0).poisson(100, (8, 2048, 2048)).astype(np.uint16)
    in_memory = [im[..., np.newaxis] for im in data]
    kw = {"patch_shape": (64, 64), "batch_size": 16, "perc_pix": 0.198, "manipulator": "uniform_withCP", "seed": 0}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in a.chunks:
            path = Path(tmp) / f"data_{c}.zarr"
            zarr.create_array(store=str(path), shape=data.shape, dtype=data.dtype, chunks=(1, c, c),
                              dimension_names=("t", "y", "x"))[...] = data
            stack = open_array(path)[0].as_axes("SYXC")
            lazy = [stack.sample(i) for i in range(len(stack))]
            for mode, X, cache_bytes in [("numpy", in_memory, None), ("direct", lazy, 0),
                                         (f"cache {PATCH_CACHE_BYTES // MiB} MiB", lazy, None),
                                         ("cache 16 MiB", lazy, 16 * MiB)]:
                seq = N2VSequence(X, cache_bytes=cache_bytes, **kw)
                cold, warm = _time(seq, 0, a.batches), _time(seq, a.batches, a.batches)
                cache = seq.cache if mode.startswith("cache") else None
                rows.append((f"(1, {c}, {c})", mode, cold, warm,
                             "" if cache is None else f"{cache.hit_rate:.3f}",
                             "" if cache is None else f"{cache.nbytes / MiB:.1f}"))
                print(*rows[-1], flush=True)
    print(f"\n{a.batches} + {a.batches} batches of 16 patches 64 x 64 from 8 x 2048 x 2048 uint16\n")
    print(f"| chunks | source | ms/batch, batches 0-{a.batches - 1} | ms/batch, batches {a.batches}-"
          f"{2 * a.batches - 1} | chunk hit rate | cache MiB at end |")
    print("|---|---|---:|---:|---:|---:|")
    for chunks, mode, cold, warm, hit, size in rows:
        print(f"| {chunks} | {mode} | {cold:.1f} | {warm:.1f} | {hit} | {size} |")


if __name__ == "__main__":
    main()
