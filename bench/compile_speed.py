"""torch.compile in the Trainer: what the first step costs (compilation) against what each later step
saves, so the break-even run length is known, for the default precision and for fp32.

Each measurement is a fresh process (compilation caches live in a process); the first round uses an
empty inductor cache (a machine's first compile), the later rounds the cache the first one left
(every run after). Throughput is the median of the Trainer's own images/s after warm-up.

    python bench/compile_speed.py [--preset unet-small] [--steps 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from common import ROOT, machine, median, save, table

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from denoise_studio.core.data import ImageSet
from denoise_studio.core.presets import load_preset
from denoise_studio.core.trainer import TrainConfig, Trainer
preset, steps, batch, crop, amp, compile_ = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), \
    sys.argv[6], sys.argv[7] == "1"
events = []
cfg = TrainConfig(steps=steps, batch_size=batch, crop=crop, device="cpu", amp=amp, compile=compile_,
                  eval_every=10**7, preview_every=10**7, checkpoint_every=10**7, sigma=(25.0, 25.0))
t = time.perf_counter()
result = Trainer(load_preset(preset), cfg, sinks=[events.append], images=ImageSet.load("builtin")).run()
steps_ev = [e for e in events if e.name == "step"]
print(json.dumps({"first_step_s": batch / steps_ev[0].images_per_s, "rate": sorted(
    e.images_per_s for e in steps_ev[5:])[len(steps_ev[5:]) // 2], "precision": result.name and
    next(e.precision for e in events if e.name == "started")}))
"""


def measure(args, amp: str, compile_: bool, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), args.preset, str(args.steps), str(args.batch),
                          str(args.crop), amp, "1" if compile_ else "0"], capture_output=True, text=True,
                         timeout=1800, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def pays_after(cost: float, saved_per_step: float) -> str:
    return f"{cost / saved_per_step:,.0f} steps" if saved_per_step > 0 else "never"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="unet-small")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--amps", default="auto,off")
    args = ap.parse_args()
    rows, raw = [], {}
    for amp in args.amps.split(","):
        cache = tempfile.mkdtemp(prefix="inductor-")
        samples: dict[str, list] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):   # alternating, so drift hits both alike; round 1 compiles cold
            samples["eager"].append(measure(args, amp, False, cache))
            samples["compiled"].append(measure(args, amp, True, cache))
        raw[amp] = samples
        eager, comp = samples["eager"], samples["compiled"]
        rate_e, rate_c = median([r["rate"] for r in eager]), median([r["rate"] for r in comp])
        first_e = median([r["first_step_s"] for r in eager])
        cold = comp[0]["first_step_s"] - first_e
        warm = median([r["first_step_s"] for r in comp[1:]]) - first_e if len(comp) > 1 else float("nan")
        saved = args.batch / rate_e - args.batch / rate_c   # seconds per step
        rows.append({"precision": eager[0]["precision"], "eager img/s": f"{rate_e:.1f}",
                     "compiled img/s": f"{rate_c:.1f}", "speed-up": f"{rate_c / rate_e:.2f}×",
                     "compile s (cold / cached)": f"{cold:.1f} / {warm:.1f}",
                     "pays after (cold / cached)": f"{pays_after(cold, saved)} / {pays_after(warm, saved)}"})
        print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))
    print(machine())
    save("compile_speed", {"args": vars(args), "rows": rows, "samples": raw})


if __name__ == "__main__":
    main()
