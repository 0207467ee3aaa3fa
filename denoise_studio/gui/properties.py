"""The properties editor for the selected block, built from the block type's declared
parameters, and the model summary: totals, network settings and every problem with its fix."""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from denoise_studio.core.blocks import ACTIVATIONS, BLOCK_TYPES, block_type_name, parse_norm, show
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.limits import cap
from denoise_studio.core.spec import CONDITIONING
from denoise_studio.format import count, shape_text, size_bytes
from denoise_studio.gui import heavy
from denoise_studio.gui.document import SpecDocument
from denoise_studio.gui.wording import app_words

NORM_KINDS = ("group", "batch", "instance", "layer", "none")
SPIN_MAX = 2**31 - 1     # QSpinBox holds a C int: a larger Python int raises OverflowError
INVALID = "invalid"      # the dynamic property a stylesheet marks a field's editor with
INVALID_STYLE = "*[invalid=\"true\"] { border: 1px solid #b3261e; background: #fdecea; }"
RAW_ROLE = Qt.ItemDataRole.UserRole + 7   # a combo item that only displays a file's invalid value


def mark_invalid(w: QWidget, why: str | None) -> None:
    """Flag (why: the reason) or unflag (None) an editor whose document value it cannot hold. The
    document keeps that value until the user edits the field; the problems list says how to fix it."""
    if bool(w.property(INVALID)) != bool(why):
        w.setProperty(INVALID, bool(why))
        w.style().unpolish(w)
        w.style().polish(w)
    if w.property("help") is None:
        w.setProperty("help", w.toolTip())
    w.setToolTip(why or w.property("help"))


def _why(name: str, value) -> str:
    return f'"{name}" is {show(value)} in this network; set a value here to replace it.'


def set_spin(w: QSpinBox, value, none_text: str = "", name: str = "") -> None:
    """Show value when the spin box can hold it; anything else (a string, a list, an integer past
    the range) is shown as its text in place of the minimum, never passed to setValue. Signals
    must be blocked by the caller; `edited` records that what is shown came from the document."""
    if value is None and none_text:
        w.setSpecialValueText(none_text)
        w.setValue(w.minimum())
        mark_invalid(w, None)
    elif isinstance(value, int) and not isinstance(value, bool) and w.minimum() <= value <= w.maximum() \
            and not (none_text and value == w.minimum()):
        w.setSpecialValueText(none_text)
        w.setValue(value)
        mark_invalid(w, None)
    else:
        w.setSpecialValueText(show(value, 24))
        w.setValue(w.minimum())
        mark_invalid(w, _why(name, value))
    w.setProperty("edited", False)


def spin(lo: int, hi: int, on_edit) -> QSpinBox:
    """A spin box that reports only the user's edits: focus leaving an untouched box (whose text may
    stand for an invalid value it cannot hold) changes nothing."""
    w = QSpinBox()
    w.setRange(lo, min(hi, SPIN_MAX))
    w.setProperty("edited", False)
    w.textChanged.connect(lambda _: w.setProperty("edited", True))   # blocked while set_spin runs

    def finished():
        if w.property("edited"):
            w.setProperty("edited", False)
            on_edit(w.value())
    w.editingFinished.connect(finished)
    return w


def set_combo(w: QComboBox, value, name: str = "") -> None:
    """Select value among the combo's choices; any other value is shown as one extra item that
    only displays it (choosing it changes nothing)."""
    for i in reversed(range(w.count())):
        if w.itemData(i, RAW_ROLE):
            w.removeItem(i)
    i = w.findText(value) if isinstance(value, str) and value else -1
    if i >= 0 and not w.itemData(i, RAW_ROLE):
        w.setCurrentIndex(i)
        mark_invalid(w, None)
        return
    w.addItem(show(value, 30))
    w.setItemData(w.count() - 1, True, RAW_ROLE)
    w.setCurrentIndex(w.count() - 1)
    mark_invalid(w, _why(name, value))


def combo(choices, on_edit) -> QComboBox:
    w = QComboBox()
    w.addItems(list(choices))

    def activated(i):
        if not w.itemData(i, RAW_ROLE):
            on_edit(w.currentText())
    w.activated.connect(activated)
    return w


class NormEditor(QWidget):
    """group:N as a kind plus a group count."""

    def __init__(self, on_change, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.kind = combo(NORM_KINDS, lambda _: on_change(self.value()))
        self.groups = spin(1, 512, lambda _: on_change(self.value()))
        self.groups.setPrefix("groups ")
        lay.addWidget(self.kind, 1)
        lay.addWidget(self.groups, 1)

    def value(self) -> str:
        k = self.kind.currentText()
        return f"group:{self.groups.value()}" if k == "group" else k

    def set_value(self, norm) -> None:
        try:
            g = parse_norm(norm)
        except ValueError:
            g = None
            set_combo(self.kind, norm, "norm")
        else:
            set_combo(self.kind, "group" if g else norm, "norm")
        set_spin(self.groups, g or 8, name="norm")
        self.groups.setEnabled(bool(g))


class BlockProperties(QGroupBox):
    """Editors for the selected block's fields; each change is one undoable edit."""

    def __init__(self, doc: SpecDocument, parent=None):
        super().__init__("Block", parent)
        self.setObjectName("BlockProperties")
        self.setAccessibleName("Block properties")
        self.doc = doc
        self.form = QFormLayout(self)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.editors: dict[str, QWidget] = {}
        self._shown: tuple | None = None
        doc.selection_changed.connect(lambda _: self.refresh())
        doc.changed.connect(self.refresh)
        self.refresh()

    def _clear(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors = {}

    def refresh(self) -> None:
        i = self.doc.selected
        blocks = self.doc.spec.blocks
        t = block_type_name(blocks[i]) if 0 <= i < len(blocks) else None
        if t is None:
            self._clear()
            self._shown = None
            self.setTitle("Block" if i < 0 else f"Block {i}")
            text = ("Select a block to edit it, or add one from the palette." if not 0 <= i < len(blocks) else
                    f"Its type is {show(blocks[i].get('type'))}, not a block type: fix it from the problems "
                    "list, or delete the block and add one from the palette.")
            label = QLabel(text)
            label.setWordWrap(True)
            self.form.addRow(label)
            return
        b = blocks[i]
        bt = BLOCK_TYPES[t]
        key = (i, t, tuple(self.doc.ids_before(i)))
        if key != self._shown:          # rebuild only when the editors themselves change
            self._build(i, bt)
            self._shown = key
        self.setTitle(f"Block {i}: {bt.label}")
        for p in bt.params:
            self._set(self.editors[p.name], p, b.get(p.name, p.default))
        self._set(self.editors["id"], None, b.get("id"))

    def _build(self, i: int, bt) -> None:
        self._clear()
        desc = QLabel(bt.description)
        desc.setWordWrap(True)
        desc.setStyleSheet("color: #555;")
        self.form.addRow(desc)
        for p in bt.params:
            set_value = (lambda name: lambda v: self.doc.set_field(self.doc.selected, name, v))(p.name)
            if p.kind in ("int", "kernel"):
                w = spin(0 if p.optional else 1, cap("KERNEL" if p.kind == "kernel" else "CHANNELS"),
                         lambda v, f=set_value: f(v or None))   # 0 is "same as input": absent
                if p.kind == "kernel":
                    w.setSingleStep(2)
            elif p.kind == "bool":
                w = QCheckBox()
                w.toggled.connect(set_value)
            elif p.kind == "norm":
                w = NormEditor(set_value)
            elif p.kind == "source":
                w = combo(self.doc.ids_before(i), set_value)
            else:
                w = combo(p.choices or ACTIVATIONS, set_value)
            w.setObjectName(f"field_{p.name}")
            w.setAccessibleName(p.name)
            w.setToolTip(p.help)
            self.editors[p.name] = w
            self.form.addRow(p.name.replace("_", " "), w)
        ident = QLineEdit()
        ident.setObjectName("field_id")
        ident.setPlaceholderText("name it to merge it later (U-Net skip)")
        # only a typed change is an edit: leaving the field must not drop an id the field cannot show
        ident.editingFinished.connect(lambda: ident.isModified() and self.doc.set_field(
            self.doc.selected, "id", ident.text().strip() or None))
        self.editors["id"] = ident
        self.form.addRow("id", ident)

    @staticmethod
    def _set(w: QWidget, p, value) -> None:
        name = p.name if p else "id"
        blockers = [QSignalBlocker(x) for x in (w, *w.findChildren(QWidget))]
        if isinstance(w, QSpinBox):
            set_spin(w, value, "same as input" if p.optional else "", name)
        elif isinstance(w, QCheckBox):
            w.setChecked(value is True)
            mark_invalid(w, None if isinstance(value, bool) else _why(name, value))
        elif isinstance(w, NormEditor):
            w.set_value(value)
        elif isinstance(w, QComboBox):
            set_combo(w, value, name)
        elif isinstance(w, QLineEdit) and not w.hasFocus():
            ok = value is None or (isinstance(value, str) and value != "")   # absent, or a name
            w.setText(value if isinstance(value, str) else "")
            mark_invalid(w, None if ok else _why(name, value))
            w.setPlaceholderText("name it to merge it later (U-Net skip)" if ok else show(value))
        del blockers


class ModelSummary(QWidget):
    """Network settings, totals at the chosen input size, and every problem with a Fix button."""

    def __init__(self, doc: SpecDocument, parent=None):
        super().__init__(parent)
        self.setObjectName("ModelSummary")
        self.setAccessibleName("Model summary")
        self.doc = doc
        self.objective, self.crop = "supervised", 64   # the training panel's choice (set_objective)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.in_channels = spin(1, 64, lambda v: doc.set_top("in_channels", v))
        self.in_channels.setPrefix("in ")
        self.in_channels.setToolTip("input channels: 3 for RGB, 1 for grey")
        self.conditioning = combo(CONDITIONING, lambda v: doc.set_top("conditioning", v))
        self.conditioning.setToolTip("none; noise_level (σ as an extra input channel); "
                                     "timestep (embedding added in residual blocks)")
        self.size = QSpinBox()
        self.size.setRange(8, 4096)
        self.size.setSingleStep(16)
        self.size.setPrefix("size ")
        self.size.setToolTip("input height and width used for shapes, FLOPs and memory")
        self.size.setValue(doc.size)
        self.size.valueChanged.connect(doc.set_size)
        for w in (self.in_channels, self.conditioning, self.size):
            row.addWidget(w)
        lay.addLayout(row)
        self.totals = QLabel()
        self.totals.setObjectName("ModelTotals")
        self.totals.setWordWrap(True)
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.totals)
        self.issues = QListWidget()
        self.issues.setObjectName("IssueList")
        self.issues.setAccessibleName("Problems")
        self.issues.setWordWrap(True)
        self.issues.itemClicked.connect(self._issue_clicked)
        lay.addWidget(self.issues, 1)
        self.fix_button = QPushButton("Fix selected problem")
        self.fix_button.setObjectName("FixButton")
        self.fix_button.clicked.connect(self.fix_selected)
        lay.addWidget(self.fix_button)
        doc.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        a, spec = self.doc.analysis, self.doc.spec
        for w in (self.in_channels, self.conditioning):
            w.blockSignals(True)
        set_spin(self.in_channels, spec.in_channels, name="in_channels")
        set_combo(self.conditioning, spec.conditioning, "conditioning")
        for w in (self.in_channels, self.conditioning):
            w.blockSignals(False)
        if a is None:   # torch is loading
            self.totals.setText(f"{heavy.LOADING_TEXT} shapes, parameter counts and problems appear when it "
                                "is ready; the network can be edited meanwhile.")
            self.issues.clear()
            self.issues.addItem(heavy.LOADING_TEXT)
            self.fix_button.setEnabled(False)
            return
        out = shape_text(a.blocks[-1].output_shape) if a.blocks else "—"
        rf = "global (attention)" if a.receptive_field == float("inf") else f"{int(a.receptive_field)} px"
        needs = self.objective_problems()   # what the training panel's objective needs of the network
        if not a.valid:
            state = f"<b style='color:#b3261e'>{len(a.errors)} error(s)</b>"
        elif needs:   # it builds, but cannot train with the objective chosen: not "valid" for this use
            state = f"<b style='color:#b3261e'>builds; {len(needs)} problem(s) for {self.objective} training</b>"
        else:
            state = "<b style='color:#1e7b34'>valid</b>"
        self.totals.setText(
            f"{state} · <b>{a.total_params:,}</b> parameters · {count(a.total_flops)}FLOPs · "
            f"{size_bytes(a.activation_bytes)} activations · receptive field {rf} · output {out} "
            f"at {a.size}×{a.size}")
        self.issues.clear()
        for issue in a.issues:
            where = f"Block {issue.block}" if issue.block is not None else "Network"
            item = QListWidgetItem(f"{issue.level.upper()} · {where}: {issue.message}\n"
                                   f"     Fix: {issue.fix}" + ("  [one click]" if issue.patch else ""))
            item.setData(Qt.ItemDataRole.UserRole, issue)
            item.setForeground(Qt.GlobalColor.darkRed if issue.level == "error" else Qt.GlobalColor.darkYellow)
            self.issues.addItem(item)
        for message in needs:   # no one-click fix: the network or the objective has to change
            item = QListWidgetItem(f"ERROR · Network, for {self.objective} training: {message}")
            item.setToolTip(f"The training panel's objective is {self.objective}; choose supervised there, or "
                            "change the network as this says.")
            item.setForeground(Qt.GlobalColor.darkRed)
            self.issues.addItem(item)
        if not a.issues and not needs:
            self.issues.addItem("No problems: this network builds and predicts noise at the input's size.")
        self.fix_button.setEnabled(any(i.patch for i in a.issues))

    def set_objective(self, objective: str, crop: int) -> None:
        """The objective and crop chosen in the training panel: a self-supervised one adds what it
        needs of the network to the problems list (core.objectives.objective_problems)."""
        if (objective, crop) != (self.objective, self.crop):
            self.objective, self.crop = objective, crop
            self.refresh()

    def objective_problems(self) -> list[str]:
        from denoise_studio.core.objectives import objective_problems  # torch: once the analysis is there
        try:
            return [app_words(p) for p in objective_problems(self.doc.spec, self.objective, self.crop)]
        except DenoiseError as e:   # an objective this version does not know
            return [app_words(str(e))]

    def _issue_clicked(self, item) -> None:
        issue = item.data(Qt.ItemDataRole.UserRole)
        if issue is not None and issue.block is not None:
            self.doc.select(issue.block)

    def fix_selected(self) -> None:
        item = self.issues.currentItem()
        issue = item.data(Qt.ItemDataRole.UserRole) if item else None
        if (issue is None or not issue.patch) and self.doc.analysis is not None:
            issue = next((i for i in self.doc.analysis.issues if i.patch), None)
        if issue is not None:
            self.doc.apply_fix(issue)
