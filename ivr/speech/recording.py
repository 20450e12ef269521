"""Optional recordings of what callers said, for operators (IVR_RECORD_CALLS).

Off by default: recordings are personal data. They are kept for
IVR_RECORDING_RETENTION_DAYS and swept by every process at most once an hour.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

log = logging.getLogger("ivr.speech")

SWEEP_EVERY = 3600
_last_sweep = {}
_lock = threading.Lock()


def recordings_dir(config) -> Path | None:
    if not config.record_calls:
        return None
    path = Path(config.data_dir) / "recordings"
    path.mkdir(parents=True, exist_ok=True)
    sweep(path, config.recording_retention_seconds)
    return path


def sweep(path: Path, retention_seconds: int, now=None) -> int:
    """Delete recordings older than the retention period; returns how many."""
    now = time.time() if now is None else now
    with _lock:
        if now - _last_sweep.get(str(path), 0) < SWEEP_EVERY:
            return 0
        _last_sweep[str(path)] = now
    removed = 0
    for f in path.glob("*.wav"):
        try:
            if now - f.stat().st_mtime > retention_seconds:
                f.unlink()
                removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d recording(s) past retention", removed)
    return removed
