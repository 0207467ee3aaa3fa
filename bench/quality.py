"""Quality: train presets for a fixed wall-clock budget on CBSD68 crops, evaluate on Kodak24 at
σ = 15, 25, 50 (noise seeded per image), PSNR/SSIM, beside the noisy input, scikit-image's
classical denoisers, BM3D when the `bm3d` package happens to be installed (never a
dependency: its licence is non-commercial) and the published numbers from shared/NOTES.md.

    python bench/quality.py --presets unet-small --minutes 10
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
from common import RESULTS, machine, need_data, save, table

from denoise_studio.core.baselines import run_baseline
from denoise_studio.core.checkpoint import load_checkpoint, load_weights, resolve_checkpoint
from denoise_studio.core.data import find_images
from denoise_studio.core.images import load_image, to_channels
from denoise_studio.core.inference import add_noise, denoise, load_model
from denoise_studio.core.metrics import psnr, ssim
from denoise_studio.core.presets import load_spec
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.trainer import TrainConfig, Trainer

SIGMAS = (15, 25, 50)
PUBLISHED = {   # Kodak24, colour AWGN, PSNR dB at σ = 15 / 25 / 50 (shared/NOTES.md)
    "CBM3D (published)": (34.28, 31.68, 28.46),
    "CDnCNN (published)": (34.48, 32.03, 28.85),
    "FFDNet (published)": (34.63, 32.13, 28.98),
    "DRUNet (published)": (35.31, 32.89, 29.86),
}


def train(preset: str, minutes: float, out: Path, args) -> Path:
    if args.reuse and (out / "checkpoints").is_dir():
        print(f"{preset}: evaluating the network already trained in {out}", flush=True)
        return out
    spec = load_spec(preset)
    cfg = TrainConfig(data=str(need_data("CBSD68")), steps=10**7, time_limit=minutes * 60, batch_size=args.batch,
                      crop=args.crop, lr=args.lr, warmup=50, sigma=(args.sigma_lo, args.sigma_hi),
                      device=args.device, eval_every=200, preview_every=10**7, checkpoint_every=10**7, seed=0,
                      **({} if args.ema is None else {"ema": args.ema}))
    run = RunFolder.create(out, spec, cfg.to_dict())
    t = time.time()
    result = Trainer(spec, cfg, run=run).run()
    print(f"{preset}: {result.name} at step {result.step} after {(time.time() - t) / 60:.1f} min", flush=True)
    return out


def evaluate(methods: dict, sigmas, limit=None) -> dict:
    """methods: name → function(noisy_chw, sigma) → denoised chw. Returns name → σ → (psnr, ssim)."""
    paths = find_images(need_data("Kodak24"))[:limit]
    scores = {m: {s: [] for s in sigmas} for m in methods}
    for i, p in enumerate(paths):
        clean = to_channels(load_image(p).pixels, 3)
        for s in sigmas:
            noisy = add_noise(clean, s, seed=1000 * s + i)
            for m, fn in methods.items():
                est = fn(noisy, s)
                scores[m][s].append((psnr(est, clean), ssim(est.transpose(1, 2, 0), clean.transpose(1, 2, 0))))
    return {m: {s: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for s, v in d.items()}
            for m, d in scores.items()}


def raw_weights(run: Path):
    """The run's network with the optimizer's raw weights instead of their moving average (None
    when the run kept no average)."""
    ckpt = load_checkpoint(resolve_checkpoint(run))
    if ckpt.train_state is None:
        return None
    lm = load_model(run, "cpu")
    load_weights(lm.model, ckpt, raw=True)
    return lm


def _learned(lm, noisy, sigma, *, ensemble):
    return denoise(lm, noisy, sigma, ensemble=ensemble).reconstruction


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="unet-small", help="comma-separated preset names or spec files")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma-lo", type=float, default=5)
    ap.add_argument("--sigma-hi", type=float, default=55)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, help="evaluate on the first N Kodak images only")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--tag", default="", help="suffix for the run folder and the results file")
    ap.add_argument("--ensemble", action="store_true", help="also evaluate each network with ×8 self-ensemble")
    ap.add_argument("--ema", type=float, default=None, help="the weights' moving-average decay (default: the "
                    "trainer's, 0.999; 0: off)")
    ap.add_argument("--raw-too", action="store_true", help="also evaluate the raw weights beside their moving "
                                                           "average (the same run, so the average's gain is exact)")
    ap.add_argument("--reuse", action="store_true", help="evaluate a run folder from an earlier identical call "
                                                          "instead of training again")
    ap.add_argument("--loss", choices=("mse", "l1"), default="mse",
                    help="an experiment: l1 swaps the supervised objective's squared error for the absolute error "
                         "(no gain at σ = 25; not an app setting)")
    args = ap.parse_args()
    if args.loss == "l1":
        from denoise_studio.core import objectives
        objectives.Supervised.loss = lambda self, pairs, pred, noise, level, rec: objectives._per_sample(
            (pred - pairs.target).abs(), None)
    methods = {"noisy input": lambda n, s: n}
    for preset in args.presets.split(","):
        name = Path(preset).stem    # a preset name or a spec file
        run = train(preset, args.minutes, RESULTS / "runs" / f"{name}-{args.minutes:g}min{args.tag}", args)
        lm = load_model(run, "cpu")
        methods[f"{name}, {args.minutes:g} min"] = partial(_learned, lm, ensemble=False)
        if args.raw_too:
            raw = raw_weights(run)
            if raw is not None:
                methods[f"{name}, {args.minutes:g} min, raw weights (no average)"] = partial(_learned, raw,
                                                                                             ensemble=False)
        if args.ensemble:
            methods[f"{name}, {args.minutes:g} min, ×8 self-ensemble"] = partial(_learned, lm, ensemble=True)
    if not args.no_baselines:
        for b in ("nl-means", "tv", "wavelet"):
            methods[f"scikit-image {b}"] = partial(run_baseline, b)
        try:
            import bm3d  # evaluation only, never a dependency
            methods["BM3D (bm3d package)"] = lambda n, s: np.clip(
                bm3d.bm3d_rgb(n.transpose(1, 2, 0), s / 255.0), 0, 1).transpose(2, 0, 1).astype(np.float32)
        except ImportError:
            pass
    t = time.time()
    scores = evaluate(methods, SIGMAS, args.limit)
    print(f"evaluated in {time.time() - t:.0f} s", flush=True)
    rows = [{"method": m, **{f"σ={s}": f"{v[s][0]:.2f} / {v[s][1]:.3f}" for s in SIGMAS}} for m, v in scores.items()]
    rows += [{"method": m, **{f"σ={s}": f"{v:.2f}" for s, v in zip(SIGMAS, vals, strict=True)}}
             for m, vals in PUBLISHED.items()]
    print("Kodak24, PSNR dB / SSIM")
    print(table(rows, ["method", *[f"σ={s}" for s in SIGMAS]]))
    print(machine())
    scores = {m: {str(s): v for s, v in d.items()} for m, d in scores.items()}
    name = f"quality{args.tag}{'-ensemble' if args.ensemble else ''}"
    save(name, {"args": vars(args), "scores": scores, "rows": rows})


if __name__ == "__main__":
    main()
