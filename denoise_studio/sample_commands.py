"""`denoise-studio sample`: run the reverse diffusion process of a DDPM-trained network."""
from __future__ import annotations

from pathlib import Path

from denoise_studio import args as types


def add_commands(sub) -> None:
    s = sub.add_parser("sample", help="generate images from pure noise with a DDPM-trained network (DDPM or DDIM)")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--out", required=True, type=types.out_file, help="the grid PNG to write")
    s.add_argument("--n", type=types.capped_int("SAMPLES"), default=16, help="how many images (default 16)")
    s.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim",
                   help="ddim (default: deterministic, few steps) or ddpm (ancestral, noise added at every step)")
    s.add_argument("--steps", type=types.positive_int,
                   help="reverse steps, at most the network's T (default: 50 for ddim, T for ddpm)")
    s.add_argument("--eta", type=types.unit_interval, help="DDIM stochasticity, 0 (default) … 1")
    s.add_argument("--seed", type=types.seed, default=0, help="the same seed gives the same images")
    s.add_argument("--size", type=types.capped_int("CROP"), help="image size (default: the run's training crop)")
    s.add_argument("--scale", type=types.capped_int("SCALE"), default=4,
                   help="enlarge the grid's pixels this many times (default 4)")
    s.add_argument("--frames", metavar="DIR", type=types.out_folder,
                   help="also write the trajectory: x_t and x̂0 grids every few steps, "
                   "a strip of both and an animated GIF")
    s.add_argument("--device", default="auto")
    s.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
                   help="the network's precision, as in train (auto: bf16 where the hardware has it, else fp32)")
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.set_defaults(func=cmd_sample)


def _refuse_existing(paths, overwrite: bool) -> None:
    from denoise_studio.core.errors import DenoiseError
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise DenoiseError(f"{p} already exists; pass --overwrite to replace it, or choose another --out.")


def cmd_sample(args) -> int:

    from denoise_studio.core.images import save_image
    from denoise_studio.core.inference import load_model
    from denoise_studio.core.precision import describe, resolve_amp
    from denoise_studio.core.sampling import grid, sample

    out = Path(args.out)
    frames_dir = Path(args.frames) if args.frames else None
    _refuse_existing([out] + ([frames_dir / "trajectory.gif", frames_dir / "trajectory.png"] if frames_dir else []),
                     args.overwrite)
    lm = load_model(args.run, args.device)
    size = args.size or int((lm.meta or {}).get("config", {}).get("crop", 32))
    amp, amp_dtype = resolve_amp(lm.device.type, args.amp)
    keep_every = 1
    kept = []
    last = None
    for frame in sample(lm, n=args.n, steps=args.steps, sampler=args.sampler, eta=args.eta, seed=args.seed,
                        size=size, amp_dtype=amp_dtype):
        if keep_every == 1:
            keep_every = max(1, frame.total // 10)   # about 10 frames of the trajectory
        if frames_dir and (frame.index % keep_every == 0 or frame.index == frame.total or frame.index == 1):
            kept.append(frame)
        last = frame
    save_image(out, grid(last.x, scale=args.scale))
    print(f"wrote {out}: {args.n} samples, {args.sampler} with {last.total} steps, seed {args.seed}, "
          f"{describe(lm.device.type, amp)}")
    if frames_dir:
        frames_dir.mkdir(parents=True, exist_ok=True)
        for f in kept:
            save_image(frames_dir / f"xt_{f.index:04d}.png", grid(f.x, scale=args.scale))
            save_image(frames_dir / f"x0_{f.index:04d}.png", grid(f.x0, scale=args.scale))
        save_image(frames_dir / "trajectory.png", trajectory_strip(kept, args.scale))
        _write_gif(frames_dir / "trajectory.gif", [grid(f.x, scale=args.scale) for f in kept])
        print(f"wrote {len(kept)} trajectory frames, trajectory.png and trajectory.gif to {frames_dir}")
    return 0


def trajectory_strip(frames, scale: int = 4):
    """The first sample's x_t (top row) and x̂0 (bottom row) at each kept step, left to right."""
    import torch

    from denoise_studio.core.sampling import grid
    tiles = torch.cat([torch.stack([f.x[0] for f in frames]), torch.stack([f.x0[0] for f in frames])])
    return grid(tiles, columns=len(frames), scale=scale)


def _write_gif(path: Path, frames) -> None:
    """An animated GIF with Pillow (already a dependency); the last frame lingers."""
    import io

    import numpy as np
    from PIL import Image

    from denoise_studio.core.fileio import atomic_write_bytes
    ims = [Image.fromarray(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], loop=0,
                duration=[120] * (len(ims) - 1) + [1500])
    atomic_write_bytes(path, buf.getvalue())
