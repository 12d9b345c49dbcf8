"""A wall clock that jumps, for tests: put this directory first on PYTHONPATH.

Python imports ``sitecustomize`` at start-up, before any of d3hb, so a
process started with this directory on its path and D3HB_FAKE_CLOCK_FILE
set reads its wall clock (time.time, time.time_ns) as the real one plus the
number of seconds in that file.  A thread re-reads the file every 50 ms, so
a test jumps the clock of a running server by writing the file
(d3hb.testing.clockjump.set_offset).  time.monotonic is left alone: a real
clock jump (an administrator's ``date -s``, an NTP step) does not move it either.
"""

from __future__ import annotations

import os
import threading
import time

_path = os.environ.get("D3HB_FAKE_CLOCK_FILE")
if _path:
    _real_time, _real_time_ns = time.time, time.time_ns
    _offset = [0.0]

    def _read() -> None:
        try:
            with open(_path, encoding="ascii") as fh:
                _offset[0] = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            pass

    def _watch() -> None:
        while True:
            _read()
            _real_sleep(0.05)

    def _time() -> float:
        return _real_time() + _offset[0]

    def _time_ns() -> int:
        return _real_time_ns() + int(_offset[0] * 1e9)

    _real_sleep = time.sleep
    _read()
    time.time = _time
    time.time_ns = _time_ns
    threading.Thread(target=_watch, name="fakeclock", daemon=True).start()
