"""The quality runs' validation PSNR against wall-clock minutes, as a PNG for the README
(drawn with pyqtgraph, the app's own plotting, offscreen). Reads the run folders that
bench/quality.py leaves in bench/results/runs/.

    python bench/curves.py     # → bench/results/quality_curves.png
"""
from __future__ import annotations

import os
import sys

from common import RESULTS

from denoise_studio.core.runfolder import RunFolder

# run folder → label; the 10-minute recipes on the left, the hour on the right
TEN = {"unet-small-10min-b8-lr4e-3": "unet-small, batch 8, crop 64, lr 4e-3 (recommended)",
       "unet-small-nl-10min-nl": "the same, told σ (noise-level input)",
       "unet-small-10min-b8-c48-lr4e-3": "crop 48",
       "unet-small-10min-b8-c96-lr4e-3": "crop 96",
       "unet-small-10min-b4-lr3e-3": "batch 4, lr 3e-3 (loss spike at step 1,038)",
       "unet-small-nonorm-10min-lr2e-3": "without GroupNorm, lr 2e-3",
       "unet3gn-10min-b8": "3-level U-Net 32/64/128",
       "unet-half-10min-b8": "half-resolution U-Net"}
HOUR = {"unet-small-60min-60min-b8-lr4e-3": "unet-small, 60 minutes", "unet-small-10min-b8-lr4e-3": "10 minutes"}
COLOURS = ["#1f4e9c", "#2a9d8f", "#e76f51", "#8d6e63", "#c0392b", "#546e7a", "#7b1fa2", "#f4a261"]


def curve(folder: str):
    run = RunFolder.open(RESULTS / "runs" / folder)
    events, _ = run.read_events()
    t0 = next(e.time for e in events if e.name == "started")
    evals = [e for e in events if e.name == "eval"]
    return [(e.time - t0) / 60 for e in evals], [e.psnr for e in evals]


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication(sys.argv)   # noqa: F841
    pg.setConfigOptions(antialias=True, background="w", foreground="#333")
    win = pg.GraphicsLayoutWidget()
    win.resize(1400, 560)
    for col, (runs, title) in enumerate(((TEN, "10 CPU-minutes: the recipes tried"),
                                         (HOUR, "60 CPU-minutes: the recommended recipe"))):
        plot = win.addPlot(row=0, col=col, title=title)
        plot.setLabel("bottom", "wall-clock minutes (2 cores)")
        plot.setLabel("left", "validation PSNR at σ = 25, training-size crops (dB)")
        plot.showGrid(x=True, y=True, alpha=0.25)
        legend = plot.addLegend(offset=(-10, -10), labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(255, 255, 255, 230))
        for k, (folder, label) in enumerate(runs.items()):
            if not (RESULTS / "runs" / folder).is_dir():
                print(f"skipped {folder}: not in bench/results/runs (run bench/quality.py first)")
                continue
            x, y = curve(folder)
            plot.plot(x, y, pen=pg.mkPen(COLOURS[k % len(COLOURS)], width=3 if k == 0 else 2), name=label)
        plot.setYRange(25.6, 29.6, padding=0)
    out = RESULTS / "quality_curves.png"
    win.grab().save(str(out))
    print(out)


if __name__ == "__main__":
    main()
