"""Image pane latency: after a σ change, how long until the network's result is shown, and until
the last classical baseline has streamed in — the pretrained network on a 512² crop of a Kodak
image, as a user drags the σ slider (the slider's own debounce included).

    python bench/pane_latency.py [--size 512] [--changes 7]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import machine, median, need_data, save, table  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--changes", type=int, default=7)
    args = ap.parse_args()
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from denoise_studio.core.images import load_image, save_image
    from denoise_studio.core.inference import load_model
    from denoise_studio.gui.image_pane import ImagePane
    app = QApplication.instance() or QApplication([])
    src = load_image(need_data("Kodak24") / "kodim05.png").pixels
    h, w = src.shape[:2]
    crop = src[(h - args.size) // 2:(h + args.size) // 2, (w - args.size) // 2:(w + args.size) // 2] \
        if min(h, w) >= args.size else np.resize(src, (args.size, args.size, 3))
    path = "/tmp/pane_latency.png"
    save_image(path, crop)
    lm = load_model("pretrained", "cpu")
    pane = ImagePane()
    pane.model_provider = lambda: lm
    pane.resize(1100, 700)
    pane.show()
    marks: dict = {}
    pane.signals.result.connect(lambda r: marks.setdefault((r.generation, r.stage, r.final), time.perf_counter()))

    def wait(cond, limit=120.0):
        end = time.perf_counter() + limit
        while not cond() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)

    pane.open_path(path)
    wait(lambda: not pane.busy)
    network, everything = [], []
    for i in range(args.changes):
        g0 = pane.generation
        t0 = time.perf_counter()
        pane.sigma.setValue(15 + 10 * (i % 4) + (i // 4))   # always a new value
        wait(lambda g0=g0: pane.generation > g0 and any(k[0] == pane.generation for k in marks) and not pane.busy)
        g = pane.generation
        network.append(min(t for (gen, stage, _), t in marks.items() if gen == g and stage == "network") - t0)
        everything.append(max(t for (gen, _, _), t in marks.items() if gen == g) - t0)
    rows = [{"after a σ change": "network result shown", "seconds (median)": f"{median(network):.2f}",
             "all": " ".join(f"{x:.2f}" for x in network)},
            {"after a σ change": "last baseline shown", "seconds (median)": f"{median(everything):.2f}",
             "all": " ".join(f"{x:.2f}" for x in everything)}]
    print(f"{args.size}² colour image, pretrained unet-small, σ changed {args.changes} times")
    print(table(rows, ["after a σ change", "seconds (median)", "all"]))
    print(machine())
    save("pane_latency", {"size": args.size, "network_s": network, "all_s": everything, "rows": rows})


if __name__ == "__main__":
    main()
