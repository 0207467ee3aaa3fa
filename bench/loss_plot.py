"""LossPlot update + render time at 100k and 1M points (offscreen), medians of repeated redraws.
Baseline in the same run: the same data through a plain pyqtgraph curve with default settings.

    python bench/loss_plot.py
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from common import machine, median, save, table  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def timed_redraws(plot_widget, update, n=25) -> tuple[float, float]:
    """Median ms of (update, render) over n redraws; grab() forces a real render of the scene."""
    upd, ren = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        update()
        t1 = time.perf_counter()
        plot_widget.grab()
        t2 = time.perf_counter()
        upd.append((t1 - t0) * 1000)
        ren.append((t2 - t1) * 1000)
    return median(upd[3:]), median(ren[3:])


def main():
    app = QApplication.instance() or QApplication([])
    from denoise_studio.gui.loss_plot import LossPlot
    rows = []
    for n in (100_000, 1_000_000):
        steps = np.arange(1, n + 1, dtype=float)
        losses = 0.01 / np.sqrt(steps) * (1 + 0.3 * np.random.default_rng(0).standard_normal(n) ** 2)
        plot = LossPlot()
        plot.resize(900, 400)
        plot.show()
        plot.add_losses(steps, losses)
        plot.redraw()
        app.processEvents()

        def ours(plot=plot, n=n):
            plot.add_loss(n + 1, 0.001)   # one new point, as in training
            plot.redraw()

        ours_upd, ours_ren = timed_redraws(plot.plot, ours)
        base = pg.PlotWidget()
        base.resize(900, 400)
        base.show()
        curve = base.plot()
        base.getPlotItem().setLogMode(y=True)

        def baseline(curve=curve, steps=steps, losses=losses):
            curve.setData(steps, losses)

        base_upd, base_ren = timed_redraws(base, baseline)
        ours_ms, base_ms = ours_upd + ours_ren, base_upd + base_ren
        rows.append({"points": f"{n:,}", "LossPlot update ms": f"{ours_upd:.1f}", "render ms": f"{ours_ren:.1f}",
                     "update+render ms": f"{ours_ms:.1f}",
                     "plain pyqtgraph setData+render ms": f"{base_ms:.1f}", "speed-up": f"{base_ms / ours_ms:.1f}×"})
        plot.close()
        base.close()
    print(table(rows, list(rows[0])))
    print(machine())
    save("loss_plot", {"rows": rows})


if __name__ == "__main__":
    main()
