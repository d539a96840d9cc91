"""Does a trained N2V / N2V2 network treat the blind-spot replacement differently from a real pixel?

A blind-spot network is only trained on masked pixels, whose value is the manipulator's replacement (a random
neighbour for ``uniform_withCP``, the window's median for N2V2's ``median``); at prediction every pixel shows its
own noisy value.  If the replacement is recognisable, the network's response to a real pixel is never constrained
by the loss.  For every model folder ``bench_quality.py`` left in ``benchmarks/_runs/models`` (``--variants``,
``--datasets``, ``--seeds``) this script masks each test image once with the model's own masking
(``n2v_tf.masking.mask_batch`` with the folder's ``n2v_perc_pix``, ``n2v_manipulator`` and
``n2v_neighborhood_radius``; mask seed ``--mask-seed``), predicts the masked and the unmasked image and compares the
two predictions *at the masked pixels only*:

- ``PSNR plain`` / ``PSNR masked``: PSNR against the clean image over the masked pixels (the dataset's data range);
- ``bias plain`` / ``bias masked``: mean signed error there (data units);
- ``slope``: least-squares slope of ``plain - masked`` on ``noisy - replacement`` at those pixels, i.e. how much of
  a pixel's own deviation from its replacement the prediction passes through (0: the network ignores the centre,
  as the blind spot intends; the PN2V bound of ``experiment_pn2v_bound.py`` puts the best linear weight of the
  noisy pixel at 0.06-0.14 on *fluo*).

Usage::

    nice -n 15 /work/venv/bin/python benchmarks/experiment_center_pixel.py --variants rec_n2v rec_n2v2 \
        --datasets natural fluo3d
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_data as qd  # noqa: E402


def center_response(model, noisy: np.ndarray, clean: np.ndarray, data_range: float, axes: str,
                    mask_seed: int) -> dict:
    """The four numbers and the slope above for one model and one test image."""
    from n2v_tf.masking import mask_batch

    config = model.config
    masked_in, y = mask_batch(noisy[None, ..., None], perc_pix=config.n2v_perc_pix,
                              manipulator=config.n2v_manipulator, radius=config.n2v_neighborhood_radius,
                              rng=mask_seed)
    masked_in = masked_in[0, ..., 0]
    at = y[0, ..., 1] > 0
    plain = model.predict(noisy, axes=axes)
    masked = model.predict(masked_in, axes=axes)
    slope = np.polyfit((noisy - masked_in)[at].astype(np.float64), (plain - masked)[at].astype(np.float64), 1)[0]
    return dict(psnr_plain=qd.psnr(clean[at], plain[at], data_range),
                psnr_masked=qd.psnr(clean[at], masked[at], data_range),
                bias_plain=float(np.mean(plain[at] - clean[at])), bias_masked=float(np.mean(masked[at] - clean[at])),
                slope=float(slope), n_masked=int(at.sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    qd.add_model_selection_args(ap, dataset="natural")
    ap.add_argument("--mask-seed", type=int, default=123)
    args = ap.parse_args()

    print("| dataset | variant | seed | manipulator | PSNR plain | PSNR masked | bias plain | bias masked | slope |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ds, variant, seed, model in qd.trained_models(args.datasets, args.variants, args.seeds, args.models):
        axes = qd.spatial_axes(ds)
        per = [center_response(model, nz, cl, dr, axes, args.mask_seed)
               for nz, cl, dr in zip(ds["test_noisy"], ds["test_clean"], ds["data_range"])]
        r = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
        print(f"| {ds['name']} | {variant} | {seed} | {model.config.n2v_manipulator} | {r['psnr_plain']:.2f} | "
              f"{r['psnr_masked']:.2f} | {r['bias_plain']:+.3f} | {r['bias_masked']:+.3f} | "
              f"{r['slope']:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
