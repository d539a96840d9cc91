"""Peak memory of ``predict_blocks`` on a 256 x 2048 x 2048 stack within a time budget (issue 14).

The full prediction of this stack takes about an hour on a 2-core CPU (32-filter U-Net); since the result is
resumable and memory is bounded by the block, the first ``--seconds`` of the run show the peak RSS: the script
stops the run after that time (as an interruption would), and prints the blocks done and ``ru_maxrss``.

Usage: /work/venv/bin/python benchmarks/bench_large_3d_partial.py [--seconds 240] [--shape 256 2048 2048]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_large as bl


class _Stop(Exception):
    pass


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 2048, 2048], help="stack shape (Z Y X)")
    args = ap.parse_args(argv)
    work = bl.RUNS / "partial3d"
    work.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    src = bl.write_image(work / f"stack_{'x'.join(map(str, shape))}.tif", "ZYX", shape)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from n2v_tf import large
    model = large._load_model(bl.make_models(work)[3])
    original = large._Destination.record
    t0 = time.perf_counter()
    state = {"blocks": 0}

    def record(self, keys):
        original(self, keys)
        state["blocks"] = len(self.done)
        if time.perf_counter() - t0 > args.seconds:
            raise _Stop

    large._Destination.record = record
    out = work / "stack_n2v.zarr"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "stack_n2v.zarr.partial", ignore_errors=True)
    try:
        large.predict_blocks(model, src, out, "ZYX", progress=False)
    except _Stop:
        pass
    wall = time.perf_counter() - t0
    from n2v_tf.tiling import tile_grid
    total = len(tile_grid(shape, (64, 128, 128), 28, 4, (0, 0, 0)))
    res = dict(shape=list(shape), block=[64, 128, 128], blocks_done=state["blocks"], blocks_total=total,
               wall_s=wall, mvox_s=state["blocks"] * 64 * 128 * 128 / 1e6 / wall,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_before_mb=rss0)
    print(json.dumps(res))
    shutil.rmtree(work / "stack_n2v.zarr.partial", ignore_errors=True)


if __name__ == "__main__":
    main()
