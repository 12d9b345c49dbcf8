"""The slave options as an administrator meets them: changed in Setup Server on a running slave,
shown by Show Server and Query; and FOF numbers that differ matched by name, and said so."""

from __future__ import annotations

import re


from d3hb.cli import main
from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import apply as store_apply
from d3hb.store import hold as store_hold
from d3hb.store import park as store_park
from d3hb.testing import oracle, procs

# Special Operations > Setup Server > Modify Server: one line a field, in the form's order for a slave
# (type, port, log-slave, notify, apply, auto-create, code, tls-cert, tls-key, tls-ca, bind, timeout).
MODIFY = """menu hot-backup
server hb
choose Special Operations
choose Setup Server
choose Modify Server
enter
enter
enter {log_slave}
enter
enter {apply}
enter {auto_create}
enter
enter
enter
enter
enter
enter
enter Y
expect output "in effect at once"
back
back
choose Query Server
expect output "{applied}"
expect output "Log slave update {log_slave_up}. Auto-create {auto_create_up}"
"""


def cli(capsys, *words: str) -> str:
    status = main(list(words))
    out, err = capsys.readouterr()
    assert status == 0, f"{out}\n{err}"
    return out


def modify(capsys, home, **values: str) -> str:
    text = MODIFY.format(**values, log_slave_up=values["log_slave"].upper(), auto_create_up=values["auto_create"].upper(),
                         applied="Updates applied" if values["apply"] == "on" else "Updates not applied")
    script = home / "modify.txt"
    script.write_text(text)
    return cli(capsys, "--system", "backup", "menu", "--script", str(script))


def shown(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(label)).split()[-1]


def test_setup_server_changes_each_option_of_a_running_slave_and_query_shows_it(home, capsys):
    m, s, _ = procs.make_pair(home)
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    inv = m.file("acme", "inv")
    for i in range(100):
        log.write(inv, f"a{i}", f"first {i}")
    procs.wait_drained(m, s, "hb", log.last)
    q = sv.format_query(sv.query(s, "hb"))
    assert q[1].endswith("Updates applied") and "Log slave update OFF. Auto-create OFF" in q, q

    out = modify(capsys, home, log_slave="on", apply="off", auto_create="on")
    assert "log-slave=ON, apply=OFF, auto-create=ON in effect at once" in out
    out = cli(capsys, "--system", "backup", "hot-backup", "show", "hb")
    assert (shown(out, "Log slave update"), shown(out, "Apply updates"), shown(out, "Auto-create")) == ("ON", "OFF", "ON")

    # apply OFF, at once and without a restart: what arrives is acknowledged and held
    for i in range(200):
        log.write(inv, f"b{i}", f"second {i}")
    m.create_account("shop", "D")  # not logged: the slave never hears of it
    m.create_file("shop", "orders", None, 7, "D")
    m.create_file("shop", "orders", "orders", 11, "DL")  # logged (rule 6 judges the pointer's own code)
    orders = m.file("shop", "orders")
    for i in range(50):
        log.write(orders, f"o{i}", f"order {i}")
    procs.wait_until(lambda: (m.queue.cursor("hb") or 0) >= log.last, 30, "the slave to acknowledge what it holds")
    assert store_hold.held_count(s, "hb") == store_apply.last_stored(s, "hb") - log.writes[99].tno >= 250
    assert s.file("acme", "inv").read("b0") is None and not s.has_account("shop")
    q = sv.format_query(sv.query(s, "hb"))
    assert q[1].endswith("Updates not applied") and "Log slave update ON. Auto-create ON" in q, q
    assert f"Held transactions: {store_hold.held_count(s, 'hb')} (in the hold file, not yet applied)" in q, q
    queued_before = s.queue.last_tno()

    # apply ON from the command line's setup: the hold is applied, re-queued (log slave update ON),
    # and the missing account and file are created (auto-create ON) instead of parked
    out = cli(capsys, "--system", "backup", "hot-backup", "setup", "hb", "apply=on")
    assert "apply=ON in effect at once" in out and "started again" not in out
    procs.wait_drained(m, s, "hb", log.last)
    oracle.check(m, s, "hb", log, contiguous=False)
    f = s.find_file("shop", "orders", "orders")
    assert f is not None and f.modulo == 11 and f.code == "DL"
    assert store_park.parked_count(s, "hb") == 0
    requeued = [t for t in s.queue.read(queued_before, 1000) if t.kind.name == "WRITE"]
    assert len(requeued) == 250, "every update applied with log slave update ON is in the slave's own queue"
    queued_after = s.queue.last_tno()
    q = sv.format_query(sv.query(s, "hb"))
    assert q[1].endswith("Updates applied") and not any(line.startswith("Held") for line in q), q

    # and back to the defaults through the menu; a field that needs a restart says so
    out = modify(capsys, home, log_slave="off", apply="on", auto_create="off")
    assert "log-slave=OFF, auto-create=OFF in effect at once" in out
    out = cli(capsys, "--system", "backup", "hot-backup", "setup", "hb", "timeout=5")
    assert "takes effect when it is started again" in out and "at once" not in out
    for i in range(20):
        log.write(inv, f"c{i}", f"third {i}")
    procs.wait_drained(m, s, "hb", log.last)
    assert s.queue.last_tno() == queued_after, "log slave update OFF: nothing more queued"
    oracle.check(m, s, "hb", log, contiguous=False)


def test_a_slave_with_other_fof_numbers_updates_the_right_file_by_name_and_logs_it(home):
    m, s, _ = procs.make_pair(home, files=())
    # The slave already has files in the numbers the master is about to use (as after a restore
    # with renumbered FOF numbers): D3 would update those; the names decide here.
    s.create_account("other", "D")
    for name in ("x", "y"):
        s.create_file("other", name, None, 7, "D")
        s.create_file("other", name, name, 7, "D")
        s.file("other", name).write("mine", f"the slave's own {name}")
    m.create_account("acme", "DL")
    m.create_file("acme", "inv", None, 7, "DL")
    m.create_file("acme", "inv", "inv", 7, "DL")
    inv = m.file("acme", "inv")
    m.create_account("other", "D")  # the same files on the master, made later (so numbered higher), not logged
    for name in ("x", "y"):
        m.create_file("other", name, None, 7, "D")
        m.create_file("other", name, name, 7, "D")
        m.file("other", name).write("mine", f"the slave's own {name}")
    taken = s.file_by_fof(inv.info.fof)
    assert taken is not None and taken.account == "other", "the test needs the master's number taken on the slave"
    sv.start(s, "hb")
    sv.start(m, "hb")
    log = oracle.WriteLog()
    for i in range(300):
        log.write(inv, f"k{i % 50}", f"value {i}")
    procs.wait_drained(m, s, "hb", log.last)
    oracle.check(m, s, "hb", log, contiguous=False)
    here = s.find_file("acme", "inv", "inv")
    assert here is not None and here.fof != inv.info.fof
    for name in ("x", "y"):
        assert sorted(s.file("other", name).ids()) == [b"mine"], f"other,{name} was not touched"
    assert store_park.parked_count(s, "hb") == 0 and store_apply.last_applied(s, "hb") >= log.last
    text = "\n".join(st.recent_messages(sv.files(s, "hb"), 200))
    said = re.findall(rf"acme,inv is FOF {inv.info.fof} on the master but FOF {here.fof} here: its updates are matched by name", text)
    assert len(said) == 1, f"said once per file, not once per update:\n{text}"
