"""Network save/restore between two hosts (network namespaces joined by veth), then hot backup.

Host a runs pick0 and its output server; host b runs the small system vmrest
with the input server, and the restore of its own pick0.  The tape crosses
the veth link and nothing else; hot backup then starts from a to b with no
gap, and the replication oracle checks the result.  Root only: the
``two_hosts`` fixture skips with the reason otherwise.
"""

from __future__ import annotations

import subprocess
import threading

from d3hb.ops import netsave, saves, tsservers
from d3hb.ops.demo import LiveWriter
from d3hb.ops.serverdefs import Definitions
from d3hb.servers import tsbase
from d3hb.store import Home
from d3hb.store import apply as store_apply
from d3hb.testing import oracle, procs

CODE = "netns-save-restore-code-0123456789"


def _launcher(hosts, host):
    def launch(argv):
        return hosts.popen(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=netsave.env())

    return launch


def _cli(hosts, host, home, system, *words):
    done = hosts.run(host, netsave.cli(home, system, *words), capture_output=True, text=True, env=netsave.env(), timeout=60)
    assert done.returncode == 0, f"{' '.join(words)} on {host.ns}: {done.stdout} {done.stderr}"
    return done.stdout


def test_network_save_restore_across_two_hosts_then_hot_backup(tmp_path, two_hosts):
    hosts = two_hosts
    home_a, home_b = tmp_path / "hostA", tmp_path / "hostB"
    A, B = Home(home_a), Home(home_b)
    master = A.create("pick0", small=True)
    vm = B.create("vmrest", small=True)
    B.create("pick0", small=True).close()
    log = oracle.WriteLog()
    master.create_account("acme", "DL")
    for name in ("invoices", "customers"):
        master.create_file("acme", name, None, 7, "DL")
        master.create_file("acme", name, name, 31, "DL")
    inv, cust = master.file("acme", "invoices"), master.file("acme", "customers")
    with master.transaction():
        for j in range(3000):
            log.write(cust if j % 5 == 0 else inv, f"{j}", f"order {j}\xfe{j}.00\xfdEUR\xfe" + "y" * 150)

    route = netsave.Route(procs.free_port(), connect=hosts.b.addr, listen=hosts.b.addr)
    netsave.prepare(master, vm, B.system_path("pick0"), route)
    try:
        _cli(hosts, hosts.b, home_b, "vmrest", "tape-socket", "start", route.server)
        _cli(hosts, hosts.a, home_a, "pick0", "tape-socket", "start", route.server)
        saving = threading.Event()
        writer = LiveWriter(A, saving)
        writer.start()
        saving.set()
        transfer = netsave.start_transfer(home_a, "pick0", home_b, "pick0", hot_backup=["hb"],
                                          launch_a=_launcher(hosts, hosts.a), launch_b=_launcher(hosts, hosts.b))
        save_out, restore_out = transfer.wait(120)
        saving.clear()
        writer.stop.set()
        writer.join(30)
        assert writer.error is None
        log.extend(writer.log)
        assert "save: 2 accounts" in save_out and "restore: 2 accounts" in restore_out, save_out + restore_out

        # The tape came over the veth link: the input server saw host a's address as its peer.
        st = tsbase.read_status(vm.path, route.server)
        assert st is not None and str(st["peer"]).startswith(hosts.a.addr + ":"), st
        assert st["tapes"] == 1 and st["bytes"] > 100_000

        # shutdown from the sending side stops the input server on host b too.
        _cli(hosts, hosts.a, home_a, "pick0", "tape-socket", "shutdown", route.server)
        procs.wait_until(lambda: tsservers.pid_of(vm.path, route.server) is None, 30, "the input server on host b to stop")
        assert tsservers.pid_of(master.path, route.server) is None

        slave = B.open("pick0")
        start = int(saves.restored_from(slave)["start_tno"])
        assert store_apply.last_applied(slave, "hb") == start
        after_snapshot = [t for t in writer.during if t > start]

        # Hot backup from a to b, from the save point: nothing re-sent, nothing missing.
        port = procs.free_port()
        Definitions(master).setup("hb", {"type": "M", "host": hosts.b.addr, "port": str(port), "target": "pick0", "code": CODE,
                                         "txlog": "0.05", "check": "60", "timeout": "5"})
        Definitions(slave).setup("hb", {"type": "S", "bind": hosts.b.addr, "port": str(port), "code": CODE, "check": "60", "timeout": "5"})
        _cli(hosts, hosts.b, home_b, "pick0", "hot-backup", "start", "hb")
        _cli(hosts, hosts.a, home_a, "pick0", "hot-backup", "start", "hb")
        with master.transaction():
            for j in range(300):
                log.write(inv, f"after{j % 40}", f"after the restore {j}")
        procs.wait_applied(slave, "hb", log.last, 60)
        assert all(store_apply.last_applied(slave, "hb") >= t for t in after_snapshot)
        assert oracle.check(master, slave, "hb", log, contiguous=False) == log.last
        slave.close()
    finally:
        procs.kill_all(home_a)
        procs.kill_all(home_b)
        master.close()
        vm.close()
