"""The image pane: what the network does to an image.

Three large pictures side by side: the noisy input, the predicted noise and the
reconstruction, scored with PSNR/SSIM when the clean image is known. One click away (the
selector above them): clean · reconstruction · error, a wipe between any two pictures, and
the classical baselines. Below, behind a splitter: the predicted noise's histogram against
the true noise, the network's PSNR across noise levels, and the feature maps of the
selected block.

Zoom and pan are one shared state — a centre in image pixels and a scale in screen pixels
per image pixel, or "fit" — applied to every view for its own size. Views are never linked
to each other: linked ViewBoxes of different shapes with a locked aspect each widen the
shared range to keep their own aspect, and every re-run fed that back (×55 per σ step).

The network runs first in its own thread; the baselines stream in after it from a second
one, fastest first. Each request carries a generation number: a result that arrives after
the user moved on is dropped, and a stale job stops at its next stage or network pass.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from denoise_studio.core import presets
from denoise_studio.core.baselines import BASELINES
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.images import LoadedImage, load_image, save_image
from denoise_studio.gui.image_jobs import (
    BASELINE_ORDER,
    BaselineJob,
    BatchJob,
    DenoiseJob,
    FeatureJob,
    ImageRequest,
    ImageResult,
    JobSignals,
    self_supervised_objective,
)

PANES = ("clean", "noisy", "noise", "reconstruction", "error", "compare")
TITLES = {"clean": "clean", "noisy": "noisy input", "noise": "predicted noise",
          "reconstruction": "reconstruction", "error": "error |rec − clean|", "compare": "wipe A | B",
          "gaussian": "Gaussian filter", "median": "median filter", "nl-means": "non-local means",
          "tv": "total variation", "wavelet": "wavelet (BayesShrink)"}
PICTURES = ("clean", "noisy", "reconstruction", *BASELINES)   # panes a wipe can compare
MAIN = ("noisy", "noise", "reconstruction")                   # the three pictures the app is about
# What the selector shows: key, tab text, panes (at most three to a row).
PAGES = (("network", "Noisy · noise · reconstruction", MAIN),
         ("reference", "Clean · error", ("clean", "reconstruction", "error")),
         ("wipe", "Wipe A | B", ("compare",)),
         ("baselines", "Baselines", ("reconstruction", *BASELINE_ORDER)))
DEBOUNCE_MS = 80


def _display(a: np.ndarray) -> np.ndarray:
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


def to_qimage(a: np.ndarray) -> QImage:
    """A copy as an 8-bit QImage (bytesPerLine given, so odd widths do not shear)."""
    a = np.ascontiguousarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    h, w = a.shape[:2]
    if a.ndim == 2:
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def describe_network(lm) -> str:
    """Which network the pane uses, in words: the shipped one, or a run's checkpoint and step."""
    if lm is None:
        return "network: none — train one or open a run"
    path = lm.path
    if path is not None and presets.pretrained_path().is_file() and path.resolve() == \
            presets.pretrained_path().resolve():
        return f"network: pretrained {lm.spec.name} (shipped)"
    if path is None:
        return f"network: {lm.spec.name} (untrained)"
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.name
    step = (lm.meta or {}).get("step")
    text = f"network: run {run}" + (f", step {int(step):,}" if step is not None else "")
    objective = self_supervised_objective(lm)
    if objective:
        text += f" ({objective}, trained on noisy images alone)"
    return text


class ImageCell(QWidget):
    """A title over one picture: a ViewBox alone in its own GraphicsView, so its size is the
    cell's and nothing else moves it."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setObjectName(f"ImageCell-{name}")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(1)
        self.title = QLabel(TITLES[name])
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setStyleSheet("color: #ddd;")
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        lay.addWidget(self.title)
        self.view = pg.GraphicsView(background="#1e1e22")
        self.view.setMinimumSize(60, 60)
        self.view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.box.disableAutoRange()   # the pane decides the range; an image change must not
        self.view.setCentralItem(self.box)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.item)
        self.view.setAcceptDrops(False)
        self.view.viewport().setAcceptDrops(False)
        lay.addWidget(self.view, 1)
        self.setStyleSheet("background: #1e1e22;")


class ImagePane(QWidget):
    open_requested = Signal(str)     # File > Open image, or a path given on the command line
    status = Signal(str)             # one line for the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("ImagePane")
        self.setAccessibleName("Image pane")
        self.model_provider = lambda: None    # MainWindow gives the current network
        # For "already noisy": the network trained for the user's own noisy images (the newest run's,
        # when it was trained self-supervised), else None and the current network serves.
        self.noisy_model_provider = lambda: None
        self.selected_block = -1
        # The network and the rest each get a thread: a baseline still running never delays
        # the network's answer to the next σ.
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.extra_pool = QThreadPool(self)
        self.extra_pool.setMaxThreadCount(1)
        self.signals = JobSignals(self)
        self.signals.result.connect(self._on_result)
        self.signals.failed.connect(self._on_failed)
        self.signals.sweep.connect(self._on_sweep)
        self.signals.progress.connect(self._on_progress)
        self.signals.batch_done.connect(self._on_batch_done)
        self.signals.features.connect(self._on_features)
        self.signals.ensemble_progress.connect(self._on_ensemble_progress)
        self.signals.cancelled.connect(self._on_ensemble_cancelled)
        self.feature_generation = 0
        self.generation = 0
        self.source: LoadedImage | None = None
        self.images: dict[str, np.ndarray] = {}
        self.metrics: dict[str, str] = {}
        self.scores: dict[str, tuple] = {}
        self.stats: dict | None = None
        self._pending: set[str] = set()
        self._req: ImageRequest | None = None
        self._sweep_key = None
        self.batch: BatchJob | None = None
        self.zoom: tuple[float, float, float] | None = None   # (cx, cy, screen px per image px); None: fit
        self._shape: tuple[int, int] | None = None
        self._syncing = False
        self._build()
        self.open_requested.connect(self.open_path)

    @property
    def busy(self) -> bool:
        """True until the network, the ×8 ensemble and the baselines of the latest request are in."""
        return bool(self._pending)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        bar = QHBoxLayout()
        self.mode = QComboBox()
        self.mode.setObjectName("NoiseMode")
        self.mode.setAccessibleName("noise mode")
        self.mode.addItem("add noise σ (clean input, with scores)", "add")
        self.mode.addItem("already noisy (real photo)", "noisy")
        self.mode.currentIndexChanged.connect(lambda _: self._mode_changed())
        bar.addWidget(self.mode)
        self.sigma = QSlider(Qt.Orientation.Horizontal)
        self.sigma.setObjectName("SigmaSlider")
        self.sigma.setAccessibleName("noise level σ")
        self.sigma.setRange(0, 100)
        self.sigma.setValue(25)
        self.sigma.setMinimumWidth(120)
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

        # One line each, never wrapping: a longer caption must not shrink the pictures.
        self.caption = QLabel("Drop an image onto the window (or File › Open image) to denoise it.")
        self.caption.setObjectName("ImageCaption")
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.network_label = QLabel("")
        self.network_label.setObjectName("NetworkLabel")
        self.network_label.setStyleSheet("color: #555;")
        self.network_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        row = QHBoxLayout()
        row.addWidget(self.caption, 3)
        row.addWidget(self.network_label, 2)
        self.network_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        lay.addLayout(row)
        views = QHBoxLayout()
        self.selector = QTabBar()
        self.selector.setObjectName("PaneSelector")
        self.selector.setAccessibleName("which pictures to show")
        self.selector.setDrawBase(False)
        self.selector.setExpanding(False)
        for _, text, _names in PAGES:
            self.selector.addTab(text)
        self.selector.currentChanged.connect(self._page_changed)
        views.addWidget(self.selector)
        views.addStretch(1)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setObjectName("FitButton")
        self.fit_button.setToolTip("Fit the whole picture into each view (F)")
        self.fit_button.clicked.connect(self.fit)
        self.one_button = QPushButton("1:1")
        self.one_button.setObjectName("OneToOneButton")
        self.one_button.setToolTip("One screen pixel per image pixel (1); wheel to zoom, drag to pan")
        self.one_button.clicked.connect(self.one_to_one)
        for b in (self.fit_button, self.one_button):
            b.setMaximumWidth(56)
            views.addWidget(b)
        lay.addLayout(views)
        for key, slot in (("F", self.fit), ("1", self.one_to_one)):
            sc = QShortcut(QKeySequence(key), self, slot)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("ImageSplitter")
        split.setChildrenCollapsible(False)
        self.grid_host = QWidget()
        self.grid_host.setStyleSheet("background: #1e1e22;")
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(3)
        self.cells: dict[str, ImageCell] = {}
        for name in (*PANES, *BASELINES):
            cell = ImageCell(name)
            cell.hide()
            cell.box.sigRangeChangedManually.connect(partial(self._user_moved, name))
            cell.box.sigResized.connect(self._apply_view)
            cell.view.scene().sigMouseMoved.connect(partial(self._mouse_moved, name))
            self.cells[name] = cell
        self.titles = {n: c.title for n, c in self.cells.items()}
        self.boxes = {n: c.box for n, c in self.cells.items()}
        self.items = {n: c.item for n, c in self.cells.items()}
        self.items["noise"].setColorMap(pg.colormap.get("CET-D1"))
        self.items["error"].setColorMap(pg.colormap.get("inferno"))
        split.addWidget(self.grid_host)

        tabs = QTabWidget()
        tabs.setMinimumHeight(150)   # readable axes and legend; below that the splitter stops
        self.hist = pg.PlotWidget(background="w")
        self.hist.setObjectName("NoiseHistogram")
        self.hist.setLabel("bottom", "noise value (0–255 scale)")
        self.hist.setLabel("left", "density")
        self.hist_legend = self.hist.addLegend(offset=(-10, 10))
        self.hist_pred = self.hist.plot(pen=pg.mkPen("#1f4e9c", width=2), name="predicted", stepMode="center")
        self.hist_true = self.hist.plot(pen=pg.mkPen("#e45756", width=2), name="true", stepMode="center")
        tabs.addTab(self.hist, "Noise histogram")
        self.sweep_plot = pg.PlotWidget(background="w")
        self.sweep_plot.setObjectName("SigmaSweep")
        self.sweep_plot.setLabel("bottom", "σ (0–255)")
        self.sweep_plot.setLabel("left", "PSNR (dB)")
        self.sweep_plot.addLegend(offset=(-10, 10))
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
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 400])
        self.splitter = split
        lay.addWidget(split, 1)
        for w in (self.hist, self.sweep_plot, self.features.ui.graphicsView):
            w.setAcceptDrops(False)
            w.viewport().setAcceptDrops(False)

        low = QHBoxLayout()
        self.pixel_readout = QLabel(" ")
        self.pixel_readout.setObjectName("PixelReadout")
        self.pixel_readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # Progress (a batch, or ×8) takes the readout's place: no row appears, nothing moves.
        self.readout_stack = QStackedWidget()
        self.readout_stack.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.readout_stack.addWidget(self.pixel_readout)
        low.addWidget(self.readout_stack, 1)
        low.addWidget(QLabel("Wipe:"))
        self.wipe_a, self.wipe_b = QComboBox(), QComboBox()
        for box, default, side in ((self.wipe_a, "noisy", "left"), (self.wipe_b, "reconstruction", "right")):
            box.addItems(PICTURES)
            box.setCurrentText(default)
            box.setToolTip(f"The wipe's {side} side")
            box.setAccessibleName(f"wipe {side} side")
            box.currentTextChanged.connect(lambda _: self._wipe_changed())
            low.addWidget(box)
            if side == "left":
                low.addWidget(QLabel("|"))
        self.wipe = QSlider(Qt.Orientation.Horizontal)
        self.wipe.setObjectName("WipeSlider")
        self.wipe.setAccessibleName("wipe position")
        self.wipe.setToolTip("Where the wipe cuts between its left and right picture")
        self.wipe.setRange(0, 100)
        self.wipe.setValue(50)
        self.wipe.setMaximumWidth(110)
        self.wipe.valueChanged.connect(lambda _: self._wipe_changed())
        low.addWidget(self.wipe)
        low.addSpacing(12)
        low.addWidget(QLabel("Save or copy:"))
        self.save_which = QComboBox()
        self.save_which.setAccessibleName("picture to save or copy")
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
        batch.setContentsMargins(0, 0, 0, 0)
        self.batch_progress = QProgressBar()
        self.batch_progress.setObjectName("BatchProgress")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("CancelBatchButton")
        self.cancel_button.clicked.connect(self.cancel_batch)
        batch.addWidget(self.batch_progress, 1)
        batch.addWidget(self.cancel_button)
        self.batch_row = QWidget()
        self.batch_row.setLayout(batch)
        self.readout_stack.addWidget(self.batch_row)
        self.page = "network"
        self._place_cells()
        self._update_selector()
        self.update_histogram()   # no picture yet: no true noise in the legend either

    # ------------------------------------------------------------------ pages and the view
    def _page_names(self, key: str | None = None) -> tuple:
        return next(names for k, _, names in PAGES if k == (key or self.page))

    def _place_cells(self) -> None:
        for cell in self.cells.values():
            self.grid.removeWidget(cell)
            cell.hide()
        names = self._page_names()
        for k, name in enumerate(names):
            self.grid.addWidget(self.cells[name], k // 3, k % 3)
            self.cells[name].show()
        for i in range(3):
            self.grid.setColumnStretch(i, 1 if i < min(3, len(names)) else 0)
            self.grid.setRowStretch(i, 1 if i <= (len(names) - 1) // 3 else 0)
        if self.page == "wipe":
            self.update_wipe()
        self._apply_view()

    def show_page(self, key: str) -> None:
        """Show one set of pictures: network, reference, wipe or baselines."""
        index = [k for k, _, _ in PAGES].index(key)
        if self.selector.currentIndex() != index:
            self.selector.setCurrentIndex(index)   # → _page_changed
        else:
            self._page_changed(index)

    def _page_changed(self, index: int) -> None:
        self.page = PAGES[index][0]
        self._place_cells()

    def _update_selector(self) -> None:
        """Offer only what has something to show; never an empty pane."""
        have = {"network": True, "reference": "clean" in self.images,
                "wipe": sum(p in self.images for p in PICTURES) >= 2,
                "baselines": any(b in self.images for b in BASELINES)}
        if not have[self.page]:
            self.show_page("network")   # first: a disabled current tab would move to its neighbour
        for i, (key, _, _) in enumerate(PAGES):
            self.selector.setTabEnabled(i, bool(have[key]))

    def fit(self) -> None:
        """Fit the whole picture into the views (the default, and key F)."""
        self.zoom = None
        self._apply_view()

    def one_to_one(self) -> None:
        """One screen pixel per image pixel, about the centre now shown (key 1)."""
        if self._shape is None:
            return
        cx, cy, _ = self._view_state()
        self.zoom = (cx, cy, 1.0)
        self._apply_view()

    def _visible_boxes(self) -> list:
        return [self.boxes[n] for n in self._page_names() if self.boxes[n].width() > 1 and
                self.boxes[n].height() > 1]

    def _view_state(self) -> tuple[float, float, float]:
        h, w = self._shape
        if self.zoom is not None:
            return self.zoom
        boxes = self._visible_boxes()
        s = min((min(b.width() / w, b.height() / h) for b in boxes), default=1.0)
        return w / 2, h / 2, s

    def _apply_view(self, *_) -> None:
        """Every visible view shows the same centre at the same scale, each for its own size."""
        if self._shape is None or self._syncing:
            return
        cx, cy, s = self._view_state()
        self._syncing = True
        try:
            for b in self._visible_boxes():
                hw, hh = b.width() / (2 * s), b.height() / (2 * s)
                b.setRange(xRange=(cx - hw, cx + hw), yRange=(cy - hh, cy + hh), padding=0)
        finally:
            self._syncing = False

    def _user_moved(self, name: str, *_) -> None:
        """A wheel or drag in one view: it becomes the shared state, and the others follow."""
        if self._syncing or self._shape is None:
            return
        b = self.boxes[name]
        (x0, x1), (y0, y1) = b.viewRange()
        if x1 <= x0 or b.width() <= 1:
            return
        self.zoom = ((x0 + x1) / 2, (y0 + y1) / 2, b.width() / (x1 - x0))
        self._apply_view()

    def picture_rect(self, name: str):
        """(drawn picture, its view) in widget pixels of the view: what the user sees."""
        item, box = self.items[name], self.boxes[name]
        return item.mapRectToScene(item.boundingRect()), box.sceneBoundingRect()

    # ------------------------------------------------------------------ inputs
    def _mode_changed(self) -> None:
        """What only a known clean image gives (clean, error, true noise, scores) goes at once."""
        self.sigma.setEnabled(self.mode.currentData() == "add")
        for name in ("clean", "error", "true_noise", "compare"):
            self.images.pop(name, None)
        self.metrics, self.scores = {}, {}
        self.sweep_net.setData([], [])
        self.sweep_noisy.setData([], [])
        self._sweep_key = None
        self._refresh()
        self._sigma_moved(self.sigma.value())
        self._debounce.stop()
        self.rerun()

    def network(self):
        """The network the pane uses now: in "already noisy" mode the one trained self-supervised on
        the user's noisy images when there is one, otherwise the current network."""
        if self.mode.currentData() == "noisy":
            model = self.noisy_model_provider()
            if model is not None:
                return model
        return self.model_provider()

    def _sigma_moved(self, v: int) -> None:
        model = self.network()
        extra = ""
        if model is not None and model.noise.has_timesteps:
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
        h, w = self.source.pixels.shape[:2]
        self.caption.setText(f"{Path(path).name}: {w}×{h}, {self.source.bit_depth}-bit"
                             + (", grey" if self.source.grey else "") + (", alpha kept aside" if self.source.alpha
                                                                         is not None else ""))
        self.images, self.metrics, self.scores, self.stats = {}, {}, {}, None
        for item in self.items.values():
            item.clear()
        self._sweep_key = None
        self.rerun(first=True)
        return True

    def drop(self, paths: list[str]) -> None:
        """One image: show it. Several files or a folder: a batch into a chosen folder."""
        if len(paths) == 1 and not Path(paths[0]).is_dir():
            self.open_path(paths[0])
        else:
            self.run_batch(paths)

    def rerun(self, first: bool = False) -> None:
        """Denoise the current image again with the current settings (and network)."""
        if self.source is None:
            return
        self._debounce.stop()
        if first:
            self.zoom = None
        self.generation += 1
        gen = self.generation
        model = self.network()
        self.network_label.setText(describe_network(model))
        req = ImageRequest(gen, self.source.pixels, self.source.grey, self.mode.currentData(),
                           float(self.sigma.value()) if self.mode.currentData() == "add" else None,
                           model, self.baselines_box.isChecked(), sweep=True,
                           ensemble=self.ensemble_box.isChecked(), live=lambda: self.generation == gen)
        if model is None:
            self.status.emit("No network yet: showing the noisy input and the classical baselines. "
                             "Train a network or open a run.")
        self._req = req
        self._pending = {"network", "baseline"}
        self.pool.start(DenoiseJob(req, self.signals))

    # ------------------------------------------------------------------ results
    def _on_result(self, res: ImageResult) -> None:
        if res.generation != self.generation:
            return
        if res.final:
            self._pending.discard(res.stage)
            if res.stage == "network" and not (self.batch is not None):
                self._show_progress(False)
            if not self._pending:
                self.update_features()
            return
        if res.estimated:
            self.sigma_label.setText(f"σ ≈ {res.sigma255:.1f} (estimated)")
        if res.stage == "network":
            # A new σ or mode: everything is replaced; baselines stream in again after it.
            self.metrics, self.scores = dict(res.metrics), dict(res.scores)
            self.show_result(res.images, metrics=self.metrics, _keep_view=True)
            req = self._req
            key = (id(self.source), id(req.model))
            self.extra_pool.start(BaselineJob(req, res.noisy_chw, res.clean_chw, res.sigma255, res.estimated,
                                              self.signals, sweep=key != self._sweep_key))
            return
        self.metrics.update(res.metrics)
        self.scores.update(res.scores)
        self.show_result(res.images, metrics=self.metrics, partial=True)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self._pending.clear()
            self._show_progress(False)
            self.show_error(f"Denoising failed: {message}")

    def _on_sweep(self, generation: int, data) -> None:
        if generation != self.generation:
            return
        self._sweep_key = (id(self.source), id(self._req.model)) if self._req else None
        sigmas, noisy, net = data
        self.sweep_noisy.setData(sigmas, noisy)
        self.sweep_net.setData(sigmas, net)

    def _show_progress(self, on: bool) -> None:
        self.readout_stack.setCurrentIndex(1 if on else 0)

    def _on_ensemble_progress(self, generation: int, done: int, total: int) -> None:
        if generation != self.generation or self.batch is not None:
            return
        self._show_progress(done < total)
        self.batch_progress.setMaximum(max(total, 1))
        self.batch_progress.setValue(done)
        self.batch_progress.setFormat(f"×8 self-ensemble: network pass {done} of {total}")

    def _on_ensemble_cancelled(self, generation: int) -> None:
        if generation != self.generation:
            return
        self._show_progress(False)
        self.ensemble_box.blockSignals(True)   # the plain result is already shown: no re-run
        self.ensemble_box.setChecked(False)
        self.ensemble_box.blockSignals(False)
        self.status.emit("×8 self-ensemble cancelled: showing the plain network's result.")

    def show_result(self, images: dict, caption: str = "", metrics: dict | None = None,
                    partial: bool = False, stats: dict | None = None, _keep_view: bool = False) -> None:
        """Show arrays by pane name (noisy, noise, reconstruction, clean, baselines …).
        stats: numbers measured where the arrays were made ("noise_std", "true_noise_std", "psnr",
        "noisy_psnr", 0–255 scale); shown instead of statistics of arrays that may have been
        rescaled for display (a run's saved preview PNG)."""
        incoming = {k: _display(np.asarray(v, dtype=np.float32)) for k, v in images.items() if v is not None}
        if not partial:
            self.images = {}
            self.stats = stats
            for item in self.items.values():
                item.clear()
            if not _keep_view:   # someone else's pictures (a training preview): not the user's image
                self.network_label.setText("")
        self.images.update(incoming)
        if metrics is not None and not partial and metrics is not self.metrics:
            self.metrics = dict(metrics)
        if "clean" in self.images and "reconstruction" in self.images:
            err = np.abs(self.images["reconstruction"] - self.images["clean"])
            self.images["error"] = err.mean(axis=2) if err.ndim == 3 else err
        shown = next((self.images[n] for n in ("noisy", "reconstruction") if n in self.images), None)
        shape = None if shown is None else shown.shape[:2]
        if shape != self._shape:   # another picture size: the user's zoom no longer means anything
            self.zoom, self._shape = None, shape
        if caption:
            self.caption.setText(caption)
        self._refresh(metrics if metrics is not None else self.metrics)

    def _refresh(self, metrics: dict | None = None) -> None:
        metrics = self.metrics if metrics is None else metrics
        for name, item in self.items.items():
            if name == "compare":
                continue
            label = TITLES[name]
            if name in self.images:
                self._paint(name)
                if name in metrics:
                    label += f" — {metrics[name]}"
            else:
                item.clear()
                if name in ("clean", "error"):
                    label += " (no reference)"
                elif name in BASELINES and self.busy and self.baselines_box.isChecked():
                    label += " (computing…)"
            self.titles[name].setText(label)
        self.update_wipe()
        self.update_histogram()
        self._update_selector()
        self._apply_view()

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

    def _wipe_changed(self) -> None:
        self.update_wipe()
        if self.page != "wipe" and "compare" in self.images:
            self.show_page("wipe")   # moving the wipe's controls means: show me the wipe

    def update_wipe(self) -> None:
        a, b = self.images.get(self.wipe_a.currentText()), self.images.get(self.wipe_b.currentText())
        if a is None or b is None or a.shape != b.shape:
            self.images.pop("compare", None)
            self.items["compare"].clear()
            self.titles["compare"].setText(f"wipe {self.wipe_a.currentText()} | {self.wipe_b.currentText()}: "
                                           "one side has no picture yet")
            return
        cut = int(a.shape[1] * self.wipe.value() / 100)
        out = b.copy()
        out[:, :cut] = a[:, :cut]
        if 0 < cut < out.shape[1]:
            out[:, cut] = 1.0
        self.images["compare"] = out
        self.items["compare"].setImage(np.clip(out, 0, 1), levels=(0, 1))
        self.titles["compare"].setText(f"wipe: {self.wipe_a.currentText()} | {self.wipe_b.currentText()}")

    def _legend_true(self, shown: bool) -> None:
        """The legend names the true noise only while its curve is drawn (none for a real photo)."""
        listed = any(sample.item is self.hist_true for sample, _ in self.hist_legend.items)
        if shown and not listed:
            self.hist_legend.addItem(self.hist_true, "true")
        elif listed and not shown:
            self.hist_legend.removeItem(self.hist_true)

    def update_histogram(self) -> None:
        pred, true = self.images.get("noise"), self.images.get("true_noise")
        self._legend_true(pred is not None and true is not None)
        if pred is None:
            self.hist_pred.setData([], [])
            self.hist_true.setData([], [])
            return
        stats = self.stats or {}
        if stats and true is None:
            # A saved preview: its noise was rescaled for the PNG, so its shape says nothing;
            # the numbers measured when it was made do.
            self.hist_pred.setData([], [])
            self.hist_true.setData([], [])
        else:
            span = 4 * max(float(np.std(true if true is not None else pred)), 1e-4)
            bins = np.linspace(-span, span, 81)
            hp, _ = np.histogram(pred, bins=bins, density=True)
            self.hist_pred.setData(bins * 255, hp)
            if true is not None:
                ht, _ = np.histogram(true, bins=bins, density=True)
                self.hist_true.setData(bins * 255, ht)
            else:
                self.hist_true.setData([], [])
        pred_std = stats.get("noise_std", None if stats and true is None else float(pred.std()) * 255)
        true_std = stats.get("true_noise_std", None if true is None else float(true.std()) * 255)
        parts = [] if pred_std is None else [f"predicted noise std {pred_std:.2f}"]
        if true_std is not None:
            parts.append(f"true std {true_std:.2f}")
        if "psnr" in stats:
            parts.append(f"reconstruction {stats['psnr']:.2f} dB" + (f" (noisy {stats['noisy_psnr']:.2f} dB)"
                                                                     if "noisy_psnr" in stats else ""))
        self.hist.setTitle(" · ".join(parts) + (" (0–255 scale)" if parts else ""), size="9pt")

    def update_features(self) -> None:
        if self.tabs.currentWidget() is not self.features:
            return
        model = self.network()
        if model is None or self.source is None or not 0 <= self.selected_block < len(model.model.blocks):
            self.features.clear()
            return
        self.feature_generation += 1
        self.extra_pool.start(FeatureJob(self.feature_generation, model, self.source.pixels, self.selected_block,
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
        model = self.network()
        if model is None:
            self.show_error("Batch denoising needs a trained network: train one or open a run first.")
            return False
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "Folder for the denoised images")
            if not out_dir:
                return False
        self.batch = BatchJob(paths, Path(out_dir), model, self.mode.currentData(), float(self.sigma.value()),
                              self.signals, ensemble=self.ensemble_box.isChecked())
        self._show_progress(True)
        self.batch_progress.setValue(0)
        self.pool.start(self.batch)
        return True

    def cancel_batch(self) -> None:
        """The Cancel button: the running batch, else the running ×8 self-ensemble."""
        if self.batch is not None:
            self.batch.cancel.set()
        elif self._req is not None:
            self._req.cancel.set()

    def _on_progress(self, done: int, total: int, name: str) -> None:
        self.batch_progress.setMaximum(max(total, 1))
        self.batch_progress.setValue(done)
        self.batch_progress.setFormat(f"{done}/{total} {name}")

    def _on_batch_done(self, summary: dict) -> None:
        self.batch = None
        self._show_progress(False)
        text = f"Batch: {len(summary['written'])} of {summary['total']} image(s) written"
        if summary["cancelled"]:
            text += " (cancelled)"
        if summary["errors"]:
            text += f"; {len(summary['errors'])} skipped: " + "; ".join(summary["errors"][:3])
        self.caption.setText(text)
        self.status.emit(text)

    # ------------------------------------------------------------------ output
    def pane_picture(self, name: str) -> np.ndarray | None:
        """The pane `name` as a picture in [0, 1], as Save and Copy both write it (None: the pane is
        empty): noise mid-grey at 0 and ±3σ at the ends, the error scaled to its 99.5th percentile."""
        a = self.images.get(name)
        if a is None:
            return None
        if name in ("noise", "true_noise"):
            s = max(3 * float(np.std(a)), 1e-6)
            return np.clip(0.5 + 0.5 * a / s, 0, 1)
        if name == "error":
            return np.clip(a / max(float(np.percentile(a, 99.5)), 1e-6), 0, 1)
        return a

    def save_pane(self, name: str, path) -> None:
        a = self.pane_picture(name)
        if a is None:
            raise DenoiseError(f"the {name} pane is empty.")
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
        a = self.pane_picture(name)
        if a is None:
            return False
        QGuiApplication.clipboard().setImage(to_qimage(a))
        return True

    def show_error(self, text: str) -> None:
        self.caption.setText(text)
        self.status.emit(text)

    def _mouse_moved(self, name: str, pos) -> None:
        vb = self.boxes[name]
        if name not in self.images or not vb.sceneBoundingRect().contains(pos):
            return
        p = vb.mapSceneToView(pos)
        x, y = int(np.floor(p.x())), int(np.floor(p.y()))
        h, w = self.images[name].shape[:2]
        if 0 <= x < w and 0 <= y < h:
            parts = [f"{n} {np.round(self.images[n][y, x], 3).tolist()}"
                     for n in ("clean", "noisy", "noise", "reconstruction") if n in self.images]
            self.pixel_readout.setText(f"x {x}, y {y}: " + " · ".join(parts))
