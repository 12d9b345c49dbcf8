"""Backup system failure, re-seeded across the network while users keep writing on the master.

The slave's database is lost.  A network save (pick0 -> tape-socket output
server -> input server in a small system vmrest -> restore of backup, no
tape on any disk) re-seeds it while the master takes writes and its master
server keeps calling; the restored slave is given its slave definition by
hand (as across hosts) and hot backup continues from the save's number.
Ends with the oracle.
"""

from __future__ import annotations

import pytest
from failover_kit import Writer, drained, lose_system, pair, start_pair

from d3hb.ops import netsave, saves, tsservers
from d3hb.ops import supervisor as sv
from d3hb.ops.serverdefs import Definitions
from d3hb.store import Home, System
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("D3HB_HOME", str(tmp_path))
    yield tmp_path
    for system in ("pick0", "vmrest"):
        if (tmp_path / system).exists():
            for pid in [tsservers.pid_of(tmp_path / system, "ssave")]:
                if pid is not None:
                    tsservers.stop(tmp_path / system, "ssave")
    procs.kill_all(tmp_path)


def test_backup_reseeded_by_network_save_while_users_write(home):
    m, s, port = pair(home)
    start_pair(m, s)
    log = oracle.WriteLog()
    w = Writer(m.path, log)
    w.start()
    w.wait_writes(300)
    # The backup system is lost; users go on writing on the master, whose server keeps calling.
    s_path = lose_system(home, s)
    w.wait_writes(200)

    vm = Home(home).create("vmrest", small=True)
    route = netsave.Route(procs.free_port())
    netsave.prepare(m, vm, s_path, route)
    tsservers.start(vm, route.server)
    tsservers.start(m, route.server)
    # The restore waits for the tape; the save keeps the queue ((h): the slave's updates since
    # its last acknowledgement are still owed to it, and the save must not clear them.
    restore = netsave.local_launcher(netsave.cli(home, "backup", "tcl", "restore", "hb"))
    save = netsave.local_launcher(netsave.cli(home, "pick0", "tcl", "save", "re-seed of backup", "(h"))
    transfer = netsave.Transfer(save, restore)
    transfer.wait(180)
    tsservers.shutdown(m, route.server)
    vm.close()
    w.wait_writes(200)  # still writing after the save: hot backup must carry these

    b = System.open(s_path)
    at = int((saves.restored_from(b) or {})["start_tno"])
    assert store_apply.last_applied(b, "hb") == at > 0
    # Across hosts this is typed on the backup host: the save brought the master's definition.
    assert Definitions(b).get("hb").is_master
    Definitions(b).setup("hb", {"type": "S", "port": str(port)})
    assert b.replica and store_apply.last_applied(b, "hb") == at and not Definitions(b).get("hb").host
    sv.start(b, "hb")
    w.wait_writes(300)
    w.finish()
    assert w.first_refusal is None  # users never stopped
    drained(m, b, log)
    b.close()
