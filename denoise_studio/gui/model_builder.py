"""The model builder: palette, stack, properties and summary over one SpecDocument."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QSplitter, QToolButton, QVBoxLayout, QWidget

from denoise_studio.gui.block_stack import BlockPalette, BlockStack
from denoise_studio.gui.document import SpecDocument
from denoise_studio.gui.properties import INVALID_STYLE, BlockProperties, ModelSummary


class ModelBuilder(QWidget):
    def __init__(self, doc: SpecDocument | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("ModelBuilder")
        self.setAccessibleName("Model builder")
        self.setStyleSheet(INVALID_STYLE)   # editors showing a value they cannot hold
        self.doc = doc or SpecDocument(parent=self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        top = QHBoxLayout()
        self.name = QLineEdit()
        self.name.setObjectName("SpecName")
        self.name.setPlaceholderText("network name")
        # only a typed change renames: leaving the field must not rewrite a name it shows differently
        self.name.editingFinished.connect(lambda: self.name.isModified() and self.doc.set_top(
            "name", self.name.text().strip() or "untitled"))
        top.addWidget(QLabel("Network"))
        top.addWidget(self.name, 1)
        lay.addLayout(top)

        self.palette = BlockPalette()
        self.palette.add_requested.connect(lambda t: self.doc.add_block(t))
        lay.addWidget(self.palette)

        tools = QHBoxLayout()
        self.buttons = {}
        for key, text, tip, slot in (
                ("up", "▲", "Move the block up (Ctrl+Up)", lambda: self.move_selected(-1)),
                ("down", "▼", "Move the block down (Ctrl+Down)", lambda: self.move_selected(+1)),
                ("duplicate", "Duplicate", "Duplicate the block (Ctrl+D)", self.duplicate_selected),
                ("delete", "Delete", "Delete the block (Del)", self._delete)):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setObjectName(f"Block{key.capitalize()}Button")
            b.clicked.connect(slot)
            tools.addWidget(b)
            self.buttons[key] = b
        tools.addStretch(1)
        self.hint = QLabel()
        self.hint.setStyleSheet("color: #666;")
        tools.addWidget(self.hint)
        lay.addLayout(tools)

        split = QSplitter(Qt.Orientation.Vertical)
        self.stack = BlockStack(self.doc)
        split.addWidget(self.stack)
        lower = QSplitter(Qt.Orientation.Horizontal)
        self.properties = BlockProperties(self.doc)
        self.summary = ModelSummary(self.doc)
        lower.addWidget(self.properties)
        lower.addWidget(self.summary)
        lower.setSizes([260, 340])
        split.addWidget(lower)
        split.setSizes([520, 330])
        split.setStretchFactor(0, 3)
        lay.addWidget(split, 1)
        self.doc.changed.connect(self.refresh)
        self.doc.selection_changed.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        if not self.name.hasFocus():
            self.name.setText(self.doc.spec.name)   # setText also clears isModified
        n = len(self.doc.spec.blocks)
        sel = self.doc.selected
        self.buttons["up"].setEnabled(sel > 0)
        self.buttons["down"].setEnabled(0 <= sel < n - 1)
        self.buttons["duplicate"].setEnabled(sel >= 0)
        self.buttons["delete"].setEnabled(sel >= 0)
        self.hint.setText(f"{n} block(s) · drag to reorder")

    def move_selected(self, delta: int) -> None:
        """Move the selected block up (−1) or down (+1); nothing when none is selected."""
        if self.doc.selected >= 0:
            self.doc.move_block(self.doc.selected, self.doc.selected + delta)

    def duplicate_selected(self) -> None:
        if self.doc.selected >= 0:
            self.doc.duplicate_block(self.doc.selected)

    def _delete(self) -> None:
        if self.doc.selected >= 0:
            self.doc.remove_block(self.doc.selected)
