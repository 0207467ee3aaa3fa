"""core must work with Qt uninstalled: import every core module with Qt imports made to fail."""
import pkgutil
import subprocess
import sys

import denoise_studio.core

SCRIPT = """
import importlib, sys
class BlockQt:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'PyQt5', 'PyQt6'):
            raise ImportError('Qt is blocked in this test: ' + name)
sys.meta_path.insert(0, BlockQt())
for name in sys.argv[1:]:
    importlib.import_module(name)
import denoise_studio.cli
denoise_studio.cli.build_parser()
bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph')]
print('QT' if bad else 'CLEAN', bad)
"""


def test_core_imports_no_qt():
    names = [f"denoise_studio.core.{m.name}" for m in pkgutil.iter_modules(denoise_studio.core.__path__)]
    assert len(names) >= 8
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("CLEAN"), out.stdout
