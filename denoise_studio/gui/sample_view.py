"""The Sample view: watch a DDPM-trained network turn pure noise into images, step by step.

Sampling runs in a QRunnable off the GUI thread; each step's grid (x_t and x̂₀) arrives by a
signal as a fresh array. The frames are kept (at most MAX_FRAMES, evenly spaced) so a slider
can scrub the trajectory afterwards. Cancel is a flag the sampler checks between steps.
"""
from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.images import save_image
from denoise_studio.core.sampling import grid, sample

MAX_FRAMES = 120


class SampleSignals(QObject):
    frame = Signal(int, int, int, object, object)   # generation, index, total, x grid, x̂0 grid
    failed = Signal(int, str)
    done = Signal(int, bool)                        # generation, cancelled


class SampleJob(QRunnable):
    def __init__(self, generation: int, lm, settings: dict, signals: SampleSignals, cancel: threading.Event):
        super().__init__()
        self.generation, self.lm, self.settings, self.signals, self.cancel = generation, lm, settings, signals, cancel

    def run(self) -> None:
        try:
            for f in sample(self.lm, cancel=self.cancel.is_set, **self.settings):
                self.signals.frame.emit(self.generation, f.index, f.total, grid(f.x), grid(f.x0))
        except DenoiseError as e:
            self.signals.failed.emit(self.generation, str(e))
        except Exception as e:   # never let a worker take the window down
            self.signals.failed.emit(self.generation, f"sampling failed: {type(e).__name__}: {e}")
        self.signals.done.emit(self.generation, self.cancel.is_set())


def to_pixmap(a: np.ndarray, width: int, height: int) -> QPixmap:
    """A float [0, 1] (H, W[, 3]) array as a pixmap enlarged by a whole factor (crisp pixels) to fit."""
    a = np.ascontiguousarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8))
    h, w = a.shape[:2]
    if a.ndim == 2:
        img = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    else:
        img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    factor = max(1, min(width // max(w, 1), height // max(h, 1)))
    return QPixmap.fromImage(img.scaled(w * factor, h * factor, Qt.AspectRatioMode.KeepAspectRatio,
                                        Qt.TransformationMode.FastTransformation))


class SampleView(QWidget):
    status = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("SampleView")
        self.setAccessibleName("Sample view")
        self.model_provider = lambda: None     # MainWindow gives the newest checkpoint's network
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.signals = SampleSignals(self)
        self.signals.frame.connect(self._on_frame)
        self.signals.failed.connect(self._on_failed)
        self.signals.done.connect(self._on_done)
        self.generation = 0
        self.cancel_flag = threading.Event()
        self.frames: list[tuple[int, np.ndarray, np.ndarray]] = []   # (step, x grid, x̂0 grid)
        self.total = 0
        self.running = False
        self._build()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.sampler = QComboBox()
        self.sampler.setToolTip("Sampler: DDIM takes a few large deterministic steps; DDPM takes every one of the "
                                "network's T steps, adding fresh noise at each")
        self.sampler.setObjectName("SamplerChoice")
        self.sampler.addItem("DDIM (fast)", "ddim")
        self.sampler.setItemData(0, "DDIM: a few large deterministic steps (η 0); any number of steps up to T",
                                 Qt.ItemDataRole.ToolTipRole)
        self.sampler.addItem("DDPM (every step)", "ddpm")
        self.sampler.setItemData(1, "DDPM ancestral sampling: all T steps, fresh noise at each",
                                 Qt.ItemDataRole.ToolTipRole)
        self.sampler.currentIndexChanged.connect(self._sampler_changed)
        bar.addWidget(self.sampler)
        self.steps = self._spin(bar, "Steps", 50, 1, 100_000, "SampleSteps")
        self.n = self._spin(bar, "Images", 16, 1, 256, "SampleCount")
        self.seed = self._spin(bar, "Seed", 0, 0, 999_999, "SampleSeed")
        bar.addWidget(QLabel("η"))
        self.eta = QDoubleSpinBox()
        self.eta.setObjectName("SampleEta")
        self.eta.setRange(0.0, 1.0)
        self.eta.setSingleStep(0.1)
        self.eta.setToolTip("DDIM stochasticity: 0 is deterministic, 1 adds DDPM's noise at every step")
        bar.addWidget(self.eta)
        self.show_x0 = QCheckBox("show x̂₀")
        self.show_x0.setObjectName("ShowX0")
        self.show_x0.setToolTip("Show the network's prediction of the final image at each step instead of x_t")
        self.show_x0.toggled.connect(lambda _: self._show_frame(self.slider.value()))
        bar.addStretch(1)
        self.sample_button = QPushButton("Sample")
        self.sample_button.setObjectName("SampleButton")
        self.sample_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("CancelSampleButton")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save grid…")
        self.save_button.setObjectName("SaveSampleButton")
        self.save_button.clicked.connect(self.save_dialog)
        self.save_button.setEnabled(False)
        for b in (self.sample_button, self.cancel_button):
            bar.addWidget(b)
        lay.addLayout(bar)
        self.caption = QLabel("Sampling runs the reverse diffusion process: from pure noise, the network removes "
                              "a little predicted noise at each step. It needs a network trained with DDPM noise "
                              "and timestep conditioning — e.g. the shapes-unet preset on the shapes data.")
        self.caption.setObjectName("SampleCaption")
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.picture = QLabel()
        self.picture.setObjectName("SampleGrid")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setStyleSheet("background: #1e1e22;")
        lay.addWidget(self.picture, 1)
        row = QHBoxLayout()
        self.step_label = QLabel("step –")
        self.step_label.setMinimumWidth(120)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("TrajectorySlider")
        self.slider.setAccessibleName("trajectory step")
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self._show_frame)
        row.addWidget(self.step_label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.show_x0)
        row.addWidget(self.save_button)
        lay.addLayout(row)

    def _spin(self, bar, label, value, lo, hi, name) -> QSpinBox:
        bar.addWidget(QLabel(label))
        s = QSpinBox()
        s.setObjectName(name)
        s.setRange(lo, hi)
        s.setValue(value)
        bar.addWidget(s)
        return s

    def _sampler_changed(self) -> None:
        lm = self.model_provider()
        T = getattr(getattr(lm, "noise", None), "timesteps", 1000)
        ddpm = self.sampler.currentData() == "ddpm"
        self.steps.setValue(T if ddpm else min(50, T))
        self.eta.setValue(1.0 if ddpm else 0.0)

    def settings(self) -> dict:
        lm = self.model_provider()
        crop = int(((getattr(lm, "meta", None) or {}).get("config") or {}).get("crop", 32))
        return {"n": self.n.value(), "steps": self.steps.value(), "sampler": self.sampler.currentData(),
                "eta": self.eta.value(), "seed": self.seed.value(), "size": crop}

    # --- running ---
    def start(self) -> bool:
        lm = self.model_provider()
        if lm is None:
            self._message("No network to sample with: train one (shapes-unet on the shapes data with DDPM noise) "
                          "or open a run.")
            return False
        self.cancel()
        self.generation += 1
        self.cancel_flag = threading.Event()
        self.frames, self.total = [], 0
        self.running = True
        self._set_buttons()
        self.pool.start(SampleJob(self.generation, lm, self.settings(), self.signals, self.cancel_flag))
        self._message(f"Sampling {self.n.value()} images with {self.sampler.currentData().upper()}…")
        return True

    def cancel(self) -> None:
        self.cancel_flag.set()

    def _on_frame(self, generation: int, index: int, total: int, x: np.ndarray, x0: np.ndarray) -> None:
        if generation != self.generation:
            return
        self.total = total
        keep_every = max(1, -(-total // MAX_FRAMES))
        if index % keep_every == 0 or index == total or index == 1:
            self.frames.append((index, x, x0))
        else:   # always show the newest step, even when it is not kept for scrubbing
            self._draw(index, x, x0)
            return
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self.frames) - 1)
        self.slider.setValue(len(self.frames) - 1)
        self.slider.blockSignals(False)
        self._show_frame(len(self.frames) - 1)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self._message(message)

    def _on_done(self, generation: int, cancelled: bool) -> None:
        if generation != self.generation:
            return
        self.running = False
        self._set_buttons()
        if self.frames:
            self._message(f"{'Cancelled at' if cancelled else 'Done:'} step {self.frames[-1][0]} of {self.total}. "
                          "Drag the slider to replay the trajectory.")

    def _set_buttons(self) -> None:
        self.sample_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.running)
        self.save_button.setEnabled(bool(self.frames) and not self.running)
        self.slider.setEnabled(bool(self.frames))

    def _show_frame(self, i: int) -> None:
        if 0 <= i < len(self.frames):
            self._draw(*self.frames[i])

    def _draw(self, index: int, x: np.ndarray, x0: np.ndarray) -> None:
        a = x0 if self.show_x0.isChecked() else x
        self.picture.setPixmap(to_pixmap(a, max(self.picture.width(), 64), max(self.picture.height(), 64)))
        self.step_label.setText(f"step {index} / {self.total}" + (" (x̂₀)" if self.show_x0.isChecked() else ""))

    def resizeEvent(self, e) -> None:
        super().resizeEvent(e)
        self._show_frame(self.slider.value())

    # --- saving ---
    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sample grid", "samples.png", "PNG images (*.png)")
        if path:
            self.save(path)

    def save(self, path) -> bool:
        """The final grid (or the frame shown, while scrubbing), at 4× so 32-px samples stay legible."""
        if not self.frames:
            return False
        _, x, x0 = self.frames[self.slider.value()]
        a = x0 if self.show_x0.isChecked() else x
        try:
            save_image(path, a.repeat(4, axis=0).repeat(4, axis=1))
        except (DenoiseError, OSError) as e:
            self._message(f"Could not save {path}: {getattr(e, 'strerror', None) or e}")
            return False
        self._message(f"Saved {path}")
        return True

    def _message(self, text: str) -> None:
        self.caption.setText(text)
        self.status.emit(text)
