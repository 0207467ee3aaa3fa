"""Training throughput: the app's Trainer against a bare eager PyTorch loop on in-memory
tensors (same network, batch, crop, threads), alternating rounds, medians; then the fast
paths (channels_last, bf16 autocast, torch.compile) against the same bare loop.

    python bench/training_speed.py [--preset unet-small] [--rounds 5] [--steps 15]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import machine, median, save, table

from denoise_studio.core.data import ImageSet
from denoise_studio.core.network import build_network
from denoise_studio.core.noise import GaussianNoise
from denoise_studio.core.precision import auto_amp, cpu_native_bf16, describe
from denoise_studio.core.presets import load_preset
from denoise_studio.core.trainer import TrainConfig, Trainer


def bare_loop(spec, batch, crop, steps, channels_last=False, amp=None, compile_=False) -> float:
    """images/s of the plainest training loop: precomputed batches, no events, no data pipeline."""
    torch.manual_seed(0)
    model = build_network(spec)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    noise = GaussianNoise(25, 25)
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(batch, 3, crop, crop, generator=g) for _ in range(4)]
    eps = [torch.randn(batch, 3, crop, crop, generator=g) for _ in range(4)]
    level = torch.full((batch,), 25 / 255)

    def step(i):
        x, target = noise.corrupt(xs[i % 4], level, eps[i % 4])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            pred = fwd(x)
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for i in range(3):      # warm-up (and compile)
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return batch * steps / (time.perf_counter() - t)


def trainer_rate(spec, images, batch, crop, steps, **kw) -> float:
    """images/s the Trainer reports (median of its step events after warm-up)."""
    rates = []
    cfg = TrainConfig(steps=steps + 3, batch_size=batch, crop=crop, device="cpu", eval_every=10**7,
                      preview_every=10**7, checkpoint_every=10**7, sigma=(25.0, 25.0), **kw)
    Trainer(spec, cfg, sinks=[lambda e: rates.append(e.images_per_s) if e.name == "step" else None],
            images=images).run()
    return median(rates[3:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="unet-small")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    spec = load_preset(args.preset)
    images = ImageSet.load("builtin")
    variants = {
        "bare loop, fp32 eager": lambda: bare_loop(spec, args.batch, args.crop, args.steps),
        f"Trainer, default (--amp auto: {describe('cpu', auto_amp('cpu'))})":
            lambda: trainer_rate(spec, images, args.batch, args.crop, args.steps),
        "Trainer, --amp off (fp32)": lambda: trainer_rate(spec, images, args.batch, args.crop, args.steps, amp="off"),
        "bare loop, channels_last": lambda: bare_loop(spec, args.batch, args.crop, args.steps, channels_last=True),
        "Trainer, channels_last": lambda: trainer_rate(spec, images, args.batch, args.crop, args.steps,
                                                       channels_last=True),
        "bare loop, torch.compile": lambda: bare_loop(spec, args.batch, args.crop, args.steps, compile_=True),
        "bare loop, compile + channels_last": lambda: bare_loop(spec, args.batch, args.crop, args.steps,
                                                                channels_last=True, compile_=True),
    }
    if cpu_native_bf16():   # without AVX512-BF16/AMX, bf16 is emulated and ~25× slower: measured once below
        variants["bare loop, bf16 autocast"] = lambda: bare_loop(spec, args.batch, args.crop, args.steps, amp="bf16")
    samples = {k: [] for k in variants}
    for r in range(args.rounds):          # alternate, so drift hits every variant alike
        for name, fn in variants.items():
            samples[name].append(fn())
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    if not cpu_native_bf16():
        samples["bare loop, bf16 autocast (no bf16 in this CPU; 1 round, 3 steps)"] = [
            bare_loop(spec, args.batch, args.crop, 3, amp="bf16")]
    base = median(samples["bare loop, fp32 eager"])
    off = median(samples["Trainer, --amp off (fp32)"])
    rows = [{"variant": k, "img/s (median)": f"{median(v):.1f}", "vs bare fp32": f"{median(v) / base:.2f}×",
             "vs Trainer --amp off": f"{median(v) / off:.2f}×"} for k, v in samples.items()]
    print(table(rows, ["variant", "img/s (median)", "vs bare fp32", "vs Trainer --amp off"]))
    print(f"CPU flags for bf16: {cpu_native_bf16() or 'none'}")
    print(machine())
    save("training_speed", {"preset": args.preset, "batch": args.batch, "crop": args.crop, "rounds": args.rounds,
                            "samples": samples, "rows": rows})


if __name__ == "__main__":
    main()
