"""Self-supervised training: how close n2v and ne2ne get to supervised training with no clean image.

For each noise setting (gaussian σ = 25; poisson-gaussian gain 4, read noise 10: σ ≈ 25 on
mid-grey), CBSD68 is corrupted once with noise seeded per image and handed to the trainer as
a folder of noisy images would be: no clean image is ever seen, validation is the objective's
own loss. Supervised training on the clean CBSD68 with the same noise model gets the same
wall-clock budget. Every network and scikit-image's classical denoisers are evaluated on
Kodak24 corrupted by the same noise model (seeded per image); the baselines are given the true
σ (poisson-gaussian: the RMS of the noise actually added), an advantage they lack on real data.

    python bench/selfsupervised.py --minutes 10            # the README table: 2 settings × 3 objectives
    python bench/selfsupervised.py --minutes 0.2 --limit 2  # a smoke run
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, machine, need_data, save, table

from denoise_studio.core.baselines import BASELINES, run_baseline
from denoise_studio.core.data import ImageSet, find_images
from denoise_studio.core.images import load_image, to_channels
from denoise_studio.core.inference import add_process_noise, denoise, load_model
from denoise_studio.core.metrics import psnr, ssim
from denoise_studio.core.noise import make_noise
from denoise_studio.core.presets import load_spec
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.trainer import TrainConfig, Trainer

SETTINGS = {
    "gaussian σ=25": {"noise": "gaussian", "sigma": [25.0, 25.0]},
    "poisson-gaussian a=4 b=10": {"noise": "poisson-gaussian", "gain": 4.0, "read": 10.0},
}
OBJECTIVES = ("n2v", "ne2ne", "supervised")
TRAIN_SEED, EVAL_SEED = 7, 1000   # noise seeds: image i of CBSD68 gets TRAIN_SEED·10⁴ + i, of Kodak24 EVAL_SEED + i


def _clean(folder: str, limit: int | None) -> list[np.ndarray]:
    return [to_channels(load_image(p).pixels, 3) for p in find_images(need_data(folder))[:limit]]


def noisy_imageset(clean: list[np.ndarray], noise) -> ImageSet:
    """CBSD68 as a folder of noisy photos would load: each image corrupted once, the clean ones dropped."""
    noisy = [torch.from_numpy(add_process_noise(noise, c, seed=TRAIN_SEED * 10_000 + i)).float()
             for i, c in enumerate(clean)]
    n_val = max(1, len(noisy) // 10) if len(noisy) >= 5 else 0
    return ImageSet(noisy[n_val:] or noisy, noisy[:n_val] or noisy[:1])


def clean_imageset(clean: list[np.ndarray]) -> ImageSet:
    t = [torch.from_numpy(c).float() for c in clean]
    n_val = max(1, len(t) // 10) if len(t) >= 5 else 0
    return ImageSet(t[n_val:] or t, t[:n_val] or t[:1])


def train(objective: str, setting: dict, images: ImageSet, out: Path, args) -> tuple[Path, int]:
    spec = load_spec(args.preset)
    cfg = TrainConfig.from_dict({
        **setting, "data": f"CBSD68 ({'clean' if objective == 'supervised' else 'noisy only'})",
        "objective": objective, "steps": 10**7, "time_limit": args.minutes * 60, "batch_size": args.batch,
        "crop": args.crop, "lr": args.lr, "warmup": 50, "device": args.device, "seed": 0, "eval_every": 200,
        "preview_every": 10**7, "checkpoint_every": 10**7})
    run = RunFolder.create(out, spec, cfg.to_dict())
    t = time.time()
    result = Trainer(spec, cfg, run=run, images=images).run()
    if result.name != "finished":
        raise SystemExit(f"{objective}: {result.message}")
    print(f"  {objective}: {result.step} steps in {(time.time() - t) / 60:.1f} min", flush=True)
    return out, result.step


def evaluate(networks: dict, noise, kodak: list[np.ndarray], fixed_sigma: float | None) -> dict:
    """name → (PSNR, SSIM) on Kodak24 for each network, the noisy input and each baseline."""
    methods = ["noisy", *networks, *BASELINES]
    scores: dict[str, list] = {m: [] for m in methods}
    for i, clean in enumerate(kodak):
        noisy = add_process_noise(noise, clean, seed=EVAL_SEED + i)
        sigma = fixed_sigma or 255 * float(np.sqrt(np.mean((noisy - clean) ** 2)))
        outs = {"noisy": noisy, **{n: denoise(lm, noisy, sigma).reconstruction for n, lm in networks.items()},
                **{b: run_baseline(b, noisy, sigma) for b in BASELINES}}
        for m, est in outs.items():
            scores[m].append((psnr(est, clean), ssim(est.transpose(1, 2, 0), clean.transpose(1, 2, 0))))
    return {m: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for m, v in scores.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="unet-small")
    ap.add_argument("--minutes", type=float, default=10, help="training budget per network")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--limit", type=int, help="smoke runs: the first N images of CBSD68 and of Kodak24 only")
    ap.add_argument("--name", default="selfsupervised", help="results file name under bench/results")
    args = ap.parse_args()

    cbsd, kodak = _clean("CBSD68", args.limit), _clean("Kodak24", args.limit)
    runs_root = RESULTS / "runs" / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows, payload = [], {"args": vars(args), "settings": {}}
    for label in args.settings.split(","):
        setting = SETTINGS[label]
        noise = make_noise(setting)
        print(f"{label}: training on CBSD68 ({len(cbsd)} images), {args.minutes:g} min each", flush=True)
        noisy_set, clean_set = noisy_imageset(cbsd, noise), clean_imageset(cbsd)
        networks, steps = {}, {}
        for objective in args.objectives.split(","):
            images = clean_set if objective == "supervised" else noisy_set
            out, steps[objective] = train(objective, setting, images, runs_root / f"{label.split()[0]}-{objective}",
                                          args)
            networks[objective] = load_model(out, args.device)
        fixed = setting["sigma"][0] if setting["noise"] == "gaussian" else None
        result = evaluate(networks, noise, kodak, fixed)
        payload["settings"][label] = {"steps": steps, "kodak24": result}
        for m, (p, s) in result.items():
            kind = "self-supervised" if m in ("n2v", "ne2ne") else "supervised" if m == "supervised" else \
                "input" if m == "noisy" else "scikit-image"
            rows.append({"noise": label, "method": m, "kind": kind, "PSNR dB": f"{p:.2f}", "SSIM": f"{s:.4f}",
                         "steps": steps.get(m, "")})
    print(table(rows, ["noise", "method", "kind", "PSNR dB", "SSIM", "steps"]))
    path = save(args.name, {**payload, "kodak_images": len(kodak), "cbsd_images": len(cbsd), "host": machine()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
