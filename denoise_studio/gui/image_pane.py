"""The image pane: clean · noisy · predicted noise · reconstruction · error, side by side,
with zoom and pan synced across panes. Noise is shown on a symmetric diverging scale
(grey-blue-red, zero in the middle); the error as |reconstruction − clean|.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

PANES = ("clean", "noisy", "noise", "reconstruction", "error")
TITLES = {"clean": "clean", "noisy": "noisy input", "noise": "predicted noise",
          "reconstruction": "reconstruction", "error": "error |rec − clean|"}


def _hwc(a: np.ndarray) -> np.ndarray:
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


class ImagePane(QWidget):
    open_requested = Signal(str)   # a path chosen with File > Open image

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("ImagePane")
        self.setAccessibleName("Image pane")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.caption = QLabel("Train a network or drop an image here to see noisy input, predicted noise and "
                              "reconstruction side by side.")
        self.caption.setObjectName("ImageCaption")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("#1e1e22")
        lay.addWidget(self.view, 1)
        self.titles: dict[str, pg.LabelItem] = {}
        self.boxes: dict[str, pg.ViewBox] = {}
        self.items: dict[str, pg.ImageItem] = {}
        self.images: dict[str, np.ndarray] = {}
        first = None
        for col, name in enumerate(PANES):
            self.titles[name] = self.view.addLabel(TITLES[name], row=0, col=col, color="#ddd")
            vb = self.view.addViewBox(row=1, col=col, lockAspect=True, invertY=True, enableMenu=False)
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
        self.pixel_readout = QLabel(" ")
        self.pixel_readout.setObjectName("PixelReadout")
        lay.addWidget(self.pixel_readout)
        self.view.scene().sigMouseMoved.connect(self._mouse_moved)

    def show_result(self, images: dict, caption: str = "", metrics: dict | None = None) -> None:
        """images: noisy, noise, reconstruction and optionally clean, as (H, W[, 3]) float arrays."""
        images = {k: _hwc(np.asarray(v, dtype=np.float32)) for k, v in images.items() if k in PANES}
        if "clean" in images and "reconstruction" in images:
            err = np.abs(images["reconstruction"] - images["clean"])
            images["error"] = err.mean(axis=2) if err.ndim == 3 else err
        first_time = not self.images
        self.images = images
        for name in PANES:
            item = self.items[name]
            if name not in images:
                item.clear()
                self.titles[name].setText(f"{TITLES[name]} (no reference)" if name in ("clean", "error")
                                          else TITLES[name])
                continue
            a = images[name]
            if name == "noise":
                a = a.mean(axis=2) if a.ndim == 3 else a
                s = max(3 * float(np.std(a)), 1e-6)
                item.setImage(a, levels=(-s, s))
            elif name == "error":
                item.setImage(a, levels=(0, max(float(np.percentile(a, 99.5)), 1e-6)))
            else:
                item.setImage(np.clip(a, 0, 1), levels=(0, 1))
            label = TITLES[name]
            if metrics and name in metrics:
                label += f" — {metrics[name]}"
            self.titles[name].setText(label)
        if caption:
            self.caption.setText(caption)
        if first_time:
            self.boxes["noisy"].autoRange(padding=0)

    def _mouse_moved(self, pos) -> None:
        for name, vb in self.boxes.items():
            if name in self.images and vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                x, y = int(p.x()), int(p.y())
                h, w = self.images[name].shape[:2]
                if 0 <= x < w and 0 <= y < h:
                    parts = []
                    for n in PANES:
                        if n in self.images:
                            v = self.images[n][y, x]
                            parts.append(f"{n} {np.round(v, 3).tolist()}")
                    self.pixel_readout.setText(f"x {x}, y {y}: " + " · ".join(parts))
                return

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.png *.jpg *.jpeg *.tif *.tiff "
                                              "*.bmp *.webp *.gif)")
        if path:
            self.open_requested.emit(path)

    def grab_pane(self, name: str):
        """The current image of one pane as a QImage-able array (for tests and saving)."""
        return self.images.get(name)


__all__ = ["ImagePane", "PANES", "Qt"]
