"""Shared by the benchmarks: machine description, medians, tables, results JSON."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"


def machine() -> dict:
    import torch

    from denoise_studio.core.devices import cpu_name
    from denoise_studio.core.precision import auto_amp, cpu_flags, cpu_native_bf16, describe
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    simd = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "cpu_flags": simd, "bf16": cpu_native_bf16(),
            "amp_auto": describe("cpu", auto_amp("cpu")), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def median(xs) -> float:
    return statistics.median(xs)


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = lambda vals: "| " + " | ".join(str(v).ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line([r.get(c, "") for c in columns]) for r in rows]
    return "\n".join(out)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def need_data(folder: str) -> Path:
    p = DATA / folder
    if not p.is_dir():
        raise SystemExit(f"benchmark images not found at {p}; see ../shared/data/README.md")
    return p


class LatenessProbe:
    """A 10 ms QTimer that records how late each tick fires (ms): the event loop's responsiveness."""

    def __init__(self, interval_ms: int = 10):
        import time

        from PySide6.QtCore import QTimer
        self._clock = time.perf_counter
        self.interval = interval_ms
        self.late: list[float] = []
        self._last = self._clock()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = self._clock()
        self.late.append(max(0.0, (now - self._last) * 1000 - self.interval))
        self._last = now

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.late[5:]
