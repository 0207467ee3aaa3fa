"""LossPlot update + render time at 100k and 1M points (offscreen), medians of repeated redraws.
Baseline in the same run: the same data through a plain pyqtgraph curve with default settings.

    python bench/loss_plot.py
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import machine, median, save, table  # noqa: E402

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def timed_redraws(widget, plot_widget, update, n=15) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        update()
        plot_widget.grab()          # forces a real render of the scene
        times.append((time.perf_counter() - t) * 1000)
    return median(times[2:])


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

        def ours():
            plot.add_loss(n + 1, 0.001)   # one new point, as in training
            plot.redraw()

        ours_ms = timed_redraws(plot, plot.plot, ours)
        base = pg.PlotWidget()
        base.resize(900, 400)
        base.show()
        curve = base.plot()
        base.getPlotItem().setLogMode(y=True)

        def baseline():
            curve.setData(steps, losses)

        base_ms = timed_redraws(base, base, baseline)
        rows.append({"points": f"{n:,}", "LossPlot update+render ms": f"{ours_ms:.1f}",
                     "plain pyqtgraph setData+render ms": f"{base_ms:.1f}", "speed-up": f"{base_ms / ours_ms:.1f}×"})
        plot.close()
        base.close()
    print(table(rows, list(rows[0])))
    print(machine())
    save("loss_plot", {"rows": rows})


if __name__ == "__main__":
    main()
