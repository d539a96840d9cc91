"""One-off check (issue 13): the speed protocol's convolutions, one layer at a time, in each tool's framework.

Forward, input gradient, filter gradient and all three together for every convolution of the protocol's U-Net
(n2v 0.3.3's network: depth 2, 32 filters, kernel 3, batch 16, 64x64 patches), as bare TensorFlow ops
(``tf.nn.conv2d`` and its two backprop kernels inside ``tf.function``) or PyTorch ``Conv2d`` (forward, and
forward + backward). Run it in each virtualenv, one after the other, then print the table::

    /work/venv/bin/python benchmarks/experiment_conv_kernels.py tf > /tmp/conv_tf221.json
    /work/venvs/n2v033/bin/python benchmarks/experiment_conv_kernels.py tf > /tmp/conv_tf215.json
    /work/venvs/careamics/bin/python benchmarks/experiment_conv_kernels.py torch > /tmp/conv_torch.json
    python3 benchmarks/experiment_conv_kernels.py table /tmp/conv_tf221.json /tmp/conv_tf215.json /tmp/conv_torch.json

It answers whether a gap in the network step between the tools is in the convolution kernels or around them
(batch norm, the executor, the optimiser).
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_worker import timed  # noqa: E402

# (height = width, input channels, output channels, kernel) of every convolution of the protocol's U-Net
SHAPES = [(64, 1, 32, 3), (64, 32, 32, 3), (32, 32, 64, 3), (32, 64, 64, 3), (16, 64, 128, 3), (16, 128, 64, 3),
          (32, 128, 64, 3), (32, 64, 32, 3), (64, 64, 32, 3), (64, 32, 32, 3), (64, 32, 1, 1)]
BATCH = 16
REPEATS = 20


def _ms(fn) -> float:
    """Milliseconds per call of ``fn()`` (``REPEATS`` calls after two untimed ones)."""
    return 1e3 * timed(fn, REPEATS, warmup=2)


def run_tf() -> list[dict]:
    import tensorflow as tf

    rows = []
    rng = np.random.default_rng(0)
    for h, ci, co, k in SHAPES:
        x = tf.constant(rng.random((BATCH, h, h, ci), np.float32))
        w = tf.Variable(rng.random((k, k, ci, co), np.float32))
        dy = tf.ones((BATCH, h, h, co))
        fwd = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
        b_in = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"))
        b_w = tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"))

        @tf.function
        def both():
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME"))
            return tape.gradient(loss, [x, w])

        def sync(f):
            return lambda: np.asarray(tf.nest.flatten(f())[0])

        rows.append(dict(shape=[h, ci, co, k], fwd=_ms(sync(fwd)), bwd_input=_ms(sync(b_in)),
                         bwd_filter=_ms(sync(b_w)), all=_ms(sync(both))))
    return rows


def run_torch() -> list[dict]:
    import torch

    torch.manual_seed(0)
    rows = []
    for h, ci, co, k in SHAPES:
        x = torch.rand(BATCH, ci, h, h, requires_grad=True)
        conv = torch.nn.Conv2d(ci, co, k, padding=k // 2, bias=False)

        def fwd():
            with torch.no_grad():
                conv(x)

        def both():
            x.grad = None
            conv.weight.grad = None
            conv(x).sum().backward()

        rows.append(dict(shape=[h, ci, co, k], fwd=_ms(fwd), all=_ms(both)))
    return rows


def table(paths: list[str]) -> None:
    """Print one Markdown table of the JSON files ``run_tf``/``run_torch`` wrote (the columns each file has)."""
    runs = [(p, json.load(open(p))) for p in paths]
    cols = [(p, r, [c for c in ("fwd", "bwd_input", "bwd_filter", "all") if c in r["rows"][0]]) for p, r in runs]
    head = ["layer (H, Cin, Cout, k)"] + [f"{p.rsplit('/', 1)[-1]} {c}" for p, _, cs in cols for c in cs]
    rows = [[str(tuple(shape))] + [f"{r['rows'][i][c]:.1f}" for _, r, cs in cols for c in cs]
            for i, shape in enumerate(SHAPES)]
    rows.append(["**sum**"] + [f"{sum(row[c] for row in r['rows']):.1f}" for _, r, cs in cols for c in cs])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    for p, r in runs:
        print(f"- {p}: {r['versions']}")


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "tf"
    if mode == "table":
        table(sys.argv[2:])
        return 0
    if mode == "tf":
        import tensorflow as tf
        rows, versions = run_tf(), f"tensorflow {tf.__version__}"
    else:
        import torch
        torch.set_num_threads(2)
        rows, versions = run_torch(), f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(json.dumps(dict(rows=rows, versions=versions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
