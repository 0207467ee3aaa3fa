"""The palette of block types and the stack of blocks, with skip connections drawn.

Rows are indented by resolution level (one step per downsampling), and each U-Net skip
is drawn as a bracket from its source block to its merge, so a U-Net reads as a U.
"""
from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QDrag, QFont, QPainter, QPen
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QStyle, QStyledItemDelegate

from denoise_studio.core.blocks import BLOCK_TYPES, block_type_name, show
from denoise_studio.format import count, shape_text
from denoise_studio.gui.document import SpecDocument

BLOCK_MIME = "application/x-denoise-studio-block"
MARGIN = 34      # left margin for skip brackets
INDENT = 14      # per resolution level


class BlockPalette(QListWidget):
    """Every registered block type: click (or Enter) adds it, drag drops it into the stack."""

    add_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("BlockPalette")
        self.setAccessibleName("Block palette")
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setSpacing(3)
        self.setDragEnabled(True)
        self.setUniformItemSizes(True)
        for name, bt in BLOCK_TYPES.items():
            item = QListWidgetItem(f"+ {bt.label}")
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(f"{bt.description}\nClick to add after the selected block, or drag into the stack.")
            item.setForeground(QColor(bt.colour))
            item.setSizeHint(QSize(118, 26))
            self.addItem(item)
        self.setFixedHeight(2 * 32 + 12)
        self.itemClicked.connect(lambda item: self.add_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.itemActivated.connect(lambda item: self.add_requested.emit(item.data(Qt.ItemDataRole.UserRole)))

    def startDrag(self, actions):
        item = self.currentItem()
        if item is None:
            return
        mime = QMimeData()
        mime.setData(BLOCK_MIME, item.data(Qt.ItemDataRole.UserRole).encode())
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.DropAction.CopyAction)


class _RowDelegate(QStyledItemDelegate):
    """index · type · settings … output shape · params; a second line for a problem."""

    def __init__(self, stack: BlockStack):
        super().__init__(stack)
        self.stack = stack

    def sizeHint(self, option, index):
        has_issue = bool(index.data(Qt.ItemDataRole.UserRole + 2))
        return QSize(200, 44 if has_issue else 26)

    def paint(self, p: QPainter, option, index):
        row = index.row()
        info = index.data(Qt.ItemDataRole.UserRole + 1) or {}
        issue = index.data(Qt.ItemDataRole.UserRole + 2)
        level = info.get("level", "")
        rect = option.rect
        p.save()
        x0 = rect.left() + MARGIN + INDENT * info.get("depth", 0)
        body = QRect(x0, rect.top() + 2, rect.right() - x0 - 4, rect.height() - 4)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        bg = QColor("#fdecea") if level == "error" else QColor("#fff6e0") if level == "warning" else QColor("#f7f7f9")
        if selected:
            bg = QColor("#dbe9ff")
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor("#3d7be0") if selected else QColor("#d0d0d8"), 1))
        p.setBrush(bg)
        p.drawRoundedRect(body, 4, 4)
        colour = QColor(info.get("colour", "#888"))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colour)
        p.drawRoundedRect(QRect(body.left(), body.top(), 5, body.height()), 2, 2)
        line = QRect(body.left() + 10, body.top(), body.width() - 14, 22)
        font = QFont(option.font)
        p.setPen(QColor("#777"))
        p.drawText(line, Qt.AlignmentFlag.AlignVCenter, f"{row:>2}")
        font.setBold(True)
        p.setFont(font)
        p.setPen(colour.darker(130))
        p.drawText(line.adjusted(22, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, info.get("type", "?"))
        font.setBold(False)
        p.setFont(font)
        p.setPen(QColor("#444"))
        p.drawText(line.adjusted(96, 0, -170, 0), Qt.AlignmentFlag.AlignVCenter, info.get("summary", ""))
        p.setPen(QColor("#222"))
        p.drawText(line.adjusted(0, 0, -62, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                   info.get("shape", ""))
        p.setPen(QColor("#666"))
        p.drawText(line, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, info.get("params", ""))
        if issue:
            small = QFont(option.font)
            small.setPointSizeF(max(7.0, option.font.pointSizeF() - 1))
            p.setFont(small)
            p.setPen(QColor("#b3261e") if level == "error" else QColor("#8a5a00"))
            p.drawText(QRect(line.left() + 22, line.bottom(), line.width() - 22, 18),
                       Qt.AlignmentFlag.AlignVCenter, p.fontMetrics().elidedText(
                           issue, Qt.TextElideMode.ElideRight, line.width() - 22))
        p.restore()


class BlockStack(QListWidget):
    """The network's blocks top to bottom. Drag to reorder; drop palette items to insert."""

    def __init__(self, doc: SpecDocument, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.setObjectName("BlockStack")
        self.setAccessibleName("Block stack")
        self.setItemDelegate(_RowDelegate(self))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setAcceptDrops(True)
        self.setDragEnabled(True)
        self.setDropIndicatorShown(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMinimumWidth(420)
        self._syncing = False
        doc.changed.connect(self.refresh)
        doc.selection_changed.connect(self._show_selection)
        self.currentRowChanged.connect(self._row_changed)
        self.refresh()

    # --- model → view ---
    def refresh(self) -> None:
        self._syncing = True
        self.clear()
        a = self.doc.analysis   # None while torch loads: shapes and counts show "…"
        pending = "…" if a is None else ""
        depth = 0
        for i, b in enumerate(self.doc.spec.blocks):
            report = a.blocks[i] if a is not None and i < len(a.blocks) else None
            issues = a.issues_for(i) if a is not None else []
            errors = [x for x in issues if x.level == "error"]
            shown = (errors or issues)[:1]
            t = block_type_name(b)
            bt = BLOCK_TYPES[t] if t is not None else None
            if bt is not None and bt.scale > 1:
                depth = max(0, depth - 1)
            info = {"type": t or show(b.get("type"), 12), "summary": block_summary(b), "depth": depth,
                    "colour": bt.colour if bt is not None else "#888",
                    "shape": shape_text(report.output_shape) if report else pending,
                    "params": count(report.params) if report and report.params is not None else pending or "—",
                    "level": "error" if errors else ("warning" if issues else "")}
            if bt is not None and bt.scale < 1:
                depth += 1
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole + 1, info)
            item.setData(Qt.ItemDataRole.UserRole + 2, (shown[0].message + "  Fix: " + shown[0].fix) if shown else "")
            item.setData(Qt.ItemDataRole.AccessibleTextRole,
                         f"block {i} {info['type']} {info['summary']} output {info['shape']}")
            item.setToolTip("\n".join(str(x) for x in issues) or info["summary"])
            self.addItem(item)
        self._syncing = False
        self._show_selection(self.doc.selected)
        self.viewport().update()

    def _show_selection(self, index: int) -> None:
        self._syncing = True
        self.setCurrentRow(index)
        self._syncing = False

    def _row_changed(self, row: int) -> None:
        if not self._syncing:
            self.doc.select(row)

    # --- skip connections ---
    def paintEvent(self, event):
        super().paintEvent(event)
        blocks = self.doc.spec.blocks
        ids = {b.get("id"): i for i, b in enumerate(blocks) if isinstance(b.get("id"), str)}
        # "from" may be any JSON value (a list is unhashable): only a string can name a block
        links = []
        for i, b in enumerate(blocks):
            t = block_type_name(b)
            key = BLOCK_TYPES[t].source_param if t is not None and BLOCK_TYPES[t].merges_skip else None
            if key is not None and isinstance(b.get(key), str) and ids.get(b[key], i) < i:
                links.append((ids[b[key]], i, BLOCK_TYPES[t].colour))
        if not links:
            return
        p = QPainter(self.viewport())
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for n, (src, dst, colour) in enumerate(sorted(links, key=lambda ab: ab[0] - ab[1])):
            r1, r2 = self.visualItemRect(self.item(src)), self.visualItemRect(self.item(dst))
            x = 6 + 7 * n
            y1, y2 = r1.top() + 13, r2.top() + 13
            p.setPen(QPen(QColor(colour).darker(120), 2))
            p.drawLine(MARGIN - 2, y1, x, y1)
            p.drawLine(x, y1, x, y2)
            p.drawLine(x, y2, MARGIN - 2, y2)
            p.setBrush(QBrush(QColor(colour)))
            p.drawEllipse(QPoint(MARGIN - 2, y2), 3, 3)
        p.end()

    # --- drag and drop ---
    def dragEnterEvent(self, e):
        if e.mimeData().hasFormat(BLOCK_MIME) or e.source() is self:
            e.acceptProposedAction()
        else:
            e.ignore()

    def dragMoveEvent(self, e):
        if e.mimeData().hasFormat(BLOCK_MIME) or e.source() is self:
            e.acceptProposedAction()
        else:
            e.ignore()

    def drop_row(self, pos: QPoint) -> int:
        item = self.itemAt(pos)
        if item is None:
            return self.count()
        rect = self.visualItemRect(item)
        row = self.row(item)
        return row + 1 if pos.y() > rect.center().y() else row

    def dropEvent(self, e):
        pos = e.position().toPoint() if hasattr(e, "position") else e.pos()
        row = self.drop_row(pos)
        if e.mimeData().hasFormat(BLOCK_MIME):
            self.doc.add_block(bytes(e.mimeData().data(BLOCK_MIME)).decode(), row)
        elif e.source() is self and self.currentRow() >= 0:
            src = self.currentRow()
            self.doc.move_block(src, row - 1 if row > src else row)
        e.setDropAction(Qt.DropAction.CopyAction)
        e.accept()

    def keyPressEvent(self, e):
        row = self.currentRow()
        ctrl = e.modifiers() & Qt.KeyboardModifier.ControlModifier
        if row >= 0 and e.key() == Qt.Key.Key_Delete:
            self.doc.remove_block(row)
        elif row >= 0 and ctrl and e.key() == Qt.Key.Key_Up:
            self.doc.move_block(row, row - 1)
        elif row >= 0 and ctrl and e.key() == Qt.Key.Key_Down:
            self.doc.move_block(row, row + 1)
        else:
            super().keyPressEvent(e)


def block_summary(b: dict) -> str:
    """A short line of a block's settings: "→64 · 3×3 · group:8 · silu". Any value a file holds is
    shown as one short printable piece; the problems list says what is wrong with it."""
    t = block_type_name(b)
    if t is None:
        return "unknown type"
    parts = BLOCK_TYPES[t].summary(b, _text)
    if b.get("id") is not None:
        parts.append(f"id {_text(b['id'])}")
    return " · ".join(parts)


def _text(value) -> str:
    """A plain short name as it is; anything else (a list, a huge integer, control characters) as show() has it."""
    return value if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 24 else show(value, 24)
