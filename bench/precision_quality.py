"""Does the fast path keep quality? unet-small trained the same number of steps on CBSD68 with
`--amp off` (fp32) and with `--amp auto` (bf16 autocast where the CPU has native bf16), same seed
and batches; Kodak24 PSNR at σ = 25 (inference in fp32), and the wall-clock each took.

    python bench/precision_quality.py [--steps 3000]
"""
from __future__ import annotations

import argparse
import time

from common import RESULTS, machine, need_data, save, table
from quality import evaluate

from denoise_studio.core.inference import denoise, load_model
from denoise_studio.core.precision import auto_amp, describe
from denoise_studio.core.presets import load_spec
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.trainer import TrainConfig, Trainer


def network(lm):
    return lambda noisy, sigma: denoise(lm, noisy, sigma).reconstruction


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=4e-3)
    args = ap.parse_args()
    spec = load_spec("unet-small")
    rows, methods = [], {}
    for amp in ("off", "auto"):
        out = RESULTS / "runs" / f"precision-{amp}-{args.steps}"
        cfg = TrainConfig(data=str(need_data("CBSD68")), steps=args.steps, batch_size=8, crop=64, lr=args.lr,
                          sigma=(5.0, 55.0), amp=amp, eval_every=10**7, preview_every=10**7,
                          checkpoint_every=10**7, seed=0)
        t = time.time()
        Trainer(spec, cfg, run=RunFolder.create(out, spec, cfg.to_dict())).run()
        minutes = (time.time() - t) / 60
        lm = load_model(out / "checkpoints" / "last.safetensors", "cpu")
        name = "fp32 (--amp off)" if amp == "off" else f"--amp auto: {describe('cpu', auto_amp('cpu'))}"
        methods[name] = network(lm)
        rows.append({"training path": name, "minutes": f"{minutes:.1f}"})
    scores = evaluate(methods, (25,))
    for r in rows:
        r["Kodak24 PSNR at σ=25"] = f"{scores[r['training path']][25][0]:.2f}"
    print(f"unet-small, {args.steps} steps, batch 8, crop 64, CBSD68; evaluated in fp32")
    print(table(rows, ["training path", "minutes", "Kodak24 PSNR at σ=25"]))
    print(machine())
    save("precision_quality", {"steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
