"""Live plots: the loss curve (raw, smoothed, validation PSNR, other runs to compare) and
the per-block gradient-norm strip.

Items are created once and fed with setData from a 20 Hz timer (never once per step);
data lives in growable numpy buffers; downsampling and clip-to-view keep a million
points cheap.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

REDRAW_MS = 50
EMA_ALPHA = 0.05
BUCKETS = 1500       # default envelope resolution; the plot uses one bucket per pixel column


def envelope(x: np.ndarray, y: np.ndarray, lo: float, hi: float, buckets: int = BUCKETS):
    """The points of (x, y) between lo and hi, reduced to each bucket's min and max.

    One numpy pass over the visible points: a million points cost a few milliseconds, and
    pyqtgraph never sees more than 2 × buckets of them, so peaks are kept and redraws stay cheap.
    """
    i0, i1 = np.searchsorted(x, [lo, hi])
    i0, i1 = max(0, i0 - 1), min(len(x), i1 + 1)
    xs, ys = x[i0:i1], y[i0:i1]
    n = len(xs)
    if n <= 2 * buckets:
        return xs, ys
    k = n // buckets
    m = k * buckets
    blocks = ys[:m].reshape(buckets, k)
    return _interleave(xs[:m:k], blocks.min(1), blocks.max(1), xs[m:], ys[m:])


def _interleave(starts, mins, maxs, tail_x, tail_y):
    """Each bucket as two points, (start, min) and (start, max), then the points after the last
    full bucket as they are."""
    return (np.concatenate([np.repeat(starts, 2), tail_x]),
            np.concatenate([np.column_stack([mins, maxs]).ravel(), tail_y]))


COMPARE_COLOURS = ("#e45756", "#54a24b", "#b279a2", "#f58518")


class Series:
    """A growable (x, y) buffer that keeps the min/max envelope of its whole length up to date."""

    def __init__(self, capacity: int = 4096):
        self.x = np.empty(capacity, np.float64)
        self.y = np.empty(capacity, np.float64)
        self.n = 0
        self._reset_envelope(1)

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n], self.y[self.n] = x, y
        self.n += 1

    def data(self):
        return self.x[:self.n], self.y[:self.n]

    def clear(self) -> None:
        self.n = 0
        self._reset_envelope(1)

    def _reset_envelope(self, k: int) -> None:
        self._k, self._done = k, 0
        self._lo = self._hi = np.empty(0)

    def envelope(self, lo: float = -np.inf, hi: float = np.inf, columns: int = BUCKETS):
        """envelope() of the points between lo and hi. For the whole series (the view while
        training) buckets are a power of two wide and completed ones are kept, so each redraw
        reduces only the points that arrived since the last one."""
        x, y = self.data()
        if np.isfinite(lo) or np.isfinite(hi):
            return envelope(x, y, lo, hi, columns)
        k = 1 << max(0, math.ceil(math.log2(max(1.0, self.n / columns))))
        if k == 1:
            return x, y
        if k != self._k:
            self._reset_envelope(k)
        full = self.n // k
        if full > self._done:
            blocks = y[self._done * k:full * k].reshape(-1, k)
            self._lo = np.concatenate([self._lo, blocks.min(1)])
            self._hi = np.concatenate([self._hi, blocks.max(1)])
            self._done = full
        return _interleave(x[:full * k:k], self._lo, self._hi, x[full * k:], y[full * k:])


class LossAxis(pg.AxisItem):
    """In log mode, labels only 1, 2 and 5 × 10ⁿ: pyqtgraph labels every minor tick of a
    decade when it fits, which piles the labels up at the top of the plot."""

    def logTickStrings(self, values, scale, spacing):
        strings = super().logTickStrings(values, scale, spacing)
        keep = [f"{10 ** v * scale:.0e}"[0] in "125" for v in values]
        return [s if k else "" for s, k in zip(strings, keep, strict=True)]


class LossPlot(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("LossPlot")
        self.setAccessibleName("Loss plot")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(background="w", axisItems={"left": LossAxis("left")})
        self.plot.setObjectName("LossPlotWidget")
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True)
        for side in ("left", "bottom", "right"):
            # An opaque light grid: Qt's raster engine blends translucent lines ~10× slower than
            # it draws opaque ones, and the translucent default grid cost most of a redraw.
            # Grid lines at major and minor ticks only (log decades' sub-ticks add nothing).
            axis = item.getAxis(side)
            axis.setPen(pg.mkPen("#e4e4e4"))
            axis.setTextPen(pg.mkPen("#404040"))
            axis.setStyle(maxTickLevel=1, tickAlpha=255)
            axis.setZValue(-1)        # the grid goes under the curves and the legend
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.addLegend(offset=(60, 4), colCount=2, brush="w", pen="#cccccc", labelTextColor="#404040")
        self.raw_curve = item.plot(pen=pg.mkPen("#9fb8d9", width=1), name="loss")
        self.ema_curve = item.plot(pen=pg.mkPen("#1f4e9c", width=2), name="smoothed")
        for c in (self.raw_curve, self.ema_curve):
            c.setSkipFiniteCheck(True)   # add_loss drops NaN and inf before they reach a buffer
        self.best_marker = pg.ScatterPlotItem(size=10, brush=pg.mkBrush("#e45756"), pen=pg.mkPen("w"),
                                              symbol="star", name="best")
        item.addItem(self.best_marker)
        # validation PSNR on a second axis
        self.psnr_view = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.psnr_view)
        item.getAxis("right").linkToView(self.psnr_view)
        item.getAxis("right").setLabel("validation PSNR (dB)", color="#2a8c4a")
        for side in ("left", "right"):
            item.getAxis(side).enableAutoSIPrefix(False)
        self.psnr_view.setXLink(item)
        self.psnr_curve = pg.PlotDataItem(pen=pg.mkPen("#2a8c4a", width=2), symbol="o", symbolSize=5,
                                          symbolBrush="#2a8c4a")
        self.psnr_view.addItem(self.psnr_curve)
        item.getViewBox().sigResized.connect(self._sync_views)
        item.getViewBox().sigXRangeChanged.connect(self._range_changed)
        legend = item.legend
        legend.addItem(self.psnr_curve, "validation PSNR")
        # crosshair readout
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        item.addItem(self.vline, ignoreBounds=True)
        self.vline.hide()             # until the pointer is over the plot
        self.readout = QLabel(" ")
        self.readout.setObjectName("LossReadout")
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)

        bar = QHBoxLayout()
        self.log_y = QCheckBox("log y")
        self.log_y.setObjectName("LogYToggle")
        self.log_y.setChecked(True)
        self.log_y.toggled.connect(self._set_log)
        self._set_log(True)
        bar.addWidget(self.log_y)
        bar.addWidget(self.readout, 1)
        lay.addLayout(bar)
        lay.addWidget(self.plot, 1)

        self.pause_marks: list[pg.InfiniteLine] = []
        self.raw, self.ema, self.psnr = Series(), Series(), Series()
        self.compare: list[tuple[str, pg.PlotDataItem]] = []
        self._ema = 0.0
        self._ema_n = 0
        self._best = (math.nan, math.inf)
        self._dirty = False
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def _range_changed(self, *_):
        if not self.plot.getPlotItem().getViewBox().autoRangeEnabled()[0]:
            self._dirty = True   # panned or zoomed by hand: re-cut the envelope for the new range

    def _set_log(self, on: bool) -> None:
        item = self.plot.getPlotItem()
        item.setLogMode(y=on)
        item.getAxis("right").setLogMode(False, False)   # PSNR stays linear
        self._dirty = True

    def _sync_views(self) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        # a narrow plot has no room for the legend: it would cover or be cut off; widen to see it
        self.plot.getPlotItem().legend.setVisible(vb.width() > 420)
        self.psnr_view.setGeometry(vb.sceneBoundingRect())
        self.psnr_view.linkedViewChanged(vb, self.psnr_view.XAxis)

    # --- data in ---
    def clear(self) -> None:
        for s in (self.raw, self.ema, self.psnr):
            s.clear()
        self._ema, self._ema_n, self._best = 0.0, 0, (math.nan, math.inf)
        for _, curve in self.compare:
            self.plot.getPlotItem().removeItem(curve)
        self.compare = []
        for line in self.pause_marks:
            self.plot.getPlotItem().removeItem(line)
        self.pause_marks = []
        self._dirty = True

    def mark_pause(self, step: int) -> None:
        """A vertical line where training was paused, so a gap in time reads as one on the plot."""
        line = pg.InfiniteLine(pos=step, angle=90, movable=False, label="paused",
                               pen=pg.mkPen("#d08c00", width=1, style=Qt.PenStyle.DotLine),
                               labelOpts={"position": 0.95, "color": "#d08c00"})
        self.plot.getPlotItem().addItem(line, ignoreBounds=True)
        self.pause_marks.append(line)

    def move_pause_mark(self, step: int) -> None:
        """Steps already in flight when Pause was pressed land after it: the pause is where they end."""
        if self.pause_marks:
            self.pause_marks[-1].setValue(step)

    def add_loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss) or loss <= 0:
            return
        self.raw.append(step, loss)
        self._ema_n += 1
        self._ema = (1 - EMA_ALPHA) * self._ema + EMA_ALPHA * loss
        smoothed = self._ema / (1 - (1 - EMA_ALPHA) ** self._ema_n)   # bias-corrected
        self.ema.append(step, smoothed)
        if smoothed < self._best[1]:
            self._best = (step, smoothed)
        self._dirty = True

    def add_losses(self, steps, losses) -> None:
        for s, v in zip(steps, losses, strict=True):
            self.add_loss(s, v)

    def add_psnr(self, step: int, psnr: float) -> None:
        self.psnr.append(step, psnr)
        self._dirty = True

    def add_comparison(self, name: str, steps, losses) -> None:
        """Overlay another run's smoothed loss curve."""
        s = Series()
        ema, n = 0.0, 0
        for x, y in zip(steps, losses, strict=True):
            if math.isfinite(y) and y > 0:
                n += 1
                ema = (1 - EMA_ALPHA) * ema + EMA_ALPHA * y
                s.append(x, ema / (1 - (1 - EMA_ALPHA) ** n))
        colour = COMPARE_COLOURS[len(self.compare) % len(COMPARE_COLOURS)]
        curve = self.plot.getPlotItem().plot(*envelope(*s.data(), -np.inf, np.inf),
                                             pen=pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine), name=name)
        self.compare.append((name, curve))

    # --- drawing ---
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        vb = self.plot.getPlotItem().getViewBox()
        lo, hi = (-np.inf, np.inf) if vb.autoRangeEnabled()[0] else vb.viewRange()[0]
        columns = max(200, int(vb.width()))   # about a min and a max per pixel column
        self.raw_curve.setData(*self.raw.envelope(lo, hi, columns))
        self.ema_curve.setData(*self.ema.envelope(lo, hi, columns))
        self.psnr_curve.setData(*self.psnr.data())
        if self.psnr.n:
            _, y = self.psnr.data()
            self.psnr_view.setYRange(float(y.min()) - 0.5, float(y.max()) + 0.5, padding=0.05)
        step, best = self._best
        if math.isfinite(best):
            y = math.log10(best) if self.log_y.isChecked() else best
            self.best_marker.setData([step], [y])

    def _mouse_moved(self, pos) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        if not self.plot.sceneBoundingRect().contains(pos) or not self.raw.n:
            return
        x = vb.mapSceneToView(pos).x()
        xs, ys = self.raw.data()
        i = int(np.clip(np.searchsorted(xs, x), 0, self.raw.n - 1))
        self.vline.setPos(xs[i])
        self.vline.show()
        text = f"step {int(xs[i])} · loss {ys[i]:.5g} · smoothed {self.ema.y[i]:.5g}"
        if self.psnr.n:
            px, py = self.psnr.data()
            j = int(np.clip(np.searchsorted(px, xs[i], side="right") - 1, 0, self.psnr.n - 1))
            text += f" · PSNR {py[j]:.2f} dB (step {int(px[j])})"
        self.readout.setText(text)


class GradNormStrip(QWidget):
    """log10 of each block's gradient norm over time: a heat strip, one row per block."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("GradNormStrip")
        self.setAccessibleName("Gradient norms per block")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(background="w")
        pi = self.plot.getPlotItem()
        pi.setLabel("left", "block")
        pi.setLabel("bottom", "step")
        pi.getViewBox().invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("viridis"))
        pi.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(-4, 1), colorMap=pg.colormap.get("viridis"), label="log10 |grad|",
                                   interactive=False, width=12)
        self.bar.setImageItem(self.image, insert_in=pi)
        lay.addWidget(self.plot)
        self.steps: list[int] = []
        self.rows: list[list[float]] = []
        self._dirty = False
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def clear(self) -> None:
        self.steps, self.rows = [], []
        self.image.clear()

    def add(self, step: int, norms) -> None:
        self.steps.append(step)
        self.rows.append([math.log10(max(n, 1e-12)) for n in norms])
        self._dirty = True

    def matrix(self) -> np.ndarray:
        """(blocks, samples) of log10 norms."""
        width = max((len(r) for r in self.rows), default=0)
        m = np.full((width, len(self.rows)), np.nan, np.float32)
        for j, r in enumerate(self.rows):
            m[:len(r), j] = r
        return m

    def redraw(self) -> None:
        if not self._dirty or not self.rows:
            return
        self._dirty = False
        m = self.matrix()
        lo, hi = np.nanpercentile(m, 2), np.nanpercentile(m, 98)
        self.bar.setLevels((float(lo), float(max(hi, lo + 1e-3))))
        span = max(1, self.steps[-1] - self.steps[0])
        self.image.setImage(np.nan_to_num(m, nan=float(lo)), autoLevels=False)
        self.image.setRect(self.steps[0], 0, span, m.shape[0])
