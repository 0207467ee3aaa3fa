"""The architecture being edited: a spec, its analysis, its undo stack and its file.

Every edit makes a new spec and pushes one undo command holding the old and the new, so
undo restores exactly what was there. Widgets call the edit methods and redraw on
`changed`; none of them reaches into another. The analysis (shapes, parameter counts,
problems) needs torch: it is None until torch is ready (heavy.py), then `changed` fires with it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from denoise_studio.core.blocks import block_type, block_type_name
from denoise_studio.core.spec import ArchitectureSpec, apply_patch
from denoise_studio.gui import heavy

if TYPE_CHECKING:
    from denoise_studio.core.analysis import Analysis, Issue


class _SpecCommand(QUndoCommand):
    def __init__(self, doc: SpecDocument, old: ArchitectureSpec, new: ArchitectureSpec, text: str,
                 select_after: int | None):
        super().__init__(text)
        self.doc, self.old, self.new = doc, old, new
        self.select_before, self.select_after = doc.selected, select_after

    def redo(self):
        self.doc._apply(self.new, self.select_after)

    def undo(self):
        self.doc._apply(self.old, self.select_before)


class SpecDocument(QObject):
    changed = Signal()              # the spec or its analysis changed
    selection_changed = Signal(int)  # -1: nothing selected
    path_changed = Signal()

    def __init__(self, spec: ArchitectureSpec | None = None, parent=None):
        super().__init__(parent)
        self.spec = spec or ArchitectureSpec()
        self.size = 64
        self.path: Path | None = None
        self.selected = -1
        self.undo_stack = QUndoStack(self)
        self.analysis: Analysis | None = None   # None until torch is ready
        heavy.when_ready(self._analyse_now)

    # --- state ---
    def _analyse(self) -> None:
        if heavy.ready_now():
            from denoise_studio.core.analysis import analyze
            self.analysis = analyze(self.spec, self.size)

    def _analyse_now(self) -> None:
        """Torch is ready: the analysis of the spec shown so far."""
        self._analyse()
        if self.analysis is not None:
            self.changed.emit()

    def _apply(self, spec: ArchitectureSpec, select: int | None = None) -> None:
        self.spec = spec
        self._analyse()
        self.changed.emit()
        if select is not None:
            self.select(select)

    def select(self, index: int) -> None:
        index = index if 0 <= index < len(self.spec.blocks) else -1
        if index != self.selected:
            self.selected = index
            self.selection_changed.emit(index)

    def set_size(self, size: int) -> None:
        """The input size for shape inference: a view setting, not an edit."""
        if size != self.size:
            self.size = size
            self._apply(self.spec)

    def load(self, spec: ArchitectureSpec, path: Path | None = None) -> None:
        self.undo_stack.clear()
        self.path = path
        self.selected = -1
        self._apply(spec)
        self.undo_stack.setClean()
        self.selection_changed.emit(-1)
        self.path_changed.emit()

    def mark_saved(self, path: Path) -> None:
        self.path = path
        self.undo_stack.setClean()
        self.path_changed.emit()

    @property
    def modified(self) -> bool:
        return not self.undo_stack.isClean()

    # --- edits (each one undoable step) ---
    def edit(self, new: ArchitectureSpec, text: str, select: int | None = None) -> None:
        if new.to_dict() == self.spec.to_dict():
            return
        self.undo_stack.push(_SpecCommand(self, self.spec, new, text, select))

    def _with_blocks(self, blocks: list[dict]) -> ArchitectureSpec:
        new = self.spec.copy()
        new.blocks = blocks
        return new

    def add_block(self, type_name: str, index: int | None = None) -> None:
        """Insert a new block with its defaults, after the selection by default."""
        bt = block_type(type_name)
        block = bt.defaults()
        if bt.merges_skip and bt.source_param:
            ids = self.ids_before(len(self.spec.blocks) if index is None else index)
            if ids:
                block[bt.source_param] = ids[-1]
        if index is None:
            index = self.selected + 1 if self.selected >= 0 else len(self.spec.blocks)
        blocks = copy.deepcopy(self.spec.blocks)
        blocks.insert(index, block)
        self.edit(self._with_blocks(blocks), f"Add {bt.label.lower()}", index)

    def remove_block(self, index: int) -> None:
        blocks = copy.deepcopy(self.spec.blocks)
        gone = blocks.pop(index)
        self.edit(self._with_blocks(blocks), f"Delete {block_type_name(gone) or 'block'}",
                  min(index, len(blocks) - 1))

    def duplicate_block(self, index: int) -> None:
        blocks = copy.deepcopy(self.spec.blocks)
        clone = copy.deepcopy(blocks[index])
        clone.pop("id", None)   # ids must stay unique
        blocks.insert(index + 1, clone)
        self.edit(self._with_blocks(blocks), f"Duplicate {block_type_name(clone) or 'block'}", index + 1)

    def move_block(self, index: int, to: int) -> None:
        to = max(0, min(to, len(self.spec.blocks) - 1))
        if to == index:
            return
        blocks = copy.deepcopy(self.spec.blocks)
        blocks.insert(to, blocks.pop(index))
        self.edit(self._with_blocks(blocks), "Move block", to)

    def set_field(self, index: int, key: str, value) -> None:
        """Set (or, with None, remove) one field of one block."""
        new = apply_patch(self.spec, {"block": index, "set": {key: value}})
        self.edit(new, f"Set {key}", index)

    def set_top(self, key: str, value) -> None:
        self.edit(apply_patch(self.spec, {"set_top": {key: value}}), f"Set {key}")

    def apply_fix(self, issue: Issue) -> None:
        if issue.patch:
            select = issue.patch.get("block", self.selected)
            self.edit(apply_patch(self.spec, issue.patch), "Fix: " + issue.fix.rstrip("."), select)

    def ids_before(self, index: int) -> list[str]:
        return [b["id"] for b in self.spec.blocks[:index] if isinstance(b.get("id"), str) and b.get("id")]
