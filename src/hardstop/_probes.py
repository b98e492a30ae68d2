"""What this interpreter lets hardstop do, measured now: the probes behind ``python -m hardstop``.

The waits (``_probe_waits``) and the quirks (``_probe_quirks``), gathered in one report.
"""

from __future__ import annotations

import platform
import signal
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import hardstop
from hardstop import _gil, _hardstop
from hardstop._probe_quirks import QUIRKS, QuirkResult, probe_quirk
from hardstop._probe_waits import (
    BOUND,
    LATE,
    MAIN,
    NOT_PROBED,
    NOT_STOPPED,
    RETURNED_FIRST,
    STOPPED,
    WAITS,
    WORKER,
    WaitResult,
    probe_main_thread,
    probe_waits,
    probe_workers,
)

__all__ = [
    "BOUND",
    "LATE",
    "MAIN",
    "NOT_PROBED",
    "NOT_STOPPED",
    "QUIRKS",
    "RETURNED_FIRST",
    "STOPPED",
    "WAITS",
    "WORKER",
    "Report",
    "WaitResult",
    "probe_main_thread",
    "probe_workers",
    "run",
]


@dataclass
class Report:
    hardstop: str
    python: str
    implementation: str
    platform: str
    extension: str
    gil: str  # "on: why" or "off: why"
    wake_signal: str | None
    bound_seconds: float
    waits: list[WaitResult] = field(default_factory=list)
    quirks: list[QuirkResult] = field(default_factory=list)
    leftover_threads: list[str] = field(default_factory=list)  # probe threads still alive at the end

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _signal_name(signum: int | None) -> str | None:
    return None if signum is None else signal.Signals(signum).name


def run() -> Report:
    """Run every probe (a few seconds) and say what they found."""
    report = Report(
        hardstop=hardstop.__version__,
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=f"{platform.system()} {platform.machine()}",
        extension=str(_hardstop.__file__),
        gil=_gil.describe(),
        wake_signal=_signal_name(hardstop.wake_signal()),
        bound_seconds=BOUND,
    )
    report.waits = probe_waits()
    report.quirks = [probe_quirk(quirk) for quirk in QUIRKS]
    report.leftover_threads = [t.name for t in threading.enumerate() if t.name.startswith("hardstop-probe")]
    return report
