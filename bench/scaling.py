"""Scaling from 1 to N processes with torchrun on this machine's CPU (gloo); the same command
with --device cuda measures 1→N GPUs:

    python bench/scaling.py                      # CPU, 1 vs 2 processes
    python bench/scaling.py --device cuda --nproc 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, median, save, table


def run(nproc: int, args, threads: int) -> float:
    out = Path(tempfile.mkdtemp()) / "run"
    prefix = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc-per-node={nproc}"]
    cmd = [*prefix, "-m", "denoise_studio", "train", args.preset, "--data", "builtin", "--out", str(out),
           "--steps", str(args.steps), "--batch-size", str(args.batch), "--crop", "64", "--device", args.device,
           "--threads", str(threads), "--eval-every", "100000", "--checkpoint-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    rates = [json.loads(x)["images_per_s"] for x in (out / "events.jsonl").read_text().splitlines()
             if json.loads(x)["event"] == "step"]
    return median(rates[5:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="unet-small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    one = run(1, args, cores if args.device == "cpu" else 1)
    rows.append({"processes": 1, "threads each": cores if args.device == "cpu" else "-", "img/s": f"{one:.1f}",
                 "speed-up": "1.00×", "efficiency": "100%"})
    n = run(args.nproc, args, max(1, cores // args.nproc) if args.device == "cpu" else 1)
    rows.append({"processes": args.nproc, "threads each": max(1, cores // args.nproc) if args.device == "cpu" else "-",
                 "img/s": f"{n:.1f}", "speed-up": f"{n / one:.2f}×",
                 "efficiency": f"{100 * n / one / args.nproc:.0f}%"})
    print(table(rows, list(rows[0])))
    print(machine())
    save(f"scaling_{args.device}", {"rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
