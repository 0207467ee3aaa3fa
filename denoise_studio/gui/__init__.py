"""The desktop app (PySide6). Its window shows before PyTorch is imported: see heavy.py."""
from denoise_studio.gui.heavy import defer_torch_modules

defer_torch_modules()   # first, before any GUI module imports core.blocks
