"""The properties editor for the selected block, built from the block type's declared
parameters, and the model summary: totals, network settings and every problem with its fix."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from denoise_studio.core.blocks import ACTIVATIONS, BLOCK_TYPES, parse_norm
from denoise_studio.core.spec import CONDITIONING
from denoise_studio.format import count, shape_text, size_bytes
from denoise_studio.gui.document import SpecDocument

NORM_KINDS = ("group", "batch", "instance", "layer", "none")


class NormEditor(QWidget):
    """group:N as a kind plus a group count."""

    def __init__(self, on_change, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.kind = QComboBox()
        self.kind.addItems(NORM_KINDS)
        self.groups = QSpinBox()
        self.groups.setRange(1, 512)
        self.groups.setPrefix("groups ")
        lay.addWidget(self.kind, 1)
        lay.addWidget(self.groups, 1)
        self.kind.activated.connect(lambda _: on_change(self.value()))
        self.groups.editingFinished.connect(lambda: on_change(self.value()))

    def value(self) -> str:
        k = self.kind.currentText()
        return f"group:{self.groups.value()}" if k == "group" else k

    def set_value(self, norm) -> None:
        try:
            g = parse_norm(norm)
        except ValueError:
            g = None
        self.kind.setCurrentText("group" if g else str(norm))
        self.groups.setValue(g or 8)
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
        if not 0 <= i < len(blocks) or blocks[i].get("type") not in BLOCK_TYPES:
            self._clear()
            self._shown = None
            self.setTitle("Block")
            self.form.addRow(QLabel("Select a block to edit it, or add one from the palette."))
            return
        b = blocks[i]
        bt = BLOCK_TYPES[b["type"]]
        key = (i, b["type"], tuple(self.doc.ids_before(i)))
        if key != self._shown:          # rebuild only when the editors themselves change
            self._build(i, bt)
            self._shown = key
        self.setTitle(f"Block {i}: {bt.label}")
        for p in bt.params:
            self._set(self.editors[p.name], p, b.get(p.name, p.default))
        self._set(self.editors["id"], None, b.get("id", ""))

    def _build(self, i: int, bt) -> None:
        self._clear()
        desc = QLabel(bt.description)
        desc.setWordWrap(True)
        desc.setStyleSheet("color: #555;")
        self.form.addRow(desc)
        for p in bt.params:
            set_value = (lambda name: lambda v: self.doc.set_field(self.doc.selected, name, v))(p.name)
            if p.kind in ("int", "kernel"):
                w = QSpinBox()
                w.setRange(0 if p.optional else 1, 4096)
                if p.optional:
                    w.setSpecialValueText("same as input")
                if p.kind == "kernel":
                    w.setSingleStep(2)
                w.editingFinished.connect((lambda w, f: lambda: f(w.value() or None))(w, set_value))
            elif p.kind == "bool":
                w = QCheckBox()
                w.toggled.connect(set_value)
            elif p.kind == "norm":
                w = NormEditor(set_value)
            elif p.kind == "source":
                w = QComboBox()
                w.addItems(self.doc.ids_before(i))
                w.activated.connect((lambda w, f: lambda _: f(w.currentText()))(w, set_value))
            else:
                w = QComboBox()
                w.addItems(list(p.choices or ACTIVATIONS))
                w.activated.connect((lambda w, f: lambda _: f(w.currentText()))(w, set_value))
            w.setObjectName(f"field_{p.name}")
            w.setAccessibleName(p.name)
            w.setToolTip(p.help)
            self.editors[p.name] = w
            self.form.addRow(p.name.replace("_", " "), w)
        ident = QLineEdit()
        ident.setObjectName("field_id")
        ident.setPlaceholderText("name it to merge it later (U-Net skip)")
        ident.editingFinished.connect(lambda: self.doc.set_field(self.doc.selected, "id", ident.text().strip() or None))
        self.editors["id"] = ident
        self.form.addRow("id", ident)

    @staticmethod
    def _set(w: QWidget, p, value) -> None:
        w.blockSignals(True)
        if isinstance(w, QSpinBox):
            w.setValue(value if isinstance(value, int) and not isinstance(value, bool) else 0)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, NormEditor):
            for child in (w.kind, w.groups):
                child.blockSignals(True)
            w.set_value(value)
            for child in (w.kind, w.groups):
                child.blockSignals(False)
        elif isinstance(w, QComboBox):
            if w.findText(str(value)) < 0 and value is not None:
                w.addItem(str(value))
            w.setCurrentText(str(value))
        elif isinstance(w, QLineEdit):
            if not w.hasFocus():
                w.setText(value if isinstance(value, str) else "")
        w.blockSignals(False)


class ModelSummary(QWidget):
    """Network settings, totals at the chosen input size, and every problem with a Fix button."""

    def __init__(self, doc: SpecDocument, parent=None):
        super().__init__(parent)
        self.setObjectName("ModelSummary")
        self.setAccessibleName("Model summary")
        self.doc = doc
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.in_channels = QSpinBox()
        self.in_channels.setRange(1, 64)
        self.in_channels.setPrefix("in ")
        self.in_channels.setToolTip("input channels: 3 for RGB, 1 for grey")
        self.in_channels.editingFinished.connect(lambda: doc.set_top("in_channels", self.in_channels.value()))
        self.conditioning = QComboBox()
        self.conditioning.addItems(CONDITIONING)
        self.conditioning.setToolTip("none; noise_level (σ as an extra input channel); "
                                     "timestep (embedding added in residual blocks)")
        self.conditioning.activated.connect(lambda _: doc.set_top("conditioning", self.conditioning.currentText()))
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
        for w, v in ((self.in_channels, spec.in_channels), (self.conditioning, spec.conditioning)):
            w.blockSignals(True)
            if isinstance(w, QSpinBox):
                w.setValue(v if isinstance(v, int) else 3)
            else:
                w.setCurrentText(str(v))
            w.blockSignals(False)
        out = shape_text(a.blocks[-1].output_shape) if a.blocks else "—"
        rf = "global (attention)" if a.receptive_field == float("inf") else f"{int(a.receptive_field)} px"
        state = ("<b style='color:#1e7b34'>valid</b>" if a.valid else
                 f"<b style='color:#b3261e'>{len(a.errors)} error(s)</b>")
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
        if not a.issues:
            self.issues.addItem("No problems: this network builds and predicts noise at the input's size.")
        self.fix_button.setEnabled(any(i.patch for i in a.issues))

    def _issue_clicked(self, item) -> None:
        issue = item.data(Qt.ItemDataRole.UserRole)
        if issue is not None and issue.block is not None:
            self.doc.select(issue.block)

    def fix_selected(self) -> None:
        item = self.issues.currentItem()
        issue = item.data(Qt.ItemDataRole.UserRole) if item else None
        if issue is None or not issue.patch:
            issue = next((i for i in self.doc.analysis.issues if i.patch), None)
        if issue is not None:
            self.doc.apply_fix(issue)
