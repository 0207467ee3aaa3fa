"""Inference latency per preset at 256², 512², 2048² on CPU (and GPU when there is one), and peak
RSS denoising a 4096² RGB image tiled vs whole, each in its own process; seams: PSNR of tiled vs
whole where whole fits.

    python bench/inference.py [--presets unet-small,dncnn] [--skip-rss]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from common import RESULTS, ROOT, machine, median, save, table

from denoise_studio.core.inference import model_from_spec, predict
from denoise_studio.core.presets import load_preset

RESULTS_FILE = RESULTS / "inference.json"
RSS_CHILD = r"""
import json, resource, sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from denoise_studio.core.inference import model_from_spec, denoise
from denoise_studio.core.presets import load_preset
torch.manual_seed(0)
lm = model_from_spec(load_preset(sys.argv[2]))
img = np.random.default_rng(0).random((3, 4096, 4096), dtype=np.float32)
t = time.perf_counter()
denoise(lm, img, 25.0, tile=int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def latency(lm, size, device, repeats=3) -> float:
    x = torch.rand(3, size, size)
    predict(lm, x[:, :64, :64], None, tile=None)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(lm, x, None)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="unet-small,seed-simple-fixed,dncnn,residual,unet")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in ([] if args.skip_latency else args.presets.split(",")):
        for dev in devices:
            torch.manual_seed(0)
            lm = model_from_spec(load_preset(name), device=dev)
            with torch.no_grad():
                row = {"preset": name, "device": dev}
                for size in (256, 512, 2048):
                    row[f"{size}² s"] = f"{latency(lm, size, dev, 3 if size < 2048 else 1):.3f}"
            rows.append(row)
            print(row, flush=True)
    if rows:
        print(table(rows, list(rows[0])))
    # seams: tiled vs whole on a 1024² natural-ish image (random init networks; the seam test is structural)
    seams = []
    import skimage.data
    img = torch.from_numpy(np.ascontiguousarray(
        np.resize(skimage.data.astronaut(), (1024, 1024, 3)).astype(np.float32).transpose(2, 0, 1) / 255))
    for name in args.presets.split(","):
        if any(b["type"] == "attention" for b in load_preset(name).blocks):
            seams.append({"preset": name, "tiled vs whole PSNR dB": "whole 1024² does not fit (attention)"})
            continue
        torch.manual_seed(0)
        lm = model_from_spec(load_preset(name))
        with torch.no_grad():
            whole = predict(lm, img, None, tile=None)
            tiled = predict(lm, img, None, tile=512)
        peak = float(whole.abs().max())
        mse = float(((whole - tiled) ** 2).mean())
        seams.append({"preset": name, "tiled vs whole PSNR dB": f"{10 * np.log10(peak ** 2 / max(mse, 1e-20)):.1f}"})
    print(table(seams, list(seams[0])))
    rss = []
    if not args.skip_rss:
        for tile in (0, 512):
            out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(ROOT), "unet-small", str(tile)],
                                 capture_output=True, text=True, timeout=1800)
            r = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-300:]}
            r["mode"] = "whole" if tile == 0 else f"tiles of {tile}"
            rss.append(r)
            print(r, flush=True)
        print(table([{k: (f"{v:.0f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rss],
                    ["mode", "seconds", "peak_rss_mb"]))
    print(machine())
    if args.skip_latency:   # keep the latency rows of an earlier run
        import json as _json
        old = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "{}"
        rows = _json.loads(old).get("latency", [])
    save("inference", {"latency": rows, "seams": seams, "rss_4096": rss})


if __name__ == "__main__":
    main()
