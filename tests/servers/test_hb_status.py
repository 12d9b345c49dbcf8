"""Server files, status, logs, incidents (once per incident), control channel."""

from __future__ import annotations

import asyncio
import threading

import pytest

from d3hb.errors import Refused
from d3hb.servers import control
from d3hb.servers import status as st


def test_incidents_are_sent_once_and_cleared_once():
    sent: list[str] = []
    inc = st.Incidents("hbm", [sent.append])
    assert inc.raise_("connection", "connection lost: refused")
    for _ in range(5):
        assert not inc.raise_("connection", "connection lost: refused again")
    assert inc.raise_("test-record", "test record 9 late")
    assert inc.clear("connection", "connection restored")
    assert not inc.clear("connection", "connection restored")
    assert not inc.clear("gap", "never raised")
    assert sent == ["INCIDENT server 'hbm': connection lost: refused", "INCIDENT server 'hbm': test record 9 late",
                    "server 'hbm': connection restored"]


def test_a_failing_sink_does_not_stop_the_others():
    sent: list[str] = []

    def broken(text: str) -> None:
        raise OSError("disk full")

    st.Incidents("hbm", [broken, sent.append]).raise_("gap", "gap at 5")
    assert sent == ["INCIDENT server 'hbm': gap at 5"]


def test_status_log_newest_first_and_trimmed(tmp_path):
    f = st.ServerFiles(tmp_path, "hbs")
    for i in range(st.RECENT * 3):
        st.log_message(f, f"message {i}")
    recent = st.recent_messages(f, 3)
    assert [r.split("  ", 1)[1] for r in recent] == [f"message {st.RECENT * 3 - 1 - i}" for i in range(3)]
    assert len(st.recent_messages(f, 0)) <= st.RECENT * 2
    assert len(st.recent_messages(f, 0, permanent=True)) == st.RECENT * 3


def test_pid_lock_is_exclusive_and_a_clean_release_removes_the_pid_file(tmp_path):
    f = st.ServerFiles(tmp_path, "hbs")
    lock = st.PidLock(f)
    assert lock.acquire() and st.is_locked(f) and st.pid_file_pid(f) is not None
    assert not st.PidLock(f).acquire()
    lock.release()
    assert not st.is_locked(f) and not f.pid.exists()


def test_config_round_trip():
    cfg = st.Config(home="/h", system="pick0", name="hbm", type="M", notify=("dm", "!0"), port=2001)
    assert st.Config.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("deep", [False, True])
def test_control_channel_answers_and_long_paths_work(tmp_path, deep):
    d = tmp_path / ("x" * 120 if deep else "s")
    d.mkdir()
    path = d / "hbs.ctl"
    ready = threading.Event()
    done = threading.Event()

    async def handler(req: dict) -> dict:
        if req["cmd"] == "boom":
            raise Refused("no such thing", "try query")
        return {"ok": True, "echo": req["cmd"]}

    def serve() -> None:
        async def main() -> None:
            server = await control.serve(path, handler)
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.01)
            server.close()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(5)
    try:
        assert control.request(path, "query")["echo"] == "query"
        with pytest.raises(Refused, match="no such thing"):
            control.request(path, "boom")
    finally:
        done.set()
        t.join(5)
    path.unlink()
    with pytest.raises(Refused, match="not running"):
        control.request(path, "query")
