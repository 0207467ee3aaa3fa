"""The desktop app (PySide6). Its window shows before PyTorch is imported: see heavy.py."""
