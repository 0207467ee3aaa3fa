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
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from denoise_studio.core.analysis import analyze
from denoise_studio.core.devices import list_devices
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.events import (
    FINISH_REASONS,
    CheckpointEvent,
    EvalEvent,
    FailedEvent,
    FinishedEvent,
    PreviewEvent,
    RecoveredEvent,
    StartedEvent,
    StepEvent,
    dispatch,
)
from denoise_studio.core.images import load_image
from denoise_studio.core.noise import NOISE_PROCESSES
from denoise_studio.core.objectives import OBJECTIVES
from denoise_studio.core.plan import (
    DEFAULT_STEPS,
    RECOMMENDED_PRESET,
    RESUME_REQUIRED,
    TrainConfig,
    cadences,
    default_runs_dir,
    new_run_dir,
    recipe,
    round_crop,
)
from denoise_studio.core.precision import auto_amp, describe
from denoise_studio.core.runfolder import RunFolder, gone_message, split_strip
from denoise_studio.core.runlock import describe_writer
from denoise_studio.format import duration
from denoise_studio.gui.document import SpecDocument
from denoise_studio.gui.loss_plot import GradNormStrip, LossPlot
from denoise_studio.gui.training_session import TrainingSession
from denoise_studio.gui.wording import app_words


def compact(combo: QComboBox, chars: int = 14) -> QComboBox:
    """A combo box as narrow as `chars` characters, whose list still shows every item in full."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.view().setMinimumWidth(combo.view().sizeHintForColumn(0) + 24)
    return combo


BUILTIN_LABEL = "built-in samples (scikit-image)"
SHAPES_LABEL = "shapes (generated, for sampling)"
FOLDER_LABEL = "choose a folder…"
DATA_LABELS = {BUILTIN_LABEL: "builtin", SHAPES_LABEL: "shapes"}   # the rest are folders
# The precision choices: (label, TrainConfig.amp). auto follows the hardware (core.precision).
PRECISIONS = (("auto (fastest for the hardware)", "auto"), ("fp32", "off"), ("bf16 autocast", "bf16"))
# What each objective needs, for its tooltip (an objective without an entry gets one from its flags).
OBJECTIVE_TIPS = {
    "supervised": "Needs clean images: the noise process corrupts them and the network learns the noise added.",
    "n2v": "Noise2Void: learns from noisy images alone (no clean image needed). Each pixel is predicted from "
           "its neighbours, so the network needs more than 1×1 layers.",
    "ne2ne": "Neighbor2Neighbor: learns from noisy images alone (no clean image needed), from pairs of "
             "sub-images of each noisy image; it trains on half-size crops.",
}
SYNTHETIC_LABEL = "Add synthetic noise to these (clean) images"


def objective_tip(name: str) -> str:
    if name in OBJECTIVE_TIPS:
        return OBJECTIVE_TIPS[name]
    if OBJECTIVES[name].self_supervised:
        return f"{name}: learns from noisy images alone (no clean image needed)."
    return f"{name}: needs clean images."


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
    # A validation preview: step, {"noisy", "noise", "reconstruction", "clean"?} arrays, PSNR, stats
    # (or None), and whether it comes live from this app's run (else from a run folder read back).
    preview = Signal(int, object, float, object, bool)
    preset_requested = Signal(str)   # the user asked for a preset (the data source's recommended one)
    # The chosen objective and the crop it would train with (rounded): the builder lists what the
    # objective needs of the network (core.objectives.objective_problems).
    objective_changed = Signal(str, int)

    def __init__(self, doc: SpecDocument, parent=None):
        super().__init__(parent)
        self.setObjectName("TrainingView")
        self.setAccessibleName("Training view")
        self.doc = doc
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
        self.followed: RunFolder | None = None
        self.follow_offset = self.follow_steps = self.follow_total = 0
        self.follow_checkpoint: int | None = None
        self._follow_ended: str | None = None
        self._follow_preview = None
        self.follow_timer = QTimer(self)
        self.follow_timer.setInterval(500)
        self.follow_timer.timeout.connect(self._follow_tick)

        root = QHBoxLayout(self)
        root.setContentsMargins(4, 2, 4, 2)
        left_box = QWidget()
        left_box.setMaximumWidth(600)
        left = QVBoxLayout(left_box)
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(3)
        root.addWidget(left_box, 0)
        form_box = QWidget()
        form_box.setObjectName("TrainingSettings")
        columns = QHBoxLayout(form_box)
        columns.setContentsMargins(0, 0, 0, 0)
        form, form2 = QFormLayout(), QFormLayout()
        for f in (form, form2):   # compact: the image pane above gets the height
            f.setVerticalSpacing(3)
        columns.addLayout(form, 3)
        columns.addLayout(form2, 2)
        self.device_selector = compact(DeviceSelector())
        self.device_selector.currentIndexChanged.connect(self._device_changed)
        form.addRow("device", self.device_selector)
        self.data = QComboBox()
        self.data.setObjectName("DataSource")
        self.data.addItems([BUILTIN_LABEL, SHAPES_LABEL, FOLDER_LABEL])
        self.data.setItemData(1, "Small images of coloured shapes, generated on the fly: a DDPM-trained network "
                              "learns to sample them in minutes on a CPU (Sample tab).", Qt.ItemDataRole.ToolTipRole)
        self.data.activated.connect(self._data_chosen)
        compact(self.data)
        self._data_recipe: dict = {}   # the recipe the current data source applied (undone when leaving it)
        form.addRow("data", self.data)
        self.objective = QComboBox()
        self.objective.setObjectName("ObjectiveChoice")
        self.objective.setAccessibleName("training objective")
        for name in OBJECTIVES:
            self.objective.addItem(name, name)
            self.objective.setItemData(self.objective.count() - 1, objective_tip(name), Qt.ItemDataRole.ToolTipRole)
        self.objective.currentIndexChanged.connect(lambda _: self._objective_changed())
        form.addRow("objective", self.objective)
        self.synthetic = QCheckBox(SYNTHETIC_LABEL)
        self.synthetic.setObjectName("SyntheticNoise")
        self.synthetic.setToolTip("For a self-supervised objective: the folder holds clean images, so corrupt each "
                                  "once with the noise process below and learn from those noisy copies only "
                                  "(the built-in samples are always corrupted this way). Unchecked, the images "
                                  "are taken as the noisy observations themselves.")
        self.synthetic.toggled.connect(lambda _: self._settings_changed())
        form.addRow("", self.synthetic)
        # One row: the noise process, then only its own parameters (σ range, schedule and T, gain and
        # read noise, blur: the keys its config reads).
        noise_row = QHBoxLayout()
        noise_row.setContentsMargins(0, 0, 0, 0)
        noise_row.setSpacing(3)
        self.noise = QComboBox()
        self.noise.setObjectName("NoiseProcess")
        self.noise.addItems(list(NOISE_PROCESSES))
        self.noise.currentTextChanged.connect(self._noise_changed)
        noise_row.addWidget(self.noise)
        sig = QHBoxLayout()
        sig.setContentsMargins(0, 0, 0, 0)
        sig.setSpacing(2)
        sigma_tip = "The range of noise σ trained on (0–255 scale)"
        self.sigma_lo = self._noise_spin("σ ", TrainConfig.sigma[0], 0, 255, sigma_tip)
        self.sigma_hi = self._noise_spin("to ", TrainConfig.sigma[1], 0, 255, sigma_tip)
        sig.addWidget(self.sigma_lo)
        sig.addWidget(self.sigma_hi)
        self.sigma_row = QWidget()
        self.sigma_row.setObjectName("SigmaRange")
        self.sigma_row.setLayout(sig)
        noise_row.addWidget(self.sigma_row, 1)
        ddpm = QHBoxLayout()
        ddpm.setContentsMargins(0, 0, 0, 0)
        ddpm.setSpacing(2)
        self.schedule = QComboBox()
        self.schedule.setObjectName("NoiseSchedule")
        self.schedule.addItems(["linear", "cosine"])
        self.schedule.setToolTip("The noise schedule of the timesteps")
        self.timesteps = QSpinBox()
        self.timesteps.setObjectName("TimestepsSpin")
        self.timesteps.setRange(2, 10000)
        self.timesteps.setValue(1000)
        self.timesteps.setPrefix("T ")
        ddpm.addWidget(self.schedule)
        ddpm.addWidget(self.timesteps)
        self.timesteps.valueChanged.connect(lambda _: self._settings_changed())
        self.ddpm_row = QWidget()
        self.ddpm_row.setObjectName("TimestepSchedule")
        self.ddpm_row.setLayout(ddpm)
        noise_row.addWidget(self.ddpm_row, 1)
        pg = QHBoxLayout()
        pg.setContentsMargins(0, 0, 0, 0)
        pg.setSpacing(2)
        self.gain = self._noise_spin("gain ", TrainConfig.gain, 0.1, 255, "Poisson–Gaussian gain a (0–255 scale): "
                                     "the signal-dependent part, Var = a·x + b²", "GainSpin")
        self.read = self._noise_spin("read ", TrainConfig.read, 0.0, 255, "Poisson–Gaussian read noise b: the std "
                                     "of the signal-independent part (0–255 scale)", "ReadNoiseSpin")
        pg.addWidget(self.gain)
        pg.addWidget(self.read)
        self.poisson_row = QWidget()
        self.poisson_row.setObjectName("PoissonGaussianSettings")
        self.poisson_row.setLayout(pg)
        noise_row.addWidget(self.poisson_row, 1)
        self.blur = self._noise_spin("blur ", TrainConfig.blur, 0.1, 5.0, "Correlated noise: the std in pixels of "
                                     "the kernel that correlates neighbouring pixels' noise", "BlurSpin")
        self.blur.setSingleStep(0.1)
        noise_row.addWidget(self.blur)
        form.addRow("noise", noise_row)
        self.amp = QComboBox()
        self.amp.setObjectName("PrecisionChoice")
        self.amp.setAccessibleName("numeric precision")
        for label, value in PRECISIONS:
            self.amp.addItem(label, value)
        self.amp.currentIndexChanged.connect(lambda _: self._show_precision())
        precision_row = QHBoxLayout()   # the choice and, beside it, the path it takes on this machine
        precision_row.addWidget(self.amp)
        form.addRow("precision", precision_row)
        self.precision_label = QLabel("")
        self.precision_label.setObjectName("PrecisionPath")
        self.precision_label.setAccessibleName("precision path")
        self.precision_label.setStyleSheet("color: #555;")
        self.precision_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.precision_label.setToolTip("The numeric path training takes: auto picks bf16 autocast on CPUs with "
                                        "AMX or AVX512-BF16 and on CUDA, fp32 elsewhere")
        precision_row.addWidget(self.precision_label, 1)
        form = form2   # second column: sizes, schedule, speed
        self.crop = self._spin(form, "crop", TrainConfig.crop, 8, 1024, 8)
        self.crop.valueChanged.connect(lambda _: self._settings_changed())
        self.batch = self._spin(form, "batch size", TrainConfig.batch_size, 1, 4096)
        self.steps = self._spin(form, "steps", DEFAULT_STEPS, 1, 10_000_000, 100)
        self.steps.setToolTip("The run's total number of steps; Resume run continues up to it.")
        self.lr = QDoubleSpinBox()
        self.lr.setObjectName("LearningRateSpin")
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(TrainConfig.lr)
        form.addRow("learning rate", self.lr)
        self.seed = self._spin(form, "seed", 0, 0, 2**31 - 1)
        self.compile = QCheckBox("torch.compile")
        form.addRow(self.compile)
        left.addWidget(form_box)

        buttons = QHBoxLayout()
        buttons.setSpacing(3)
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
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        for key, slot in (("F5", self.start), ("F6", self.toggle_pause), ("Shift+F5", self.stop)):
            QShortcut(QKeySequence(key), self, slot, context=Qt.ShortcutContext.WindowShortcut)
        buttons.addSpacing(8)
        self.open_run_button = QPushButton("Open run…")
        self.open_run_button.setObjectName("OpenRunButton")
        self.open_run_button.setToolTip("Open a run folder: its curves, last preview and checkpoint (Ctrl+Shift+O)")
        self.open_run_button.clicked.connect(self.open_run_dialog)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("ResumeButton")
        self.resume_button.setAccessibleName("Resume run")
        self.resume_button.setToolTip("Continue the open run from its last checkpoint up to steps")
        self.resume_button.clicked.connect(self.resume)
        self.compare_button = QPushButton("Compare…")
        self.compare_button.setObjectName("CompareButton")
        self.compare_button.setToolTip("Overlay another run's loss curve")
        self.compare_button.clicked.connect(self.compare_dialog)
        for b in (self.open_run_button, self.resume_button, self.compare_button):
            buttons.addWidget(b)
        left.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setObjectName("TrainingProgress")
        self.progress.setFormat("%p%")
        self.progress.setMaximumHeight(18)
        left.addWidget(self.progress)
        self.status = QLabel("Ready: press Start to train the network in the builder.")
        self.status.setObjectName("TrainingStatus")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        left.addWidget(self.status)
        path_row = QHBoxLayout()
        path_row.setSpacing(3)
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
        message_row = QHBoxLayout()
        message_row.setSpacing(3)
        self.message = QLabel("")
        self.message.setObjectName("TrainingMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.PlainText)   # file names and messages are never markup
        self.message.setStyleSheet("color: #b3261e;")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        message_row.addWidget(self.message, 1)
        self.preset_button = QPushButton("")
        self.preset_button.setObjectName("LoadPresetButton")
        self.preset_button.clicked.connect(self._load_recommended_preset)
        self.preset_button.hide()
        message_row.addWidget(self.preset_button)
        left.addLayout(message_row)
        left.addStretch(1)

        tabs = QTabWidget()
        self.loss_plot = LossPlot()
        self.grad_strip = GradNormStrip()
        tabs.addTab(self.loss_plot, "Loss")
        tabs.addTab(self.grad_strip, "Gradient norms")
        root.addWidget(tabs, 1)
        self._settings_problem = ""   # the live settings problem the message line shows, if any
        self._noise_changed("gaussian")
        self._objective_changed()
        self._device_changed()
        self.current_run = None
        self._set_running(False)
        doc.changed.connect(self._settings_changed)   # what an objective needs depends on the network

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

    def _noise_spin(self, prefix: str, value: float, lo: float, hi: float, tip: str,
                    name: str | None = None) -> QDoubleSpinBox:
        """One of the noise process's numbers (σ, gain, read noise, blur): one decimal, re-checked on change."""
        w = QDoubleSpinBox()
        if name:
            w.setObjectName(name)
        w.setRange(lo, hi)
        w.setDecimals(1)
        w.setValue(value)
        w.setPrefix(prefix)
        w.setToolTip(tip)
        w.valueChanged.connect(lambda _: self._settings_changed())
        return w

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
        """Only the chosen process's parameters show (the keys its config reads): a σ range, the
        timestep schedule and T, gain and read noise, the correlation's blur."""
        process = NOISE_PROCESSES.get(kind)
        keys = process.config_keys if process is not None else frozenset({"sigma"})
        for row, shown in ((self.sigma_row, "sigma" in keys), (self.ddpm_row, bool(keys & {"schedule", "timesteps"})),
                           (self.poisson_row, bool(keys & {"gain", "read"})), (self.blur, "blur" in keys)):
            row.setEnabled(shown)
            row.setVisible(shown)
        self._settings_changed()

    def _objective_changed(self) -> None:
        """The synthetic-noise choice is for self-supervised objectives only; the crop snaps to what
        the objective trains on; the builder hears what the objective needs of the network."""
        name = self.objective.currentData()
        self_supervised = OBJECTIVES[name].self_supervised
        self.synthetic.setEnabled(self_supervised)
        self.objective.setToolTip(objective_tip(name))
        rounded = self._rounded_crop()
        if rounded != self.crop.value():
            self.crop.setValue(rounded)   # → _settings_changed
        else:
            self._settings_changed()

    def _rounded_crop(self, crop: int | None = None) -> int:
        """The crop a run would use: snapped to the network's downsampling factor times the
        objective's crop multiple (core.plan.round_crop)."""
        objective = OBJECTIVES[self.objective.currentData()]
        return round_crop(self.crop.value() if crop is None else crop, self.doc.spec, objective.crop_multiple)

    def settings_problems(self, cfg: TrainConfig | None = None) -> list[str]:
        """Everything wrong with the panel's settings (or `cfg`) for the builder's network, one sentence
        each in the panel's words (TrainConfig.problems: the one place settings are checked)."""
        try:
            return [app_words(p) for p in (cfg or self.config()).problems(self.doc.spec)]
        except DenoiseError as e:   # a network the analysis cannot read: the builder says why
            return [app_words(str(e))]

    def _settings_changed(self, *_) -> None:
        """Tell the builder the objective and crop; show the first settings problem on the message
        line at once (it is cleared when fixed, unless something else has replaced it since)."""
        if not hasattr(self, "_settings_problem"):   # still being built
            return
        self.objective_changed.emit(self.objective.currentData(), self._rounded_crop())
        if self.running:
            return
        problems = self.settings_problems()
        text = f"Settings: {problems[0]}" if problems else ""
        if text:
            self.message.setText(text)
        elif self.message.text() == self._settings_problem:
            self.message.setText("")
        self._settings_problem = text

    def _device_type(self) -> str:
        dev = self.device_selector.device()
        if dev == "auto":
            cuda = any(d.id.startswith("cuda") and d.available for d in list_devices())
            return "cuda" if cuda else "cpu"
        return dev.split(":")[0]

    def _device_changed(self, *_):
        self.compile.setEnabled(True)
        self._show_precision()

    def _show_precision(self, chosen: str | None = None) -> None:
        """Beside the precision choice: the path a run takes (what auto picks on this device and why),
        or the path the running or opened run took (`chosen`, from its started event or config.json)."""
        def short(path: str) -> str:   # the label is narrow; its tooltip has the whole line
            return path.split(" (")[0].replace(" autocast", "").replace(" with gradient scaling", "")

        if chosen:
            self.precision_label.setText(f"run: {short(chosen)}")
            self.precision_label.setToolTip(f"This run trains with {chosen}")
            return
        amp = self.amp.currentData()
        try:
            kind = self._device_type()
            text = describe(kind, auto_amp(kind) if amp == "auto" else amp)
        except (DenoiseError, RuntimeError, OSError):   # a device that cannot be asked: training decides
            text = "decided when training starts"
        self.precision_label.setText(("auto → " if amp == "auto" else "→ ") + short(text))
        self.precision_label.setToolTip(f"Training on this device will use {text}")

    def _data_chosen(self, index: int) -> None:
        text = self.data.itemText(index)
        if text == FOLDER_LABEL:
            folder = QFileDialog.getExistingDirectory(self, "Folder of training images")
            self.set_data_folder(folder or None)
        else:
            self._apply_recipe(DATA_LABELS.get(text, text))

    def _apply_recipe(self, data: str) -> None:
        """The settings the plan recommends for this data source (core.plan.recipe); leaving a source
        puts back the defaults it had changed. Offers the source's recommended preset."""
        new = recipe(data)
        defaults = TrainConfig().to_dict()
        for key in self._data_recipe:
            if key not in new and key in defaults:
                self._set_setting(key, DEFAULT_STEPS if key == "steps" else defaults[key])
        for key, value in new.items():
            self._set_setting(key, value)
        self._data_recipe = new
        if new and not self.running:   # the status line is the run's while one trains
            changed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in new.items())
            self.status.setText(f"Settings for {data}: {changed}."
                                + (" Then sample from it in the Sample tab." if new.get("noise") == "ddpm" else ""))
        preset = RECOMMENDED_PRESET.get(data)
        if preset and self.doc.spec.name != preset:
            self.preset_button.setText(f"Load {preset}")
            self.preset_button.setToolTip(f"Load the {preset} preset, the network recommended for {data}, into "
                                          "the model builder")
            self.preset_button.setProperty("preset", preset)
            self.preset_button.show()
        else:
            self.preset_button.hide()
        self._settings_changed()   # a correlated-noise problem depends on whether the data gets noise added

    def _set_setting(self, key: str, value) -> None:
        widgets = {"crop": self.crop, "batch_size": self.batch, "steps": self.steps, "lr": self.lr,
                   "timesteps": self.timesteps, "seed": self.seed, "gain": self.gain, "read": self.read,
                   "blur": self.blur}
        combos = {"noise": self.noise, "schedule": self.schedule, "objective": self.objective}
        if key in widgets:
            widgets[key].setValue(value)
        elif key in combos:
            combos[key].setCurrentText(str(value))
        elif key == "synthetic_noise":
            self.synthetic.setChecked(bool(value))
        elif key == "sigma":
            self.sigma_lo.setValue(value[0])
            self.sigma_hi.setValue(value[1])

    RUN_SETTINGS = ("objective", "synthetic_noise", "noise", "sigma", "gain", "read", "blur", "schedule", "timesteps",
                    "crop", "batch_size", "steps", "lr", "seed")

    def show_settings(self, cfg: TrainConfig) -> None:
        """Put a run's settings in the panel (Open run), its data source first (whose recipe would
        otherwise change them after)."""
        self.set_data(cfg.data)
        for key in self.RUN_SETTINGS:
            self._set_setting(key, getattr(cfg, key))
        self._settings_changed()

    def _load_recommended_preset(self) -> None:
        preset = self.preset_button.property("preset")
        if preset:
            self.preset_requested.emit(str(preset))
            if self.doc.spec.name == preset:
                self.preset_button.hide()

    def set_data(self, data: str) -> None:
        """Choose a data source by its config name: builtin, shapes, or a folder."""
        if data in DATA_LABELS.values():
            label = next(k for k, v in DATA_LABELS.items() if v == data)
            self.data.setCurrentText(label)
            self._data_chosen(self.data.currentIndex())
        else:
            self.set_data_folder(data)

    def set_data_folder(self, folder: str | None) -> None:
        self.data.blockSignals(True)
        if folder:
            if self.data.findText(folder) < 0:
                self.data.insertItem(self.data.count() - 1, folder)
            self.data.setCurrentText(folder)
        else:
            self.data.setCurrentIndex(0)
        self.data.blockSignals(False)
        self._apply_recipe(folder or "builtin")

    def config(self) -> TrainConfig:
        """The run the panel's settings describe; the crop is the one it would train with (round_crop)."""
        dev = self.device_selector.device()
        data = self.data.currentText()
        objective = self.objective.currentData()
        return TrainConfig(
            data="builtin" if data == FOLDER_LABEL else DATA_LABELS.get(data, data),
            steps=self.steps.value(), batch_size=self.batch.value(), crop=self._rounded_crop(), lr=self.lr.value(),
            seed=self.seed.value(), device=dev, objective=objective, noise=self.noise.currentText(),
            sigma=(self.sigma_lo.value(), max(self.sigma_lo.value(), self.sigma_hi.value())),
            gain=self.gain.value(), read=self.read.value(), blur=self.blur.value(),
            synthetic_noise=OBJECTIVES[objective].self_supervised and self.synthetic.isChecked(),
            schedule=self.schedule.currentText(), timesteps=self.timesteps.value(),
            amp=self.amp.currentData(),
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
        spec, cfg = self.doc.spec, self.config()   # its crop is already rounded for the objective
        self.crop.setValue(cfg.crop)
        a = analyze(spec, cfg.crop)
        if not a.valid:
            self.message.setText(f"Fix the network before training: {a.errors[0]}")
            return False
        problems = self.settings_problems(cfg)
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
        self.preset_button.hide()
        self._show_precision()
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

    @property
    def running(self) -> bool:
        """A run of this app's is training (or saving after Stop)."""
        return self.session.running

    def prewarm(self) -> None:
        """Start a training process ahead of time, so that Start trains at once (training_session)."""
        self.session.prewarm()

    def kill(self) -> None:
        """Hard stop of the training process (a second Ctrl+C); the run keeps its last checkpoint."""
        self.session.kill()

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

    # --- events: one table for the live child's and for a followed run folder's ---
    # Each handler takes (event, live): live events come from this app's training child, the others
    # are read back from a run folder's events (an opened or followed run). Terminal events of a
    # live run arrive by `session.ended` (on_ended); for a followed run they end the following.
    def on_event(self, ev) -> None:
        self._dispatch(ev, live=True)

    def _dispatch(self, ev, live: bool) -> None:
        dispatch(self._handlers, ev, live)

    @property
    def _handlers(self) -> dict:
        return {StartedEvent: self._on_started, StepEvent: self._on_step, EvalEvent: self._on_eval,
                PreviewEvent: self._on_preview, CheckpointEvent: self._on_checkpoint,
                FinishedEvent: self._on_ended_event, FailedEvent: self._on_ended_event,
                RecoveredEvent: self._on_recovered}

    def _on_started(self, ev, live: bool) -> None:
        if ev.precision:
            self._show_precision(ev.precision)
        if not live:   # a resumed run starts again after its first "finished"
            self.follow_total, self._follow_ended = ev.total_steps, None
            return
        self.first_step = ev.step
        self.total_steps = ev.total_steps
        self.start_time = time.time()
        self.status.setText(f"Training {ev.params:,} parameters on {ev.device}"
                            + (f" ({ev.precision})" if ev.precision else "")
                            + (f", resumed from step {ev.resumed_from}" if ev.resumed_from else ""))
        if ev.skipped:
            self.message.setText(f"{len(ev.skipped)} unreadable image(s) skipped: " + "; ".join(ev.skipped[:3]))

    def _on_step(self, ev, live: bool) -> None:
        self.loss_plot.add_loss(ev.step, ev.loss if ev.loss is not None else math.nan)
        if ev.grad_norms:
            self.grad_strip.add(ev.step, ev.grad_norms)
        if not live:
            self.follow_steps = ev.step
            return
        self.last_step = ev.step
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

    def _on_eval(self, ev, live: bool) -> None:
        self.loss_plot.add_psnr(ev.step, ev.psnr)

    def _on_preview(self, ev, live: bool) -> None:
        if live and ev.images:
            self.preview.emit(ev.step, ev.images, ev.psnr, ev.stats, True)
        elif not live and ev.path:
            self._follow_preview = ev   # only the newest one read is shown

    def _on_checkpoint(self, ev, live: bool) -> None:
        if live and self.current_run is not None:
            self.checkpoint_saved.emit(str(self.current_run / ev.path))
        elif not live and not ev.best:
            self.follow_checkpoint = ev.step

    def _on_recovered(self, ev, live: bool) -> None:
        if live:   # the run goes on: a note, not an error
            self.message.setText(f"Recovered from a loss spike: {ev.message}")

    def _on_ended_event(self, ev, live: bool) -> None:
        if not live:
            self._follow_ended = "finished" if ev.name == "finished" else f"failed: {ev.message}"

    def on_ended(self, ev) -> None:
        self._set_running(False)
        if ev.name == "finished":
            why = FINISH_REASONS[ev.reason]
            self.progress.setValue(int(100 * ev.step / max(self.total_steps, 1)))
            self.status.setText(f"Finished at step {ev.step:,} ({why}); the last checkpoint is in the run folder.")
        else:
            kept = f" The last good checkpoint is kept: {ev.checkpoint}." if ev.checkpoint else ""
            self.message.setText(f"Training stopped: {app_words(ev.message)}{kept} Change the settings and press Start "
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
        self.preset_button.hide()
        self._show_precision()
        try:   # config.json records the precision path at start-up (older runs: their started event)
            precision = run.config().get("precision")
        except (DenoiseError, OSError, AttributeError):
            precision = None
        if precision:
            self._show_precision(str(precision))
        try:   # the run's settings in the panel: what trained it, ready to train another like it
            self.show_settings(TrainConfig.from_dict(run.config(), source=str(run.config_path)))
        except (DenoiseError, OSError):
            pass   # an old or damaged config.json: the panel keeps its settings
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
        self._follow_ended, self._follow_preview = None, None
        for e in events:
            self._dispatch(e, live=False)
        ended, last_preview = self._follow_ended, self._follow_preview
        if ended is None and not alive:
            ended = "ended: " + gone_message(run.path, self.follow_checkpoint)
        if live and ended is None:
            self.progress.setValue(int(100 * self.follow_steps / max(self.follow_total, 1)))
            self.status.setText(f"Following {run.path}: step {self.follow_steps:,}/{self.follow_total:,}")
        if last_preview is not None:
            try:
                strip = load_image(run.path / last_preview.path).pixels
                self.preview.emit(last_preview.step, split_strip(strip), last_preview.psnr, last_preview.stats,
                                  False)
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

