"""`denoise-studio`: no arguments opens the GUI; sub-commands run the Qt-free core.

Every user error is one line on stderr and exit code 2; heavy imports happen inside the
command that needs them, so `presets` and `--help` answer at once.
"""
from __future__ import annotations

import argparse
import json
import sys

from denoise_studio import __version__
from denoise_studio.args import EXIT_INVALID, Parser, capped_int, print_error
from denoise_studio.format import count as fmt_count
from denoise_studio.format import size_bytes as fmt_bytes


def cmd_presets(args) -> int:
    from denoise_studio.core.analysis import analyze
    from denoise_studio.core.presets import load_preset, preset_names
    for name in preset_names():
        spec = load_preset(name)
        a = analyze(spec, 64)
        status = f"{fmt_count(a.total_params)} params" if a.valid else "INVALID"
        print(f"{name:<20} {status:<16} {spec.description}")
    return 0


def cmd_inspect(args) -> int:
    from denoise_studio.core.analysis import analyze
    from denoise_studio.core.presets import load_spec
    spec = load_spec(args.spec)
    a = analyze(spec, args.size)
    if args.json:
        print(json.dumps({"name": spec.name, **a.to_dict()}, indent=2))
        return 0 if a.valid else EXIT_INVALID

    def line(text) -> str:   # a spec's own text, kept to one printable line
        return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in str(text))

    print(f"{line(spec.name)}: {line(spec.in_channels)[:20]}×{args.size}×{args.size} input, "
          f"conditioning {line(spec.conditioning)[:40]}")
    if spec.description:
        print(f"  {line(spec.description)}")
    print(f"{'#':>3}  {'block':<10} {'output C×H×W':<16} {'params':>9} {'FLOPs':>9} {'RF':>6}  id")
    for b in a.blocks:
        c, h, w = b.output_shape
        mark = "!" if any(i.level == "error" for i in a.issues_for(b.index)) else " "
        rf = "all" if b.receptive_field == float("inf") else str(int(b.receptive_field))
        bid = spec.blocks[b.index].get("id", "")
        print(f"{b.index:>3}{mark} {b.type:<10} {f'{c}×{h}×{w}':<16} {fmt_count(b.params):>9} "
              f"{fmt_count(b.flops):>9} {rf:>6}  {line(bid)[:40] if isinstance(bid, str) else ''}")
    rf = "global (attention)" if a.to_dict()["receptive_field_global"] else f"{int(a.receptive_field)} px"
    print(f"total: {a.total_params:,} parameters, {fmt_count(a.total_flops)} FLOPs, "
          f"{fmt_bytes(a.activation_bytes)} activations (batch 1, fp32), receptive field {rf}")
    for issue in a.issues:
        print(issue)
    print("valid" if a.valid else f"invalid: {len(a.errors)} error(s)")
    return 0 if a.valid else EXIT_INVALID


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="denoise-studio", description="Build, train and inspect denoising "
                                "networks. With no command, opens the desktop app.")
    p.add_argument("--version", action="version", version=f"denoise-studio {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("presets", help="list the shipped architecture presets")
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("inspect", help="validate a spec and show per-block shapes, parameters and FLOPs")
    s.add_argument("spec", metavar="SPEC_OR_PRESET")
    s.add_argument("--size", type=capped_int("IMAGE_SIDE"), default=64, help="input height and width (default 64)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_inspect)

    from denoise_studio import commands, sample_commands, train_commands
    train_commands.add_commands(sub)   # train, watch
    commands.add_commands(sub)         # denoise, eval, export
    sample_commands.add_commands(sub)  # sample

    s = sub.add_parser("gui", help="open the desktop app (the default)")
    s.add_argument("path", nargs="?", help="a spec, run folder or image to open")
    s.set_defaults(func=cmd_gui)
    return p


def cmd_gui(args) -> int:
    try:
        from denoise_studio.gui.app import run
    except ImportError as e:
        print(f"denoise-studio: error: the desktop app needs PySide6 and pyqtgraph ({e}); "
              "install them with `pip install denoise-studio`, or use the sub-commands.", file=sys.stderr)
        return EXIT_INVALID
    return run(getattr(args, "path", None))


def main(argv=None) -> int:
    from denoise_studio.core.errors import DenoiseError
    for stream in (sys.stdout, sys.stderr):   # file names that are not UTF-8 must still print
        if stream in (sys.__stdout__, sys.__stderr__) and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # --help, --version, or Parser.error's one line already printed
        return e.code if isinstance(e.code, int) else EXIT_INVALID
    if args.command is None:
        return cmd_gui(args)
    try:
        return args.func(args)
    except DenoiseError as e:
        print_error(e)
        return EXIT_INVALID
    except OSError as e:
        # The filesystem said no (read-only, full, permission, a path that vanished): the user's
        # environment, not a bug, so one line naming the path rather than a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print_error(f"{where}{e.strerror or e}; check the path, its permissions and the free space.")
        return EXIT_INVALID
    except MemoryError:
        # Estimates refuse what will not fit before allocating; this is the net under them.
        print_error("ran out of memory; use a smaller --tile, image, batch or network.")
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("denoise-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
