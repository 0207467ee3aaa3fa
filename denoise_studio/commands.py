"""Sub-commands that run trained networks: denoise, eval, export."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from denoise_studio.args import EXIT_INVALID, positive_int
from denoise_studio.core.errors import DenoiseError

ENSEMBLE_HELP = "average the network over the 8 flips and quarter turns of each image (8× slower, a little cleaner)"


def add_commands(sub) -> None:
    s = sub.add_parser("denoise", help="denoise images with a trained network")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--out", required=True, help="folder for the results")
    s.add_argument("--sigma", type=float, help="add synthetic noise of this σ (0–255) first and report PSNR/SSIM")
    s.add_argument("--device", default="auto")
    s.add_argument("--tile", type=int, default=-1,
                   help="tile size for large images (default: 512, 256 with attention; 0: never tile)")
    s.add_argument("--ensemble", action="store_true", help=ENSEMBLE_HELP)
    s.set_defaults(func=cmd_denoise)

    s = sub.add_parser("eval", help="PSNR/SSIM of a network and classical denoisers on a folder")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--data", required=True, help="folder of clean images")
    s.add_argument("--sigma", type=float, required=True, help="σ of the added noise (0–255)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=positive_int, help="use only the first N images")
    s.add_argument("--device", default="auto")
    s.add_argument("--ensemble", action="store_true", help=ENSEMBLE_HELP)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("export", help="export a trained network: onnx, torchscript or python")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--format", required=True, choices=("onnx", "torchscript", "python"))
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_export)



# ---------------------------------------------------------------- denoise / eval

def _noise_view(noise_chw):
    import numpy as np
    scale = max(3 * float(np.std(noise_chw)), 1e-6)
    return np.clip(0.5 + 0.5 * noise_chw / scale, 0, 1)


def cmd_denoise(args) -> int:
    import numpy as np

    from denoise_studio.core.images import from_channels, load_image, output_stem, save_image, to_channels
    from denoise_studio.core.inference import add_noise, denoise, load_model
    from denoise_studio.core.metrics import psnr, ssim

    lm = load_model(args.run, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, name in enumerate(args.images):
        try:
            im = load_image(name)
        except DenoiseError as e:
            print(f"skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        clean = to_channels(im.pixels, lm.spec.in_channels)
        noisy = add_noise(clean, args.sigma, seed=i) if args.sigma is not None else clean
        result = denoise(lm, noisy, args.sigma, tile=args.tile, ensemble=args.ensemble)
        stem = output_stem(name)
        back = lambda chw: from_channels(chw, im.grey)  # noqa: E731
        try:
            save_image(out / f"{stem}_denoised.png", back(result.reconstruction), im.bit_depth, im.alpha)
            save_image(out / f"{stem}_noise.png", back(_noise_view(result.noise)))
            if args.sigma is not None:
                save_image(out / f"{stem}_noisy.png", back(np.clip(noisy, 0, 1)), im.bit_depth, im.alpha)
        except OSError as e:
            print(f"skipped: {name}: cannot write its results to {out} ({e.strerror or e}).", file=sys.stderr)
            failed += 1
            continue
        if args.sigma is not None:
            hwc = lambda chw: chw.transpose(1, 2, 0)  # noqa: E731
            print(f"{name}: noisy {psnr(noisy, clean):.2f} dB SSIM {ssim(hwc(noisy), hwc(clean)):.3f}  →  "
                  f"denoised {psnr(result.reconstruction, clean):.2f} dB SSIM "
                  f"{ssim(hwc(result.reconstruction), hwc(clean)):.3f}")
        else:
            print(f"{name}: denoised (estimated σ {result.sigma255:.1f}) → {out / (stem + '_denoised.png')}")
    return EXIT_INVALID if failed else 0


def cmd_eval(args) -> int:
    import numpy as np

    from denoise_studio.core.baselines import BASELINES, run_baseline
    from denoise_studio.core.data import find_images
    from denoise_studio.core.images import load_image, to_channels
    from denoise_studio.core.inference import add_noise, denoise, load_model
    from denoise_studio.core.metrics import psnr, ssim

    lm = load_model(args.run, args.device)
    paths = find_images(args.data)[:args.limit]
    if not paths:
        raise DenoiseError(f"{args.data}: no images to evaluate.")
    methods = ["noisy", "network", *BASELINES]
    scores = {m: [] for m in methods}
    hwc = lambda chw: chw.transpose(1, 2, 0)  # noqa: E731
    for i, p in enumerate(paths):
        try:
            clean = to_channels(load_image(p).pixels, lm.spec.in_channels)
        except DenoiseError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        noisy = add_noise(clean, args.sigma, seed=i)
        outs = {"noisy": noisy, "network": denoise(lm, noisy, args.sigma, ensemble=args.ensemble).reconstruction}
        for b in BASELINES:
            outs[b] = run_baseline(b, noisy, args.sigma)
        for m, est in outs.items():
            scores[m].append((psnr(est, clean), ssim(hwc(est), hwc(clean))))
    summary = {m: {"psnr": float(np.mean([s[0] for s in v])), "ssim": float(np.nanmean([s[1] for s in v]))}
               for m, v in scores.items() if v}   # SSIM is undefined (NaN) on images under 3×3
    if args.json:
        print(json.dumps({"sigma": args.sigma, "images": len(scores["noisy"]), "results": summary}, indent=2))
    else:
        print(f"{len(scores['noisy'])} images from {args.data}, σ = {args.sigma:g}")
        print(f"{'method':<10} {'PSNR dB':>8} {'SSIM':>7}")
        for m, r in summary.items():
            print(f"{m:<10} {r['psnr']:>8.2f} {r['ssim']:>7.4f}")
    return 0


# ---------------------------------------------------------------- export

def cmd_export(args) -> int:
    from denoise_studio.core.export import export
    from denoise_studio.core.inference import load_model
    lm = load_model(args.run, "cpu")
    for path in export(lm, args.format, args.out):
        print(f"wrote {path}")
    return 0
