"""The image pane: what the network does to an image.

Top row: clean · noisy · predicted noise · reconstruction · error · a wipe between any two.
Second row: the classical baselines on the same noisy input. Every pane is labelled with
PSNR/SSIM when the clean image is known, zoom and pan are synced, and the pixel under the
cursor is read out. Below: the predicted noise's histogram against the true noise, the
network's PSNR across noise levels, and the feature maps of the selected block.

Work runs in a thread pool; each request carries a generation number so a result that
arrives after the user moved on (a σ slider dragged fast) is dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSlider, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from denoise_studio.core.baselines import BASELINES
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.images import LoadedImage, load_image, save_image
from denoise_studio.gui.image_jobs import BatchJob, DenoiseJob, FeatureJob, ImageRequest, ImageResult, JobSignals

PANES = ("clean", "noisy", "noise", "reconstruction", "error", "compare")
TITLES = {"clean": "clean", "noisy": "noisy input", "noise": "predicted noise",
          "reconstruction": "reconstruction", "error": "error |rec − clean|", "compare": "wipe A | B",
          "gaussian": "Gaussian filter", "median": "median filter", "nl-means": "non-local means",
          "tv": "total variation", "wavelet": "wavelet (BayesShrink)"}
PICTURES = ("clean", "noisy", "reconstruction", *BASELINES)   # panes a wipe can compare
DEBOUNCE_MS = 80
GRID_COLUMNS = 6   # two rows: the network's six panes, then the five baselines


def _display(a: np.ndarray) -> np.ndarray:
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


def to_qimage(a: np.ndarray) -> QImage:
    """A copy as an 8-bit QImage (bytesPerLine given, so odd widths do not shear)."""
    a = np.ascontiguousarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    h, w = a.shape[:2]
    if a.ndim == 2:
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImagePane(QWidget):
    open_requested = Signal(str)     # File > Open image, or a path given on the command line
    status = Signal(str)             # one line for the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("ImagePane")
        self.setAccessibleName("Image pane")
        self.model_provider = lambda: None    # MainWindow gives the current network
        self.selected_block = -1
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)        # one image at a time; the GUI keeps its core
        self.signals = JobSignals(self)
        self.signals.result.connect(self._on_result)
        self.signals.failed.connect(self._on_failed)
        self.signals.sweep.connect(self._on_sweep)
        self.signals.progress.connect(self._on_progress)
        self.signals.batch_done.connect(self._on_batch_done)
        self.signals.features.connect(self._on_features)
        self.feature_generation = 0
        self.generation = 0
        self.source: LoadedImage | None = None
        self.images: dict[str, np.ndarray] = {}
        self.metrics: dict[str, str] = {}
        self.scores: dict[str, tuple] = {}
        self.busy = False
        self.batch: BatchJob | None = None
        self.batch_summary: dict | None = None
        self.last_error = ""
        self.sigma_used = 0.0
        self._build()
        self.open_requested.connect(self.open_path)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.mode = QComboBox()
        self.mode.setObjectName("NoiseMode")
        self.mode.addItem("add noise σ (clean input, with scores)", "add")
        self.mode.addItem("already noisy (real photo)", "noisy")
        self.mode.currentIndexChanged.connect(lambda _: self._mode_changed())
        bar.addWidget(self.mode)
        self.sigma = QSlider(Qt.Orientation.Horizontal)
        self.sigma.setObjectName("SigmaSlider")
        self.sigma.setAccessibleName("noise level σ")
        self.sigma.setRange(0, 100)
        self.sigma.setValue(25)
        self.sigma.setMinimumWidth(160)
        self.sigma_label = QLabel("σ 25")
        self.sigma_label.setMinimumWidth(110)
        bar.addWidget(self.sigma, 1)
        bar.addWidget(self.sigma_label)
        self.baselines_box = QCheckBox("baselines")
        self.baselines_box.setChecked(True)
        self.baselines_box.setToolTip("Run scikit-image's classical denoisers on the same noisy input")
        self.baselines_box.toggled.connect(lambda _: self.rerun())
        bar.addWidget(self.baselines_box)
        self.ensemble_box = QCheckBox("×8")
        self.ensemble_box.setObjectName("EnsembleBox")
        self.ensemble_box.setToolTip("Self-ensemble: average the network over the 8 flips and quarter turns of the "
                                     "image. 8× slower; about 0.1 dB cleaner (see the README's benchmarks)")
        self.ensemble_box.toggled.connect(lambda _: self.rerun())
        bar.addWidget(self.ensemble_box)
        self.open_button = QPushButton("Open image…")
        self.open_button.clicked.connect(self.open_image_dialog)
        bar.addWidget(self.open_button)
        lay.addLayout(bar)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.rerun)
        self.sigma.valueChanged.connect(self._sigma_moved)

        self.caption = QLabel("Drop images onto the window (or File › Open image) to denoise them with the "
                              "current network; train or open a run first to have one.")
        self.caption.setObjectName("ImageCaption")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)

        split = QSplitter(Qt.Orientation.Vertical)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("#1e1e22")
        self.titles: dict[str, pg.LabelItem] = {}
        self.boxes: dict[str, pg.ViewBox] = {}
        self.items: dict[str, pg.ImageItem] = {}
        first = None
        order = (*PANES, *BASELINES)
        for k, name in enumerate(order):
            row, col = divmod(k, GRID_COLUMNS)
            self.titles[name] = self.view.addLabel(TITLES[name], row=2 * row, col=col, color="#ddd", size="9pt")
            vb = self.view.addViewBox(row=2 * row + 1, col=col, lockAspect=True, invertY=True, enableMenu=False)
            item = pg.ImageItem(axisOrder="row-major")
            vb.addItem(item)
            if first is None:
                first = vb
            else:
                vb.setXLink(first)
                vb.setYLink(first)
            self.boxes[name], self.items[name] = vb, item
        self.items["noise"].setColorMap(pg.colormap.get("CET-D1"))
        self.items["error"].setColorMap(pg.colormap.get("inferno"))
        split.addWidget(self.view)

        tabs = QTabWidget()
        self.hist = pg.PlotWidget(background="w", title="noise histogram")
        self.hist.setObjectName("NoiseHistogram")
        self.hist.addLegend()
        self.hist_pred = self.hist.plot(pen=pg.mkPen("#1f4e9c", width=2), name="predicted", stepMode="center")
        self.hist_true = self.hist.plot(pen=pg.mkPen("#e45756", width=2), name="true", stepMode="center")
        tabs.addTab(self.hist, "Noise histogram")
        self.sweep_plot = pg.PlotWidget(background="w")
        self.sweep_plot.setObjectName("SigmaSweep")
        self.sweep_plot.setLabel("bottom", "σ (0–255)")
        self.sweep_plot.setLabel("left", "PSNR (dB)")
        self.sweep_plot.addLegend()
        self.sweep_net = self.sweep_plot.plot(pen=pg.mkPen("#1f4e9c", width=2), symbol="o", name="network")
        self.sweep_noisy = self.sweep_plot.plot(pen=pg.mkPen("#999", width=1), symbol="x", name="noisy input")
        tabs.addTab(self.sweep_plot, "PSNR vs noise level")
        self.features = pg.ImageView()
        self.features.setObjectName("FeatureMaps")
        self.features.ui.roiBtn.hide()
        self.features.ui.menuBtn.hide()
        tabs.addTab(self.features, "Feature maps")
        self.tabs = tabs
        tabs.currentChanged.connect(lambda _: self.update_features())
        split.addWidget(tabs)
        split.setSizes([640, 130])
        lay.addWidget(split, 1)
        for w in (self.view, self.hist, self.sweep_plot, self.features.ui.graphicsView):
            w.setAcceptDrops(False)
            w.viewport().setAcceptDrops(False)

        low = QHBoxLayout()
        self.pixel_readout = QLabel(" ")
        self.pixel_readout.setObjectName("PixelReadout")
        low.addWidget(self.pixel_readout, 1)
        self.wipe_a, self.wipe_b = QComboBox(), QComboBox()
        for box, default in ((self.wipe_a, "noisy"), (self.wipe_b, "reconstruction")):
            box.addItems(PICTURES)
            box.setCurrentText(default)
            box.currentTextChanged.connect(lambda _: self.update_wipe())
            low.addWidget(box)
        self.wipe = QSlider(Qt.Orientation.Horizontal)
        self.wipe.setObjectName("WipeSlider")
        self.wipe.setRange(0, 100)
        self.wipe.setValue(50)
        self.wipe.setMaximumWidth(120)
        self.wipe.valueChanged.connect(lambda _: self.update_wipe())
        low.addWidget(self.wipe)
        self.save_which = QComboBox()
        self.save_which.addItems(["reconstruction", "noise", "noisy", "clean", "error", *BASELINES])
        low.addWidget(self.save_which)
        self.save_button = QPushButton("Save…")
        self.save_button.clicked.connect(self.save_dialog)
        self.copy_button = QPushButton("Copy")
        self.copy_button.clicked.connect(lambda: self.copy_pane(self.save_which.currentText()))
        low.addWidget(self.save_button)
        low.addWidget(self.copy_button)
        lay.addLayout(low)
        batch = QHBoxLayout()
        self.batch_progress = QProgressBar()
        self.batch_progress.setObjectName("BatchProgress")
        self.cancel_button = QPushButton("Cancel batch")
        self.cancel_button.setObjectName("CancelBatchButton")
        self.cancel_button.clicked.connect(self.cancel_batch)
        batch.addWidget(self.batch_progress, 1)
        batch.addWidget(self.cancel_button)
        self.batch_row = QWidget()
        self.batch_row.setLayout(batch)
        self.batch_row.hide()
        lay.addWidget(self.batch_row)
        self.view.scene().sigMouseMoved.connect(self._mouse_moved)

    # ------------------------------------------------------------------ inputs
    def _mode_changed(self) -> None:
        self.sigma.setEnabled(self.mode.currentData() == "add")
        self._sigma_moved(self.sigma.value())
        self.rerun()

    def _sigma_moved(self, v: int) -> None:
        model = self.model_provider()
        extra = ""
        if model is not None and getattr(model.noise, "kind", "") == "ddpm":
            extra = f" (t {int(model.noise.level_for_sigma(v))})"
        self.sigma_label.setText(f"σ {v}{extra}" if self.mode.currentData() == "add" else "σ estimated")
        self._debounce.start()

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.png *.jpg *.jpeg *.tif *.tiff "
                                              "*.bmp *.webp *.gif)")
        if path:
            self.open_path(path)

    def open_path(self, path) -> bool:
        try:
            self.source = load_image(path)
        except DenoiseError as e:
            self.show_error(str(e))
            return False
        self.last_error = ""
        h, w = self.source.pixels.shape[:2]
        self.caption.setText(f"{Path(path).name}: {w}×{h}, {self.source.bit_depth}-bit"
                             + (", grey" if self.source.grey else "") + (", alpha kept aside" if self.source.alpha
                                                                         is not None else ""))
        self.images = {}
        for item in self.items.values():
            item.clear()
        self.rerun(first=True)
        return True

    def drop(self, paths: list[str]) -> None:
        """One image: show it. Several files or a folder: a batch into a chosen folder."""
        if len(paths) == 1 and not Path(paths[0]).is_dir():
            self.open_path(paths[0])
        else:
            self.run_batch(paths)

    def rerun(self, first: bool = False) -> None:
        if self.source is None:
            return
        self.generation += 1
        req = ImageRequest(self.generation, self.source.pixels, self.source.grey, self.mode.currentData(),
                           float(self.sigma.value()) if self.mode.currentData() == "add" else None,
                           self.model_provider(), self.baselines_box.isChecked(), sweep=True,
                           ensemble=self.ensemble_box.isChecked())
        if req.model is None:
            self.status.emit("No trained network yet: showing the noisy input and the classical baselines. "
                             "Train a network or open a run.")
        self.busy = True
        self.metrics, self.scores = {}, {}
        self._first = first
        self.pool.start(DenoiseJob(req, self.signals))

    # ------------------------------------------------------------------ results
    def _on_result(self, res: ImageResult) -> None:
        if res.generation != self.generation:
            return
        if res.final:
            self.busy = False
            self.update_features()
            return
        self.sigma_used = res.sigma255
        if res.estimated:
            self.sigma_label.setText(f"σ ≈ {res.sigma255:.1f} (estimated)")
        self.metrics.update(res.metrics)
        self.scores.update(res.scores)
        self.show_result(res.images, metrics=self.metrics, partial=True)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self.busy = False
            self.show_error(f"Denoising failed: {message}")

    def _on_sweep(self, generation: int, data) -> None:
        if generation != self.generation:
            return
        sigmas, noisy, net = data
        self.sweep_noisy.setData(sigmas, noisy)
        self.sweep_net.setData(sigmas, net)

    def show_result(self, images: dict, caption: str = "", metrics: dict | None = None,
                    partial: bool = False) -> None:
        """Show arrays by pane name (noisy, noise, reconstruction, clean, baselines …)."""
        incoming = {k: _display(np.asarray(v, dtype=np.float32)) for k, v in images.items()}
        if not partial:
            self.images = {}
            for item in self.items.values():
                item.clear()
        first_time = not self.images
        self.images.update(incoming)
        if "clean" in self.images and "reconstruction" in self.images:
            err = np.abs(self.images["reconstruction"] - self.images["clean"])
            self.images["error"] = err.mean(axis=2) if err.ndim == 3 else err
        for name in self.items:
            if name == "compare":
                continue
            label = TITLES[name]
            if name in self.images:
                self._paint(name)
                if metrics and name in metrics:
                    label += f"<br>{metrics[name]}"
            elif name in ("clean", "error"):
                label += " (no reference)"
            self.titles[name].setText(label)
        self.update_wipe()
        self.update_histogram()
        if caption:
            self.caption.setText(caption)
        if first_time or getattr(self, "_first", False):
            self._first = False
            self.boxes["noisy"].autoRange(padding=0)

    def _paint(self, name: str) -> None:
        a, item = self.images[name], self.items[name]
        if name == "noise":
            a = a.mean(axis=2) if a.ndim == 3 else a
            s = max(3 * float(np.std(a)), 1e-6)
            item.setImage(a, levels=(-s, s))
        elif name == "error":
            item.setImage(a, levels=(0, max(float(np.percentile(a, 99.5)), 1e-6)))
        else:
            item.setImage(np.clip(a, 0, 1), levels=(0, 1))

    def update_wipe(self) -> None:
        a, b = self.images.get(self.wipe_a.currentText()), self.images.get(self.wipe_b.currentText())
        if a is None or b is None or a.shape != b.shape:
            self.items["compare"].clear()
            return
        cut = int(a.shape[1] * self.wipe.value() / 100)
        out = b.copy()
        out[:, :cut] = a[:, :cut]
        if 0 < cut < out.shape[1]:
            out[:, cut] = 1.0
        self.images["compare"] = out
        self.items["compare"].setImage(np.clip(out, 0, 1), levels=(0, 1))
        self.titles["compare"].setText(f"wipe<br>{self.wipe_a.currentText()} | {self.wipe_b.currentText()}")

    def update_histogram(self) -> None:
        pred, true = self.images.get("noise"), self.images.get("true_noise")
        if pred is None:
            self.hist_pred.setData([], [])
            self.hist_true.setData([], [])
            return
        span = 4 * max(float(np.std(true if true is not None else pred)), 1e-4)
        bins = np.linspace(-span, span, 81)
        hp, _ = np.histogram(pred, bins=bins, density=True)
        self.hist_pred.setData(bins * 255, hp)
        title = f"predicted: mean {pred.mean() * 255:+.2f}, std {pred.std() * 255:.2f}"
        if true is not None:
            ht, _ = np.histogram(true, bins=bins, density=True)
            self.hist_true.setData(bins * 255, ht)
            title += f" · true: mean {true.mean() * 255:+.2f}, std {true.std() * 255:.2f} (0–255 scale)"
        self.hist.setTitle(title)

    def update_features(self) -> None:
        if self.tabs.currentWidget() is not self.features:
            return
        model = self.model_provider()
        if model is None or self.source is None or not 0 <= self.selected_block < len(model.model.blocks):
            self.features.clear()
            return
        self.feature_generation += 1
        self.pool.start(FeatureJob(self.feature_generation, model, self.source.pixels, self.selected_block,
                                   float(self.sigma.value()), self.signals))

    def _on_features(self, generation: int, grid) -> None:
        if generation != self.feature_generation:
            return
        if isinstance(grid, str):
            self.status.emit(f"No feature maps for block {self.selected_block}: {grid}")
            return
        self.features.setImage(grid.T, autoLevels=False, levels=(0, 1))

    def set_selected_block(self, index: int) -> None:
        self.selected_block = index
        self.update_features()

    # ------------------------------------------------------------------ batch
    def run_batch(self, paths: list[str], out_dir=None) -> bool:
        model = self.model_provider()
        if model is None:
            self.show_error("Batch denoising needs a trained network: train one or open a run first.")
            return False
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the denoised images")
            if not out_dir:
                return False
        self.batch_summary = None
        self.batch = BatchJob(paths, Path(out_dir), model, self.mode.currentData(), float(self.sigma.value()),
                              self.signals, ensemble=self.ensemble_box.isChecked())
        self.batch_row.show()
        self.batch_progress.setValue(0)
        self.pool.start(self.batch)
        return True

    def cancel_batch(self) -> None:
        if self.batch is not None:
            self.batch.cancel.set()

    def _on_progress(self, done: int, total: int, name: str) -> None:
        self.batch_progress.setMaximum(max(total, 1))
        self.batch_progress.setValue(done)
        self.batch_progress.setFormat(f"{done}/{total} {name}")

    def _on_batch_done(self, summary: dict) -> None:
        self.batch_summary = summary
        self.batch = None
        self.batch_row.hide()
        text = f"Batch: {len(summary['written'])} of {summary['total']} image(s) written"
        if summary["cancelled"]:
            text += " (cancelled)"
        if summary["errors"]:
            text += f"; {len(summary['errors'])} skipped: " + "; ".join(summary["errors"][:3])
            self.last_error = summary["errors"][0]
        self.caption.setText(text)
        self.status.emit(text)

    # ------------------------------------------------------------------ output
    def save_pane(self, name: str, path) -> None:
        a = self.images.get(name)
        if a is None:
            raise DenoiseError(f"the {name} pane is empty.")
        if name in ("noise", "true_noise"):
            s = max(3 * float(np.std(a)), 1e-6)
            a = np.clip(0.5 + 0.5 * a / s, 0, 1)
        elif name == "error":
            a = np.clip(a / max(float(np.percentile(a, 99.5)), 1e-6), 0, 1)
        deep = self.source is not None and self.source.bit_depth == 16
        save_image(path, a, 16 if deep else 8)

    def save_dialog(self) -> None:
        name = self.save_which.currentText()
        path, _ = QFileDialog.getSaveFileName(self, f"Save {name}", f"{name}.png", "PNG (*.png);;TIFF (*.tif)")
        if path:
            try:
                self.save_pane(name, path)
                self.status.emit(f"Saved {path}")
            except (DenoiseError, OSError) as e:
                self.show_error(f"Could not save {path}: {e}")

    def copy_pane(self, name: str) -> bool:
        a = self.images.get(name)
        if a is None:
            return False
        QGuiApplication.clipboard().setImage(to_qimage(a if name not in ("noise", "error") else
                                                       np.clip(0.5 + a / max(6 * float(np.std(a)), 1e-6), 0, 1)))
        return True

    def show_error(self, text: str) -> None:
        self.last_error = text
        self.caption.setText(text)
        self.status.emit(text)

    def _mouse_moved(self, pos) -> None:
        for name, vb in self.boxes.items():
            if name in self.images and vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                x, y = int(p.x()), int(p.y())
                h, w = self.images[name].shape[:2]
                if 0 <= x < w and 0 <= y < h:
                    parts = [f"{n} {np.round(self.images[n][y, x], 3).tolist()}"
                             for n in ("clean", "noisy", "noise", "reconstruction") if n in self.images]
                    self.pixel_readout.setText(f"x {x}, y {y}: " + " · ".join(parts))
                return
