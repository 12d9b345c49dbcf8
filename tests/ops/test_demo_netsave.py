"""``d3hb demo``: network save/restore through tape-socket, then hot backup with no gap (oracle)."""

from __future__ import annotations

import stat

from d3hb.ops import demo, saves
from d3hb.store import Home
from d3hb.store import apply as store_apply
from d3hb.testing import oracle


def test_network_save_restore_then_hot_backup_with_no_gap(tmp_path):
    lines: list[str] = []
    story = demo.tell(tmp_path, lines.append, updates=400, initial=3000)
    text = "\n".join(lines)
    assert story.ok, text

    home = Home(tmp_path)
    master, slave = home.open("pick0"), home.open("backup")
    try:
        # The restore started the slave at the save's start number, recorded on the tape's label.
        info = saves.restored_from(slave)
        assert info is not None and info["history_id"] == master.history_id
        assert int(info["start_tno"]) == story.start_tno > 0
        # Updates committed after the snapshot, while the save still ran, reached the slave by hot backup.
        assert story.during_save, "no update landed after the save's snapshot: the save was too quick to show it\n" + text
        assert store_apply.last_applied(slave, demo.SERVER) == story.log.last
        # The oracle, once more, on the systems as the demo left them.
        assert oracle.check(master, slave, demo.SERVER, story.log, contiguous=False) == story.log.last
    finally:
        master.close()
        slave.close()
    # The save never touched a disk: both tapes are named pipes, and no tape file exists.
    for pipe in (tmp_path / "pick0" / "ssave.pipe", tmp_path / "vmrest" / "ssave.pipe"):
        assert stat.S_ISFIFO(pipe.stat().st_mode) and stat.S_IMODE(pipe.stat().st_mode) == 0o600
    assert not list(tmp_path.rglob("*.tape")) and not list(tmp_path.rglob("*.writing"))
    assert "shutdown done, both servers stopped" in text and "the input server in vmrest stopped too" in text
    assert story.tape_bytes > 100_000
