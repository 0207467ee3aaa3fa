"""The training view: device, settings, start/pause/stop, live loss plot, gradient norms,
progress, and runs (open, resume, compare). Training runs in a child process."""
from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from denoise_studio.core.analysis import analyze
from denoise_studio.core.devices import cpu_has_bf16, list_devices
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.events import FINISH_REASONS
from denoise_studio.core.images import load_image
from denoise_studio.core.plan import (
    DEFAULT_STEPS,
    RESUME_REQUIRED,
    TrainConfig,
    cadences,
    default_runs_dir,
    new_run_dir,
    round_crop,
)
from denoise_studio.core.runfolder import RunFolder, gone_message, split_strip
from denoise_studio.core.runlock import describe_writer
from denoise_studio.format import duration
from denoise_studio.gui.document import SpecDocument
from denoise_studio.gui.image_pane import ImagePane
from denoise_studio.gui.loss_plot import GradNormStrip, LossPlot
from denoise_studio.gui.training_session import TrainingSession

BUILTIN_LABEL = "built-in samples (scikit-image)"


class DeviceSelector(QComboBox):
    """auto, then every device with its name and memory; unavailable ones disabled, with the reason."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("DeviceSelector")
        self.setAccessibleName("Training device")
        self.addItem("auto (best available)", "auto")
        for d in list_devices():
            self.addItem(d.label, d.id)
            if not d.available:
                item = self.model().item(self.count() - 1)
                item.setEnabled(False)
                item.setToolTip(d.reason)
        self.setCurrentIndex(0)

    def device(self) -> str:
        return self.currentData()


class TrainingView(QWidget):
    checkpoint_saved = Signal(str)   # absolute path of a new checkpoint

    def __init__(self, doc: SpecDocument, image_pane: ImagePane | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("TrainingView")
        self.setAccessibleName("Training view")
        self.doc = doc
        self.image_pane = image_pane
        self.runs_dir = default_runs_dir()
        self.session = TrainingSession(self)
        self.session.event.connect(self.on_event)
        self.session.ended.connect(self.on_ended)
        self._current_run: Path | None = None
        self.last_step = 0
        self.total_steps = 0
        self.start_time = 0.0
        self.first_step = 0
        self.rate = 0.0
        self.data_folder: str | None = None
        self.followed: RunFolder | None = None
        self.follow_offset = self.follow_steps = self.follow_total = 0
        self.follow_checkpoint: int | None = None
        self.follow_timer = QTimer(self)
        self.follow_timer.setInterval(500)
        self.follow_timer.timeout.connect(self._follow_tick)

        root = QHBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        left_box = QWidget()
        left_box.setMaximumWidth(500)
        left = QVBoxLayout(left_box)
        left.setContentsMargins(0, 0, 0, 0)
        root.addWidget(left_box, 0)
        form_box = QWidget()
        form_box.setObjectName("TrainingSettings")
        columns = QHBoxLayout(form_box)
        columns.setContentsMargins(0, 0, 0, 0)
        form, form2 = QFormLayout(), QFormLayout()
        columns.addLayout(form, 3)
        columns.addLayout(form2, 2)
        self.device_selector = DeviceSelector()
        self.device_selector.currentIndexChanged.connect(self._device_changed)
        form.addRow("device", self.device_selector)
        self.data = QComboBox()
        self.data.setObjectName("DataSource")
        self.data.addItems([BUILTIN_LABEL, "choose a folder…"])
        self.data.activated.connect(self._data_chosen)
        form.addRow("data", self.data)
        self.noise = QComboBox()
        self.noise.setObjectName("NoiseProcess")
        self.noise.addItems(["gaussian", "ddpm"])
        self.noise.currentTextChanged.connect(self._noise_changed)
        form.addRow("noise", self.noise)
        sig = QHBoxLayout()
        self.sigma_lo, self.sigma_hi = QDoubleSpinBox(), QDoubleSpinBox()
        for w, v in ((self.sigma_lo, 5), (self.sigma_hi, 50)):
            w.setRange(0, 255)
            w.setDecimals(1)
            w.setValue(v)
            sig.addWidget(w)
        self.sigma_row = QWidget()
        self.sigma_row.setLayout(sig)
        sig.setContentsMargins(0, 0, 0, 0)
        form.addRow("σ range (0–255)", self.sigma_row)
        ddpm = QHBoxLayout()
        ddpm.setContentsMargins(0, 0, 0, 0)
        self.schedule = QComboBox()
        self.schedule.addItems(["linear", "cosine"])
        self.timesteps = QSpinBox()
        self.timesteps.setRange(2, 10000)
        self.timesteps.setValue(1000)
        self.timesteps.setPrefix("T ")
        ddpm.addWidget(self.schedule)
        ddpm.addWidget(self.timesteps)
        self.ddpm_row = QWidget()
        self.ddpm_row.setLayout(ddpm)
        form.addRow("schedule", self.ddpm_row)
        form = form2   # second column: sizes, schedule, speed
        self.crop = self._spin(form, "crop", TrainConfig.crop, 8, 1024, 8)
        self.batch = self._spin(form, "batch size", TrainConfig.batch_size, 1, 4096)
        self.steps = self._spin(form, "steps", DEFAULT_STEPS, 1, 10_000_000, 100)
        self.steps.setToolTip("The run's total number of steps; Resume run continues up to it.")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(TrainConfig.lr)
        form.addRow("learning rate", self.lr)
        self.seed = self._spin(form, "seed", 0, 0, 2**31 - 1)
        self.amp = QCheckBox("bf16 autocast")
        self.compile = QCheckBox("torch.compile")
        form.addRow(self.amp)
        form.addRow(self.compile)
        left.addWidget(form_box)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("StartButton")
        self.start_button.setToolTip("Start training (F5)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("PauseButton")
        self.pause_button.setToolTip("Pause or resume (F6)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("StopButton")
        self.stop_button.setToolTip("Stop after the current step, keeping a checkpoint (Shift+F5)")
        for b in (self.start_button, self.pause_button, self.stop_button):
            b.setAccessibleName(b.text() + " training")
            buttons.addWidget(b)
        left.addLayout(buttons)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        for key, slot in (("F5", self.start), ("F6", self.toggle_pause), ("Shift+F5", self.stop)):
            QShortcut(QKeySequence(key), self, slot, context=Qt.ShortcutContext.WindowShortcut)
        runs = QHBoxLayout()
        self.open_run_button = QPushButton("Open run…")
        self.open_run_button.setObjectName("OpenRunButton")
        self.open_run_button.clicked.connect(self.open_run_dialog)
        self.resume_button = QPushButton("Resume run")
        self.resume_button.setObjectName("ResumeButton")
        self.resume_button.clicked.connect(self.resume)
        self.compare_button = QPushButton("Compare…")
        self.compare_button.setObjectName("CompareButton")
        self.compare_button.setToolTip("Overlay another run's loss curve")
        self.compare_button.clicked.connect(self.compare_dialog)
        for b in (self.open_run_button, self.resume_button, self.compare_button):
            runs.addWidget(b)
        left.addLayout(runs)
        self.progress = QProgressBar()
        self.progress.setObjectName("TrainingProgress")
        self.progress.setFormat("%p%")
        left.addWidget(self.progress)
        self.status = QLabel("Ready: press Start to train the network in the builder.")
        self.status.setObjectName("TrainingStatus")
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        path_row = QHBoxLayout()
        self.run_path = QLineEdit()
        self.run_path.setObjectName("RunFolderPath")
        self.run_path.setAccessibleName("Run folder")
        self.run_path.setReadOnly(True)
        self.run_path.setPlaceholderText("run folder")
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setObjectName("OpenFolderButton")
        self.open_folder_button.clicked.connect(self.open_run_folder)
        self.copy_path_button = QPushButton("Copy path")
        self.copy_path_button.setObjectName("CopyPathButton")
        self.copy_path_button.clicked.connect(self.copy_run_path)
        path_row.addWidget(self.run_path, 1)
        path_row.addWidget(self.open_folder_button)
        path_row.addWidget(self.copy_path_button)
        left.addLayout(path_row)
        self.message = QLabel("")
        self.message.setObjectName("TrainingMessage")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b3261e;")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        left.addWidget(self.message)
        left.addStretch(1)

        tabs = QTabWidget()
        self.loss_plot = LossPlot()
        self.grad_strip = GradNormStrip()
        tabs.addTab(self.loss_plot, "Loss")
        tabs.addTab(self.grad_strip, "Gradient norms")
        root.addWidget(tabs, 1)
        self._noise_changed("gaussian")
        self._device_changed()
        self.current_run = None
        self._set_running(False)

    @property
    def current_run(self) -> Path | None:
        return self._current_run

    @current_run.setter
    def current_run(self, path) -> None:
        self._current_run = Path(path) if path is not None else None
        if hasattr(self, "run_path"):
            self.run_path.setText(str(self._current_run) if self._current_run else "")
            for b in (self.open_folder_button, self.copy_path_button):
                b.setEnabled(self._current_run is not None)

    def open_run_folder(self) -> None:
        if self.current_run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.current_run)))

    def copy_run_path(self) -> None:
        if self.current_run is not None:
            QGuiApplication.clipboard().setText(str(self.current_run))

    def _spin(self, form, label, value, lo, hi, step=1) -> QSpinBox:
        w = QSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setValue(value)
        w.setObjectName(label.title().replace(" ", "") + "Spin")
        form.addRow(label, w)
        return w

    # --- settings ---
    def _noise_changed(self, kind: str) -> None:
        self.sigma_row.setEnabled(kind == "gaussian")
        self.ddpm_row.setEnabled(kind == "ddpm")

    def _device_changed(self, *_):
        dev = self.device_selector.device()
        cuda = dev.startswith("cuda") or (dev == "auto" and any(d.id.startswith("cuda") and d.available
                                                                 for d in list_devices()))
        self.amp.setEnabled(cuda or cpu_has_bf16())
        self.amp.setChecked(cuda)
        self.compile.setEnabled(True)

    def _data_chosen(self, index: int) -> None:
        if self.data.itemText(index) == "choose a folder…":
            folder = QFileDialog.getExistingDirectory(self, "Folder of training images")
            self.set_data_folder(folder or None)

    def set_data_folder(self, folder: str | None) -> None:
        self.data_folder = folder
        self.data.blockSignals(True)
        if folder:
            if self.data.findText(folder) < 0:
                self.data.insertItem(1, folder)
            self.data.setCurrentText(folder)
        else:
            self.data.setCurrentIndex(0)
        self.data.blockSignals(False)

    def config(self) -> TrainConfig:
        dev = self.device_selector.device()
        data = self.data.currentText()
        return TrainConfig(
            data="builtin" if data in (BUILTIN_LABEL, "choose a folder…") else data,
            steps=self.steps.value(), batch_size=self.batch.value(), crop=self.crop.value(), lr=self.lr.value(),
            seed=self.seed.value(), device=dev, noise=self.noise.currentText(),
            sigma=(self.sigma_lo.value(), max(self.sigma_lo.value(), self.sigma_hi.value())),
            schedule=self.schedule.currentText(), timesteps=self.timesteps.value(),
            amp="bf16" if self.amp.isChecked() and self.amp.isEnabled() else "off",
            compile=self.compile.isChecked(), **cadences(self.steps.value()))

    # --- actions ---
    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self.current_run is not None)
        self.open_run_button.setEnabled(not running)
        self.pause_button.setText("Pause")

    def start(self) -> bool:
        if self.session.running:
            return False
        spec, cfg = self.doc.spec, self.config()
        cfg.crop = round_crop(cfg.crop, spec)
        self.crop.setValue(cfg.crop)
        a = analyze(spec, cfg.crop)
        if not a.valid:
            self.message.setText(f"Fix the network before training: {a.errors[0]}")
            return False
        problems = cfg.problems(spec)
        if problems:
            self.message.setText(f"Fix the settings before training: {problems[0]}")
            return False
        run_dir = new_run_dir(spec.name, self.runs_dir)
        self.stop_following()
        self._begin(run_dir, cfg.steps)
        self.session.start(spec.to_dict(), cfg.to_dict(), str(run_dir))
        return True

    def resume(self) -> bool:
        if self.session.running or self.current_run is None:
            return False
        try:
            run = RunFolder.open(self.current_run)
            holder = run.writer()
            if holder is not None:
                raise DenoiseError(f"{run.path} is being written by {describe_writer(holder)}; wait for it to "
                                   "finish or stop it (Open run… follows it live).")
            cfg = TrainConfig.from_dict(run.config(), source=str(run.config_path), required=RESUME_REQUIRED)
            cfg.steps = max(cfg.steps, self.steps.value())   # the total to reach, as on the command line
            cfg.device = self.device_selector.device()
            spec = run.spec()
            last = run.checkpoint("last")
            if last is not None:
                from denoise_studio.core.checkpoint import load_checkpoint
                done = load_checkpoint(last).step
                if done >= cfg.steps:
                    raise DenoiseError(f"the run is already at step {done:,} of {cfg.steps:,}; raise steps (the "
                                       "run's total) above that to train further.")
        except DenoiseError as e:
            self.message.setText(f"Cannot resume: {e}")
            return False
        self.stop_following()
        self._begin(self.current_run, cfg.steps, keep_plot=True)
        self.session.start(spec.to_dict(), cfg.to_dict(), str(self.current_run), resume=True)
        return True

    def _begin(self, run_dir: Path, steps: int, keep_plot: bool = False) -> None:
        self.current_run = run_dir
        self.total_steps = steps
        self.start_time = time.time()
        self.first_step = -1
        self.rate = 0.0
        if not keep_plot:
            self.loss_plot.clear()
            self.grad_strip.clear()
        self.message.setText("")
        self.progress.setValue(0)
        self.status.setText("Starting…")
        self._set_running(True)

    def toggle_pause(self) -> None:
        if not self.session.running:
            return
        paused = not self.session.paused
        self.session.pause(paused)
        self.pause_button.setText("Continue" if paused else "Pause")
        if paused:
            self.loss_plot.mark_pause(self.last_step)
            self._show_paused()
        else:
            self.status.setText(f"Continuing from step {self.last_step:,}…")

    def _show_paused(self) -> None:
        self.status.setText(f"Paused at step {self.last_step:,}. Press Continue (F6) to go on.")

    def stop(self) -> None:
        if self.session.running:
            self.session.stop()
            self.status.setText("Stopping after the current step…")

    def shutdown(self) -> None:
        """Stop a run keeping its checkpoint (waits for the child to write it), end the spare."""
        self.stop_following()
        self.session.shutdown()

    def keep_training_in_background(self) -> int | None:
        """The window closes but the run goes on headless; returns the child's pid."""
        self.stop_following()
        pid = self.session.detach()
        self.session.keep_warm = False
        self.session.discard_spare()
        return pid

    # --- events from the child ---
    def on_event(self, ev) -> None:
        name = ev.name
        if name == "started":
            self.first_step = ev.step
            self.total_steps = ev.total_steps
            self.start_time = time.time()
            self.status.setText(f"Training {ev.params:,} parameters on {ev.device}"
                                + (f", resumed from step {ev.resumed_from}" if ev.resumed_from else ""))
            if ev.skipped:
                self.message.setText(f"{len(ev.skipped)} unreadable image(s) skipped: " + "; ".join(ev.skipped[:3]))
        elif name == "step":
            self.last_step = ev.step
            self.loss_plot.add_loss(ev.step, ev.loss)
            if ev.grad_norms:
                self.grad_strip.add(ev.step, ev.grad_norms)
            self.rate = ev.images_per_s if not self.rate else 0.95 * self.rate + 0.05 * ev.images_per_s
            elapsed = time.time() - self.start_time
            done = ev.step - max(self.first_step, 0)
            eta = elapsed / max(done, 1) * (self.total_steps - ev.step)
            self.progress.setValue(int(100 * ev.step / max(self.total_steps, 1)))
            if self.session.paused:   # a step in flight when Pause was pressed: the pause is after it
                self.loss_plot.move_pause_mark(ev.step)
                self._show_paused()
                return
            self.status.setText(f"step {ev.step:,}/{self.total_steps:,} · loss {ev.loss:.5f} · "
                                f"{self.rate:.1f} img/s · elapsed {duration(elapsed)} · ETA {duration(eta)}")
        elif name == "eval":
            self.loss_plot.add_psnr(ev.step, ev.psnr)
        elif name == "preview" and self.image_pane is not None and ev.images:
            if self.image_pane.source is None:   # the user's own image, if any, is re-run on checkpoints
                self.show_preview(ev.step, ev.images, ev.psnr, ev.stats)
        elif name == "checkpoint" and self.current_run is not None:
            self.checkpoint_saved.emit(str(self.current_run / ev.path))

    def show_preview(self, step: int, images: dict, psnr: float, stats: dict | None = None) -> None:
        clean = images.get("clean")
        metrics = {}
        if clean is not None:
            from denoise_studio.core.metrics import psnr as psnr_of
            metrics = {"noisy": f"{psnr_of(images['noisy'], clean):.2f} dB",
                       "reconstruction": f"{psnr:.2f} dB"}
        self.image_pane.show_result(images, f"Live preview at step {step:,} on a held-out validation image "
                                    f"(σ = 25): reconstruction {psnr:.2f} dB", metrics, stats=stats)

    def on_ended(self, ev) -> None:
        self._set_running(False)
        if ev.name == "finished":
            why = FINISH_REASONS[ev.reason]
            self.progress.setValue(int(100 * ev.step / max(self.total_steps, 1)))
            self.status.setText(f"Finished at step {ev.step:,} ({why}); the last checkpoint is in the run folder.")
        else:
            kept = f" The last good checkpoint is kept: {ev.checkpoint}." if ev.checkpoint else ""
            self.message.setText(f"Training stopped: {ev.message}{kept} Change the settings and press Start "
                                 "to try again.")
            self.status.setText(f"Failed at step {ev.step:,}.")

    # --- runs ---
    def open_run_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open run folder", str(self.runs_dir))
        if folder:
            self.open_run(folder)

    def open_run(self, folder) -> bool:
        """Show a run: its curves, last preview, and allow resume. A run that another process (a
        headless or torchrun job, maybe on another machine) is still writing is followed live."""
        try:
            run = RunFolder.open(folder)
        except DenoiseError as e:
            self.message.setText(str(e))
            return False
        self.stop_following()
        self.loss_plot.clear()
        self.grad_strip.clear()
        self.current_run = Path(folder)
        self.followed = run
        self.follow_offset = 0
        self.follow_steps = 0
        self.follow_total = 0
        self.follow_checkpoint = None
        self.message.setText("")
        try:
            ended = self._read_followed(live=False)
        except DenoiseError as e:
            self.followed = None
            self.message.setText(str(e))
            return False
        self._set_running(False)
        if ended is None:
            self.follow_timer.start()
            self.status.setText(f"Following run {folder} live: step {self.follow_steps:,} so far.")
        else:
            self.status.setText(f"Opened run {folder}: {self.follow_steps:,} steps logged ({ended}).")
        return True

    def stop_following(self) -> None:
        self.follow_timer.stop()
        self.followed = None

    def _follow_tick(self) -> None:
        if self.followed is None:
            self.follow_timer.stop()
            return
        try:
            ended = self._read_followed(live=True)
        except DenoiseError as e:
            self.message.setText(str(e))
            ended = "unreadable"
        if ended is not None:
            self.follow_timer.stop()
            self.status.setText(f"Run {self.followed.path} {ended} at step {self.follow_steps:,}.")
            self.followed = None

    def _read_followed(self, live: bool) -> str | None:
        """Plot what was appended to the followed run's events; returns how it ended, if it did
        (also when its writer died without saying so: the lock is free and no terminal event came)."""
        run = self.followed
        alive = run.writer() is not None   # before reading: a writer releases its lock after its last line
        events, self.follow_offset = run.read_events(self.follow_offset)
        ended, last_preview = None, None
        for e in events:
            if e.name == "started":   # a resumed run starts again after its first "finished"
                self.follow_total, ended = e.total_steps, None
            elif e.name == "step":
                self.loss_plot.add_loss(e.step, e.loss if e.loss is not None else math.nan)
                if e.grad_norms:
                    self.grad_strip.add(e.step, e.grad_norms)
                self.follow_steps = e.step
            elif e.name == "eval":
                self.loss_plot.add_psnr(e.step, e.psnr)
            elif e.name == "preview" and e.path:
                last_preview = e
            elif e.name == "checkpoint" and not e.best:
                self.follow_checkpoint = e.step
            elif e.name in ("finished", "failed"):
                ended = "finished" if e.name == "finished" else f"failed: {e.message}"
        if ended is None and not alive:
            ended = "ended: " + gone_message(run.path, self.follow_checkpoint)
        if live and ended is None:
            self.progress.setValue(int(100 * self.follow_steps / max(self.follow_total, 1)))
            self.status.setText(f"Following {run.path}: step {self.follow_steps:,}/{self.follow_total:,}")
        if last_preview is not None and self.image_pane is not None:
            try:
                strip = load_image(run.path / last_preview.path).pixels
                self.show_preview(last_preview.step, split_strip(strip), last_preview.psnr)
            except DenoiseError:
                pass   # a preview being written right now; the next one will do
        return ended

    def compare_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run to compare", str(self.runs_dir))
        if folder:
            self.compare_run(folder)

    def compare_run(self, folder) -> bool:
        try:
            run = RunFolder.open(folder)
        except DenoiseError as e:
            self.message.setText(str(e))
            return False
        events, _ = run.read_events()
        steps = [(e.step, e.loss) for e in events if e.name == "step" and e.loss is not None and math.isfinite(e.loss)]
        self.loss_plot.add_comparison(f"{run.spec().name} ({Path(folder).name})", [s for s, _ in steps],
                                      [v for _, v in steps])
        return True

