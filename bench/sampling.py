"""Sampling quality: train shapes-unet on the built-in `shapes` set (DDPM process) on the CPU, then
score generated images against held-out real shapes, with no download.

Two measures, each with its two ends measured in the same run (an untrained network's samples
and real held-out shapes):
- accepted: the fraction of samples that `core.shapes.is_clean_shape` accepts as one clean shape
  of one colour on a plain background (real shapes: ~99 %, noise: 0 %);
- MMD: kernel maximum mean discrepancy (Gaussian kernel, median-distance bandwidth) between 8×8
  average-pooled colour thumbnails of the samples and of held-out real shapes; 0 means the two
  sets are indistinguishable at that scale. It catches what the rule cannot: wrong colours,
  sizes or positions, and a sampler that makes only one kind of shape.

    python bench/sampling.py --minutes 15            # snapshots at 2, 5, 10 and 15 minutes
    python bench/sampling.py --steps 4000            # step-driven (the recipe): snapshots at ¼, ½, 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, machine, save, table

from denoise_studio.core.checkpoint import save_checkpoint
from denoise_studio.core.inference import load_model, model_from_spec
from denoise_studio.core.presets import load_spec
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.sampling import grid, run_sampler
from denoise_studio.core.shapes import is_clean_shape, make_shapes
from denoise_studio.core.trainer import CHECKPOINT_FORMAT, TrainConfig, Trainer

NOISE = {"noise": "ddpm", "schedule": "cosine", "timesteps": 1000}


def thumbnails(images: torch.Tensor) -> np.ndarray:
    return F.avg_pool2d(images.float(), 4).flatten(1).numpy().astype(np.float64)


def mmd(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with a Gaussian kernel whose bandwidth is the median distance in b."""
    def sq(x, y):
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    bb = sq(b, b)
    h = np.median(bb[np.triu_indices(len(b), 1)])
    k = lambda d: np.exp(-d / h)  # noqa: E731
    kaa, kbb, kab = k(sq(a, a)), k(bb), k(sq(a, b))
    n, m = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def score(images: torch.Tensor, reference: np.ndarray) -> dict:
    ok = np.mean([is_clean_shape(im) for im in images.numpy()])
    return {"accepted": float(ok), "mmd": mmd(thumbnails(images), reference)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--snapshots", default="2,5,10,15", help="minutes at which to score the network")
    ap.add_argument("--steps", type=int, help="train this many steps instead of --minutes (snapshots at ¼, ½, 1); "
                    "the same network on any machine, whatever else loads it")
    ap.add_argument("--n", type=int, default=128, help="samples per score")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--score-only", action="store_true",
                    help="score the snapshots an earlier call saved in its run folder (no training)")
    ap.add_argument("--samplers", default="ddim:10,ddim:25,ddim:50,ddim:100,ddpm:250,ddpm:1000",
                    help="sampler:steps pairs scored on the final network (earlier snapshots: ddim:50)")
    args = ap.parse_args()
    spec = load_spec("shapes-unet")
    run_dir = RESULTS / "runs" / (f"sampling-{args.steps}steps" if args.steps else f"sampling-{args.minutes:g}min")
    cfg = TrainConfig(data="shapes", steps=args.steps or 10**7, time_limit=None if args.steps else args.minutes * 60,
                      batch_size=args.batch, crop=32,
                      lr=args.lr, noise="ddpm", schedule=NOISE["schedule"], timesteps=NOISE["timesteps"],
                      amp=args.amp, threads=args.threads, eval_every=10**7, preview_every=10**7,
                      checkpoint_every=500, seed=0)
    snapshots = sorted(float(m) for m in args.snapshots.split(","))
    step_marks = [args.steps // 4, args.steps // 2, args.steps] if args.steps else []
    trainer = None if args.score_only else Trainer(spec, cfg, run=RunFolder.create(run_dir, spec, cfg.to_dict()))
    t0 = [None]
    saved = []

    def snap(ev):   # a copy of the weights each time training crosses a snapshot minute
        if ev.name != "step":
            return
        t0[0] = t0[0] or time.time()
        minutes = (time.time() - t0[0]) / 60
        while (step_marks and ev.step >= step_marks[0]) or (not args.steps and snapshots
                                                            and minutes >= snapshots[0] - 1e-9):
            m = round(minutes, 1) if args.steps else snapshots.pop(0)
            if args.steps:
                step_marks.pop(0)
            path = run_dir / f"snapshot_step{ev.step}.safetensors"
            meta = {"format": CHECKPOINT_FORMAT, "version": 1, "spec": spec.to_dict(), "config": cfg.to_dict(),
                    "noise": NOISE, "step": ev.step}
            save_checkpoint(path, trainer.eval_model, meta,   # the weights' average and the raw ones, as runs hold
                            train_model=trainer.model if trainer.ema_model is not None else None)
            saved.append((m, ev.step, path))
            print(f"snapshot at {m:g} min, step {ev.step}", flush=True)

    if args.score_only:
        import json
        minutes = {}   # step -> wall-clock minutes, from the run's own events
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        start = next(e["time"] for e in events if e["event"] == "step")
        for e in events:
            if e["event"] == "step":
                minutes[e["step"]] = round((e["time"] - start) / 60, 1)
        for path in sorted(run_dir.glob("snapshot_step*.safetensors"), key=lambda p: int(p.stem[13:])):
            step = int(path.stem[13:])
            saved.append((minutes.get(step, 0.0), step, path))
    else:
        trainer.sinks.append(snap)
        result = trainer.run()
        why = f": {result.message}" if result.name == "failed" else ""
        print(f"training {result.name} at step {result.step}{why}", flush=True)
        if snapshots and not args.steps:   # the time limit ended a hair early: the last snapshot is the final weights
            last = run_dir / "checkpoints" / "last.safetensors"
            saved.append((snapshots[-1], result.step, last))

    reference = thumbnails(torch.from_numpy(make_shapes(args.n, seed=101)).float() / 255)
    real = torch.from_numpy(make_shapes(args.n, seed=202)).float() / 255
    rows = [{"network": "real shapes (held out)", "sampler": "—", **score(real, reference)}]
    untrained = model_from_spec(spec, NOISE, "cpu")
    t = time.time()
    rows.append({"network": "untrained", "sampler": "ddim 50",
                 **score(run_sampler(untrained, n=args.n, sampler="ddim", steps=50, seed=0, size=32).x, reference)})
    print(f"untrained scored in {time.time() - t:.0f} s", flush=True)
    for minutes, step, path in saved:
        lm = load_model(path, "cpu")
        plans = [("ddim", 50)] if (minutes, step, path) != saved[-1] else \
            [(p.split(":")[0], int(p.split(":")[1])) for p in args.samplers.split(",")]
        for sampler, steps in plans:
            t = time.time()
            x = run_sampler(lm, n=args.n, sampler=sampler, steps=steps, seed=0, size=32).x
            rows.append({"network": f"{minutes:g} min on 2 cores (step {step})", "sampler": f"{sampler} {steps}",
                         **score(x, reference), "seconds": round(time.time() - t, 1)})
            print(rows[-1], flush=True)
        if (minutes, step, path) == saved[-1]:   # the same network with bf16, and without the weights' average
            from denoise_studio.core.checkpoint import load_checkpoint, load_weights
            x = run_sampler(lm, n=args.n, sampler="ddim", steps=50, seed=0, size=32, amp_dtype=torch.bfloat16).x
            rows.append({"network": f"{minutes:g} min on 2 cores (step {step})", "sampler": "ddim 50, bf16 autocast",
                         **score(x, reference)})
            ckpt = load_checkpoint(path)
            if ckpt.train_state is not None:
                raw = load_model(path, "cpu")
                load_weights(raw.model, ckpt, raw=True)
                x = run_sampler(raw, n=args.n, sampler="ddim", steps=50, seed=0, size=32).x
                rows.append({"network": f"the same, raw weights (no average, step {step})", "sampler": "ddim 50",
                             **score(x, reference)})
            print(rows[-2:], flush=True)
            from denoise_studio.core.images import save_image
            save_image(RESULTS / "sampling_grid.png", grid(run_sampler(lm, n=64, sampler="ddim", steps=50, seed=0,
                                                                           size=32).x, scale=3))
    for r in rows:
        r["accepted"] = f"{100 * r['accepted']:.1f} %"
        r["mmd"] = f"{r['mmd']:.4f}"
    print(table(rows, ["network", "sampler", "accepted", "mmd", "seconds"]))
    print(machine())
    save("sampling", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
