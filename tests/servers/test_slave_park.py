"""Auto-create ON and OFF with real processes: created at once, or parked in hb.log,<server>*<fof> and replayed."""

from __future__ import annotations


from d3hb.cli import main
from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import park as store_park
from d3hb.testing import oracle, procs


def unreplicated_file(m, name: str, modulo: int = 7):
    """A file (and account) the slave never got: created D (not logged), then the file made DL."""
    m.create_account("shop", "D")
    m.create_file("shop", name, None, 7, "D")
    m.create_file("shop", name, name, modulo, "D")
    for level in (f"dict {name}", name):
        m.set_code(m.file_info("shop", level), "DL")
    return m.file("shop", name)


def test_auto_create_off_parks_raises_an_incident_and_replays(home, capsys):
    m, s, _ = procs.make_pair(home)
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    log.write(inv, "a", "1")
    orders = unreplicated_file(m, "orders")
    fof = orders.info.fof
    for i in range(300):
        log.write(orders, f"o{i % 40}", f"order {i}")
        log.write(inv, f"i{i}", f"inv {i}")  # the pair keeps running: other files are applied
    procs.wait_applied(s, "hb", log.last, 60)
    assert s.file("acme", "inv").read("i299") == b"inv 299"
    assert s.find_file("shop", "orders", "orders") is None, "auto-create off: nothing created"
    section = s.find_file("dm", "hb.log", f"hb*{fof}")
    assert section is not None and section.modulo == 31
    parked = store_park.parked(s, "hb")
    assert sum(1 for p in parked if p.section == f"hb.log,hb*{fof}" and p.txn.kind.name == "WRITE") == 300
    # the section is an ordinary data section an administrator can list: one item a transaction, in arrival order
    ids = sorted(s.file("dm", f"hb.log,hb*{fof}").ids())
    assert len(ids) == len([p for p in parked if p.section == f"hb.log,hb*{fof}"]) and ids == sorted(ids, key=int)
    assert s.file("dm", f"hb.log,hb*{fof}").read(ids[-1]).split(b"\xfe")[:3] == [b"write", b"shop,orders", b"o19"]
    text = "\n".join(st.recent_messages(sv.files(s, "hb"), 100))
    assert f"INCIDENT server 'hb': shop,orders (FOF {fof} on the master) is not on this system" in text
    assert f"hb.log,hb*{fof}" in text
    q = sv.format_query(sv.query(s, "hb"))
    assert any(line.startswith("Parked updates: ") for line in q), q
    # nothing was lost: the administrator makes the file and replays
    s.create_account("shop", "D", log=False)
    s.create_file("shop", "orders", None, 7, "D", log=False)
    s.create_file("shop", "orders", "orders", 7, "D", log=False)
    status = main(["--system", "backup", "hot-backup", "replay-parked", "hb"])
    out = capsys.readouterr().out
    assert status == 0 and "parked updates replayed, 0 still parked" in out
    assert store_park.parked_count(s, "hb") == 0 and s.find_file("dm", "hb.log", f"hb*{fof}") is None
    # updates after the replay are applied directly again
    for i in range(50):
        log.write(orders, f"o{i}", f"late {i}")
    procs.wait_applied(s, "hb", log.last, 60)
    procs.wait_until(lambda: m.queue.cursor("hb") >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log, contiguous=False)
    assert s.find_file("shop", "orders", "orders").code == "DL", "the parked set-dptr was replayed too"


def test_auto_create_on_creates_the_missing_file_with_the_masters_code_and_modulo(home):
    m, s, _ = procs.make_pair(home, slave_fields={"auto-create": "on"})
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    orders = unreplicated_file(m, "orders", modulo=13)
    for i in range(200):
        log.write(orders, f"o{i}", f"order {i}")
    procs.wait_applied(s, "hb", log.last, 60)
    f = s.find_file("shop", "orders", "orders")
    assert s.has_account("shop"), "the missing account was created too"
    assert f is not None and f.code == "DL" and f.modulo == 13, "created with the code and modulo the transaction carries"
    assert f.fof == orders.info.fof, "and with the master's FOF number, which was free here"
    assert store_park.parked_count(s, "hb") == 0
    procs.wait_until(lambda: m.queue.cursor("hb") >= log.last, 30, "the last ack")
    oracle.check(m, s, "hb", log)
