"""Sub-commands that run trained networks: denoise, eval, export."""
from __future__ import annotations

import json
import sys

from denoise_studio import args as types
from denoise_studio.args import EXIT_INVALID, positive_int
from denoise_studio.core.errors import DenoiseError
from denoise_studio.train_commands import add_noise_options

EVAL_NOISES = ("gaussian", "poisson-gaussian", "correlated")   # the image noise models (not ddpm's timesteps)
ENSEMBLE_HELP = "average the network over the 8 flips and quarter turns of each image (8× slower, a little cleaner)"


def add_commands(sub) -> None:
    s = sub.add_parser("denoise", help="denoise images with a trained network")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--out", required=True, type=types.out_folder,
                   help="folder for the results: NAME_denoised.png and NAME_noise.png per image (NAME-2, … "
                        "where two inputs share a name); created when the first result is written")
    s.add_argument("--overwrite", action="store_true", help="replace results that already exist in --out")
    s.add_argument("--sigma", type=types.sigma,
                   help="add synthetic noise of this σ (0 < σ ≤ 255) first and report PSNR/SSIM")
    s.add_argument("--device", default="auto")
    s.add_argument("--tile", type=types.tile, default=-1,
                   help=f"tile size for large images (-1, the default: 512, 256 with attention; 0: never tile; "
                        f"else at least {types.MIN_TILE})")
    s.add_argument("--ensemble", action="store_true", help=ENSEMBLE_HELP)
    s.set_defaults(func=cmd_denoise)

    s = sub.add_parser("eval", help="PSNR/SSIM of a network and classical denoisers on a folder")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--data", required=True, help="folder of clean images")
    s.add_argument("--noise", choices=EVAL_NOISES, default="gaussian",
                   help="the noise added to each image, seeded (default gaussian)")
    s.add_argument("--sigma", type=types.sigma, help="σ of the added gaussian or correlated noise (0 < σ ≤ 255)")
    add_noise_options(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=positive_int, help="use only the first N images")
    s.add_argument("--device", default="auto")
    s.add_argument("--ensemble", action="store_true", help=ENSEMBLE_HELP)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("export", help="export a trained network: onnx, torchscript or python")
    s.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    s.add_argument("--format", required=True, choices=("onnx", "torchscript", "python"))
    s.add_argument("--out", required=True, type=types.out_file,
                   help="the file to write (python: also the weights beside it, OUT with the suffix .safetensors)")
    s.add_argument("--overwrite", action="store_true", help="replace the files if they already exist")
    s.set_defaults(func=cmd_export)


# ---------------------------------------------------------------- denoise / eval

def _noise_view(noise_chw):
    import numpy as np
    scale = max(3 * float(np.std(noise_chw)), 1e-6)
    return np.clip(0.5 + 0.5 * noise_chw / scale, 0, 1)


def _first_clash(plans, overwrite: bool) -> None:
    """Refuse, before anything is written, to replace an existing file without --overwrite."""
    if overwrite:
        return
    existing = [p for plan in plans for p in plan.values() if p.exists() or p.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DenoiseError(f"{existing[0]} already exists{more}; add --overwrite to replace results, "
                           "or choose another --out.")


SSIM_BYTES = 8 * 12   # per pixel and channel: scikit-image's SSIM keeps about 12 float64 maps


def cmd_denoise(args) -> int:
    import numpy as np

    from denoise_studio.core.images import (
        check_channels,
        from_channels,
        load_image,
        plan_outputs,
        save_image,
        to_channels,
    )
    from denoise_studio.core.inference import add_noise, denoise, denoise_bytes, load_model
    from denoise_studio.core.metrics import psnr, ssim

    kinds = ("denoised", "noise", "noisy") if args.sigma is not None else ("denoised", "noise")
    plans = plan_outputs(args.images, args.out, kinds)
    _first_clash(plans, args.overwrite)
    lm = load_model(args.run, args.device)
    check_channels(lm.spec.in_channels)
    c = lm.spec.in_channels
    failed = 0
    for i, (name, plan) in enumerate(zip(args.images, plans, strict=True)):
        try:
            im = load_image(name, plan_bytes=lambda h, w: denoise_bytes(lm, h, w, args.tile, args.ensemble)
                            + (SSIM_BYTES * c * h * w if args.sigma is not None else 0))
            clean = to_channels(im.pixels, lm.spec.in_channels)
            noisy = add_noise(clean, args.sigma, seed=i) if args.sigma is not None else clean
            result = denoise(lm, noisy, args.sigma, tile=args.tile, ensemble=args.ensemble)
        except DenoiseError as e:
            print(f"skipped: {' '.join(str(e).splitlines())}", file=sys.stderr)
            failed += 1
            continue
        try:
            save_image(plan["denoised"], from_channels(result.reconstruction, im.grey), im.bit_depth, im.alpha)
            save_image(plan["noise"], from_channels(_noise_view(result.noise), im.grey))
            if args.sigma is not None:
                save_image(plan["noisy"], from_channels(np.clip(noisy, 0, 1), im.grey), im.bit_depth, im.alpha)
        except OSError as e:
            print(f"skipped: {name}: cannot write its results to {args.out} ({e.strerror or e}).", file=sys.stderr)
            failed += 1
            continue
        if args.sigma is not None:
            hwc = lambda chw: chw.transpose(1, 2, 0)  # noqa: E731
            print(f"{name}: noisy {psnr(noisy, clean):.2f} dB SSIM {_ssim_text(ssim(hwc(noisy), hwc(clean)))}  →  "
                  f"denoised {psnr(result.reconstruction, clean):.2f} dB SSIM "
                  f"{_ssim_text(ssim(hwc(result.reconstruction), hwc(clean)))}  →  {plan['denoised']}")
        else:
            print(f"{name}: denoised (estimated σ {result.sigma255:.1f}) → {plan['denoised']}")
    return EXIT_INVALID if failed else 0


EVAL_IMAGE_COPIES = 24   # float32-sized copies the five baselines make (scikit-image works in float64)


def cmd_eval(args) -> int:
    import numpy as np

    from denoise_studio.core.baselines import BASELINES, run_baseline
    from denoise_studio.core.data import scan_images
    from denoise_studio.core.images import check_channels, load_image, to_channels
    from denoise_studio.core.inference import add_process_noise, denoise, denoise_bytes, load_model
    from denoise_studio.core.metrics import psnr, ssim

    noise = _eval_noise(args)
    lm = load_model(args.run, args.device)
    check_channels(lm.spec.in_channels)
    paths, skipped = scan_images(args.data)
    paths = paths[:args.limit]
    if not paths:
        why = f"none of its entries is a regular image file ({skipped[0]})" if skipped else "it holds no images"
        raise DenoiseError(f"{args.data}: {why}; give a folder of PNG, JPEG, TIFF, BMP or WebP images.")
    c = lm.spec.in_channels

    def plan_bytes(h, w):
        return denoise_bytes(lm, h, w, -1, args.ensemble) + EVAL_IMAGE_COPIES * 4 * c * h * w

    methods = ["noisy", "network", *BASELINES]
    scores = {m: [] for m in methods}
    hwc = lambda chw: chw.transpose(1, 2, 0)  # noqa: E731
    for i, p in enumerate(paths):
        try:
            clean = to_channels(load_image(p, plan_bytes).pixels, c)
            noisy = add_process_noise(noise, clean, seed=i)
            # Signal-dependent noise has no one σ: the network and the baselines are given the RMS of
            # the noise actually added (known here, an advantage the baselines would not have on real data).
            sigma = args.sigma if args.sigma is not None else 255 * float(np.sqrt(np.mean((noisy - clean) ** 2)))
            outs = {"noisy": noisy, "network": denoise(lm, noisy, sigma, ensemble=args.ensemble).reconstruction}
        except DenoiseError as e:
            skipped.append(" ".join(str(e).splitlines()))
            continue
        if skipped:   # held back until one image is read: a folder of nothing readable is one line
            print("\n".join(f"skipped: {m}" for m in skipped), file=sys.stderr)
            skipped = []
        for b in BASELINES:
            outs[b] = run_baseline(b, noisy, sigma)
        for m, est in outs.items():
            scores[m].append((psnr(est, clean), ssim(hwc(est), hwc(clean))))
    if not scores["noisy"]:
        raise DenoiseError(f"{args.data}: none of its {len(paths)} image(s) could be read (first: {skipped[0]}); "
                           "give a folder of readable images.")
    if skipped:
        print("\n".join(f"skipped: {m}" for m in skipped), file=sys.stderr)
    summary = {m: {"psnr": float(np.mean([s[0] for s in v])), "ssim": _mean_defined([s[1] for s in v])}
               for m, v in scores.items() if v}
    if args.json:
        print(json.dumps({"sigma": args.sigma, "noise": noise.to_dict(), "images": len(scores["noisy"]),
                          "results": summary}, indent=2))
    else:
        print(f"{len(scores['noisy'])} images from {args.data}, {_noise_text(noise.to_dict())}")
        print(f"{'method':<10} {'PSNR dB':>8} {'SSIM':>7}")
        for m, r in summary.items():
            print(f"{m:<10} {r['psnr']:>8.2f} {_ssim_text(r['ssim'], 4):>7}")
    return 0


EVAL_HINT = " (see denoise-studio eval --help)"


def _eval_noise(args):
    """The noise process eval adds, from its options; a missing or misplaced option is one line, a usage
    error like argparse's."""
    from denoise_studio.core.noise import make_noise
    if args.noise == "poisson-gaussian":
        if args.sigma is not None or args.blur is not None:
            raise DenoiseError("poisson-gaussian noise is set by --gain and --read, not --sigma or --blur; "
                               "drop them" + EVAL_HINT)
        return make_noise({"noise": args.noise, "gain": args.gain or 4.0,
                           "read": 10.0 if args.read is None else args.read})
    if args.sigma is None:
        raise DenoiseError(f"{args.noise} noise needs --sigma, its σ on the 0–255 scale (e.g. --sigma 25)" + EVAL_HINT)
    if args.gain is not None or args.read is not None or (args.blur is not None and args.noise == "gaussian"):
        raise DenoiseError(f"--gain, --read and --blur belong to other noise models than {args.noise}; drop them "
                           "or choose that --noise" + EVAL_HINT)
    extra = {"blur": args.blur or 1.0} if args.noise == "correlated" else {}
    return make_noise({"noise": args.noise, "sigma": [args.sigma, args.sigma], **extra})


def _noise_text(d: dict) -> str:
    if d["noise"] == "poisson-gaussian":
        return f"poisson-gaussian noise, gain {d['gain']:g}, read noise {d['read']:g}"
    blur = f", blur {d['blur']:g} px" if "blur" in d else ""
    return f"{d['noise']} noise, σ = {d['sigma'][0]:g}{blur}"


def _ssim_text(value, digits: int = 3) -> str:
    """SSIM needs a 3×3 window: on thinner images it is undefined, shown as n/a rather than nan."""
    import math
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _mean_defined(values) -> float | None:
    """Mean of the defined values: SSIM is undefined (NaN) on images under 3×3; None (JSON null)
    when no image had one, rather than NaN (invalid JSON) and a numpy warning."""
    import math
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


# ---------------------------------------------------------------- export

def cmd_export(args) -> int:
    from denoise_studio.core.export import export, export_paths
    from denoise_studio.core.inference import load_model
    export_paths(args.format, args.out, args.overwrite)   # refused before the model is loaded
    lm = load_model(args.run, "cpu")
    for path in export(lm, args.format, args.out, args.overwrite):
        print(f"wrote {path}")
    return 0
