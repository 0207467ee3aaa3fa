"""Train the network the app ships as `pretrained` (resources/pretrained/), evaluate it on Kodak24
and write it with its figures.

    python bench/pretrain.py                       # unet-small, CBSD68, 24,000 steps, then Kodak24
    python bench/pretrain.py --eval-only           # re-evaluate the run folder of an earlier call

Training is step-driven (not time-driven), so the same command gives the same network on any
machine; only the time it takes differs. The shipped file holds the weights and the metadata a
checkpoint carries (spec, noise, config, step) plus the Kodak24 figures, without optimizer state.
"""
from __future__ import annotations

import argparse
import json
import time

from common import RESULTS, ROOT, machine, need_data, save, table
from quality import SIGMAS, evaluate

from denoise_studio.core.checkpoint import load_checkpoint, save_checkpoint
from denoise_studio.core.inference import denoise, load_model
from denoise_studio.core.presets import load_spec
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.trainer import TrainConfig, Trainer

OUT = ROOT / "resources" / "pretrained" / "unet-small.safetensors"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=24000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--amp", default="bf16", help="off, bf16 (the training path; the shipped weights are fp32)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()
    run_dir = RESULTS / "runs" / f"pretrained-{args.steps}"
    spec = load_spec("unet-small")
    cfg = TrainConfig(data=str(need_data("CBSD68")), steps=args.steps, batch_size=args.batch, crop=64, lr=args.lr,
                      warmup=50, sigma=(5.0, 55.0), amp=args.amp, threads=args.threads, eval_every=500,
                      preview_every=10**7, checkpoint_every=1000, seed=0)
    minutes = None
    if not args.eval_only:
        run = RunFolder.create(run_dir, spec, cfg.to_dict())
        t = time.time()
        result = Trainer(spec, cfg, run=run).run()
        minutes = (time.time() - t) / 60
        print(f"{result.name} at step {result.step} after {minutes:.1f} min", flush=True)
    ckpt_path = run_dir / "checkpoints" / "last.safetensors"
    lm = load_model(ckpt_path, "cpu")
    scores = evaluate({"pretrained": lambda n, s: denoise(lm, n, s).reconstruction, "noisy input": lambda n, s: n},
                      SIGMAS)
    rows = [{"method": m, **{f"σ={s}": f"{v[s][0]:.2f} / {v[s][1]:.3f}" for s in SIGMAS}} for m, v in scores.items()]
    print("Kodak24, PSNR dB / SSIM")
    print(table(rows, ["method", *[f"σ={s}" for s in SIGMAS]]))
    ckpt = load_checkpoint(ckpt_path)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("optimizer", "history")}
    meta["pretrained"] = {"trained_by": "python bench/pretrain.py", "data": "CBSD68 (68 images), 64² crops",
                          "steps": ckpt.step, "batch": args.batch, "lr": args.lr, "amp": args.amp,
                          "train_minutes": minutes, "machine": machine(),
                          "kodak24_psnr": {str(s): round(scores["pretrained"][s][0], 3) for s in SIGMAS}}
    save_checkpoint(OUT, lm.model, meta)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
    save("pretrained", {"args": vars(args), "scores": {m: {str(s): v for s, v in d.items()} for m, d in scores.items()},
                        "rows": rows, "train_minutes": minutes})
    print(json.dumps(meta["pretrained"], indent=2))


if __name__ == "__main__":
    main()
