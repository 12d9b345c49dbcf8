"""The vault with real processes on 127.0.0.1: a vault server, a source, a third system.

Every restore ends with the oracle's last check: per-file digests equal on both systems.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import time

import pytest
import vaultkit as kit

from d3hb.errors import Refused, TapeError
from d3hb.ops import saves, vaultcheck, vaultio
from d3hb.ops import vault as ov
from d3hb.protocol import tape
from d3hb.servers.vaultclient import VaultRefused, VaultSession
from d3hb.store import Home, System, digests
from d3hb.store.vaultstore import ACTIVE, DELETED, PENDING, UNAVAILABLE, USABLE, VolumeHistory
from d3hb.testing import oracle
from d3hb.testing.procs import wait_until


LAST: dict = {}


def save_to(system: System, name: str = "offsite", **kw) -> str:
    with ov.open_vault_writer(system, name) as w:
        LAST["report"] = saves.save(system, w, keep_queue=True, **kw)
    return w.vset


def same_data(a: System, b: System) -> None:
    da, db = digests(a), digests(b)
    assert da and da == db, sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))


def test_save_to_vault_and_restore_on_another_system(site):
    kit.fill(site.src)
    site.define(maxsize="200K")
    r = kit.cli(site.home, "--system", "pick0", "vault", "save", "offsite")
    assert r.returncode == 0, r.stderr
    vols = ov.volumes(site.src, "offsite")
    assert len(vols) > 1 and {v.status for v in vols} == {USABLE}
    vset = vols[0].vset
    assert f"Volume set {vset}: {len(vols)} volumes" in r.stdout
    Home(site.home).create("dr", small=True).close()
    r = kit.cli(site.home, "--system", "dr", "vault", "define", "offsite", "host=127.0.0.1", f"port={site.port}",
                f"password={kit.PASSWORD}", "node=pick0", "(r")
    assert r.returncode == 0 and "session ro" in r.stdout, r.stderr
    r = kit.cli(site.home, "--system", "dr", "vault", "volumes", "offsite", "(t")
    assert all(v.volume in r.stdout for v in vols)
    r = kit.cli(site.home, "--yes", "--system", "dr", "vault", "restore", "offsite", vset)
    assert r.returncode == 0, r.stderr
    assert "restore: 2 accounts" in r.stdout
    with System.open(site.home / "dr") as dr:
        same_data(site.src, dr)
        assert dr.history_id == site.src.history_id


def test_a_tape_is_split_into_volumes_between_blocks(site):
    kit.fill(site.src, n=3000)
    site.define(maxsize="150K")
    vset = save_to(site.src)
    vols = VolumeHistory(site.src).volumes("offsite", vset)
    assert len(vols) >= 5
    assert [v.part for v in vols] == list(range(1, len(vols) + 1))
    block = tape.BLOCK_SIZE + tape.BLOCK_HEADER
    assert all(v.size <= 150 * 1024 or v.size <= block + tape.PROLOGUE_SIZE for v in vols)
    # Each volume is whole blocks, numbered on from the one before: every one audits clean on its own.
    expect_first = 0
    for v in vols:
        res = vaultcheck.audit(site.src, v.volume)
        assert res.ok, res.damage
        assert v.first_block == expect_first
        expect_first += res.blocks
    # The vault's objects, end to end, are the tape: the codec reads it through its trailer.
    objs = {o.name: o for o in site.archive().objects("pick0")}
    whole = b"".join((site.target.path / "vault" / "objects" / "pick0" / v.volume).read_bytes() for v in vols)
    assert sum(objs[v.volume].size for v in vols) == len(whole)
    items = sum(isinstance(r, tape.Item) for r in saves.iter_records(io.BytesIO(whole)))
    assert items == LAST["report"].items and items >= 3000
    # t-dump / t-load and transaction dump / load go the same way.
    f = site.src.file("acme", "inv")
    with ov.open_vault_writer(site.src, "offsite") as w:
        saves.t_dump(site.src, "acme", "inv", w)
    tvset = w.vset
    assert tvset.startswith("t-dump-") and len(w.stored) > 1
    site.src.create_file("acme", "copy", None, 7, "D")
    site.src.create_file("acme", "copy", "copy", 7, "D")
    assert ov.latest_set(site.src, "offsite") == tvset and ov.latest_set(site.src, "offsite", ("save",)) == vset
    with ov.open_vault_reader(site.src, "offsite", kinds=("t-dump",)) as rd:  # what a vault tape device reads
        rep = saves.t_load(site.src, "acme", "copy", rd)
    assert rep.items == 3000
    assert dict(site.src.file("acme", "copy").items()) == dict(f.items())


def test_transaction_dump_through_the_vault(site):
    site.src.create_account("acme", "DL")
    site.src.create_file("acme", "inv", None, 7, "DL")
    site.src.create_file("acme", "inv", "inv", 7, "DL")
    site.define(maxsize="64K")
    base = save_to(site.src)
    f = site.src.file("acme", "inv")
    log = oracle.WriteLog()
    for i in range(300):
        log.write(f, f"t{i}", f"{i}\xfe" + "x" * 400)
        if i % 7 == 3:
            log.delete(f, f"t{i - 2}")
    with ov.open_vault_writer(site.src, "offsite") as w:
        saves.txn_dump(site.src, w)
    assert w.vset.startswith("txn-dump-") and len(w.stored) > 1
    dr = Home(site.home).create("dr", small=True)
    site.define(dr, node="pick0", readonly=True)
    dr.close()
    with ov.open_vault_reader(site.src, "offsite", base) as rd:
        saves.restore(site.home / "dr", "dr", rd)
    with System.open(site.home / "dr") as dr, ov.open_vault_reader(dr, "offsite", w.vset) as rd:
        rep = saves.txn_load(dr, rd)
        assert rep.txns == len(log.writes)
        log.observe_ack(log.last)  # the tape is complete: every write on it is promised
        assert oracle.check(site.src, dr, saves.TAPE_SERVER_PREFIX + site.src.history_id, log) == log.last


def test_wrong_password_is_refused_with_one_line(site):
    r = kit.cli(site.home, "--system", "pick0", "vault", "define", "offsite", "host=127.0.0.1", f"port={site.port}", "password=guess")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "wrong password for node 'pick0'" in r.stderr and "Traceback" not in r.stderr
    assert ov.Definitions(site.src).list() == []
    assert site.archive().node("pick0").code is None  # nothing stored on the vault either
    with pytest.raises(VaultRefused, match="not registered"):
        site.define(node="stranger")


def test_wrong_verification_code_gives_read_only_and_writes_nothing(site):
    kit.fill(site.src, n=200)
    site.define()
    VolumeHistory(site.src).set_code("offsite", b"w" * 32)  # not the code the vault holds
    r = kit.cli(site.home, "--system", "pick0", "vault", "save", "offsite")
    assert r.returncode == 1 and "read-only" in r.stderr and "forcesync=yes" in r.stderr
    assert site.archive().objects("pick0") == []
    assert ov.volumes(site.src) == []
    with pytest.raises(Refused, match="read-only"):
        vaultcheck.reconcile(site.src, "offsite", fix=True)


def test_forcesync_after_the_source_database_is_restored(site):
    kit.fill(site.src, n=500)
    site.define(maxsize="100K")
    first = save_to(site.src)
    site.src.close()
    r = kit.cli(site.home, "--yes", "--system", "pick0", "vault", "restore", "offsite", first)
    assert r.returncode == 0, r.stderr
    site.src = System.open(site.home / "pick0")
    assert VolumeHistory(site.src).code("offsite") is None and ov.volumes(site.src) == []  # lost with the database
    with pytest.raises(Refused, match="read-only.*forcesync=yes"):
        save_to(site.src)
    r = kit.cli(site.home, "--system", "pick0", "vault", "update", "offsite", "forcesync=yes")
    assert r.returncode == 0 and "verification code reset" in r.stdout, r.stderr
    second = save_to(site.src)
    assert {v.status for v in ov.volumes(site.src)} == {USABLE}
    # The restored history no longer knows the first set: reconcile reports its objects.
    found = vaultcheck.reconcile(site.src, "offsite")
    assert {f.volume.rsplit(".", 1)[0] for f in found} == {first} and all(f.case == vaultcheck.ORPHAN for f in found)
    dr = Home(site.home).create("dr", small=True)
    dr.close()
    with ov.open_vault_reader(site.src, "offsite", second) as rd:
        saves.restore(site.home / "dr", "dr", rd)
    with System.open(site.home / "dr") as dr:
        same_data(site.src, dr)


def _statuses(site) -> tuple[dict, dict]:
    hist = {v.volume: v.status for v in ov.volumes(site.src)}
    arch = {o.name: (o.status, o.size, o.digest) for o in site.archive().objects("pick0")}
    return hist, arch


def test_reconcile_every_row_of_the_table(site):
    kit.fill(site.src, n=2500)
    site.define(maxsize="70K")
    vset = save_to(site.src)
    vols = [v.volume for v in VolumeHistory(site.src).volumes("offsite", vset)]
    assert len(vols) >= 7
    ok, no_files, marked_same, marked_other, differ, orphan, orphan_marked = vols[:7]
    a = site.archive()
    with a.tx() as c:
        c.execute("DELETE FROM objects WHERE name=?", (no_files,))  # as after a restore of the vault's archive
        c.execute("UPDATE objects SET digest=(CASE WHEN digest LIKE '0%' THEN '1' ELSE '0' END)||substr(digest, 2) WHERE name=?", (marked_other,))
        c.execute("UPDATE objects SET size=size+1 WHERE name=?", (differ,))
    a.mark("pick0", [marked_same, marked_other, orphan_marked], DELETED)
    VolumeHistory(site.src).delete([orphan, orphan_marked])
    before = _statuses(site)

    r = kit.cli(site.home, "--system", "pick0", "vault", "reconcile", "offsite", "fix=no")
    assert r.returncode == 1  # errors found, nothing fixed
    found = {f.volume: f for f in vaultcheck.reconcile(site.src, "offsite", fix=False)}
    assert {v: f.case for v, f in found.items()} == {
        no_files: vaultcheck.NO_FILES, marked_same: vaultcheck.MARKED, marked_other: vaultcheck.MARKED,
        differ: vaultcheck.DIFFER, orphan: vaultcheck.ORPHAN, orphan_marked: vaultcheck.ORPHAN_MARKED}
    assert [v for v, f in found.items() if not f.error] == [orphan_marked]
    assert _statuses(site) == before  # fix=no changes nothing anywhere

    found = {f.volume: f for f in vaultcheck.reconcile(site.src, "offsite", fix=True)}
    hist, arch = _statuses(site)
    assert hist[ok] == USABLE and arch[ok][0] == ACTIVE
    assert hist[no_files] == UNAVAILABLE and no_files not in arch
    assert hist[marked_same] == UNAVAILABLE and arch[marked_same][0] == ACTIVE and "audit" in found[marked_same].action
    assert hist[marked_other] == UNAVAILABLE and arch[marked_other][0] == DELETED
    assert hist[differ] == UNAVAILABLE and arch[differ][0] == ACTIVE and "audit" in found[differ].action
    assert orphan not in hist and arch[orphan][0] == DELETED
    assert orphan_marked not in hist and arch[orphan_marked][0] == DELETED and found[orphan_marked].action == "none"
    # What fix=yes cannot settle is still reported; what it settled is not.
    again = {f.volume: f.case for f in vaultcheck.reconcile(site.src, "offsite")}
    assert again == {no_files: vaultcheck.NO_FILES, marked_other: vaultcheck.MARKED, differ: vaultcheck.DIFFER,
                     orphan: vaultcheck.ORPHAN_MARKED, orphan_marked: vaultcheck.ORPHAN_MARKED}
    # A reactivated volume audits clean and, with fix=yes, is usable again; the set then still refuses a restore.
    assert vaultcheck.audit(site.src, marked_same, fix=True).status == USABLE
    with pytest.raises(Refused, match="unavailable"), ov.open_vault_reader(site.src, "offsite", vset):
        pass


def test_expiration_and_purge(site):
    kit.fill(site.src, n=300)
    site.define(maxsize="100K", retain="1d", keepfull="1")
    older = save_to(site.src)
    newer = save_to(site.src)
    gone = vaultcheck.expire(site.src, "offsite")
    assert gone and {g.rsplit(".", 1)[0] for g in gone} == {older}  # beyond the newest full save
    assert {v.vset for v in ov.volumes(site.src)} == {newer}
    arch = {o.name: o for o in site.archive().objects("pick0")}
    assert all(arch[g].status == DELETED for g in gone)
    assert all(o.status == ACTIVE for o in arch.values() if o.vset == newer)
    r = kit.cli(site.home, "--system", "vaulthost", "vault", "purge")
    assert r.returncode == 0 and "0 archive objects purged" in r.stdout  # archretain 7d not over
    purged = ov.purge(site.target, now=time.time() + 8 * 86400)
    assert sorted(n for _, n in purged) == sorted(gone)
    assert all(not (site.target.path / "vault" / "objects" / "pick0" / g).exists() for g in gone)
    assert {o.vset for o in site.archive().objects("pick0")} == {newer}
    # Two days on, the newer set is past the 1 day retention too; the vault's own purger removes it
    # once the node's grace period (here 1 s) has passed.
    ov.stop(site.target)
    r = kit.cli(site.home, "--system", "vaulthost", "vault", "register", "pick0", "archretain=1s")
    assert r.returncode == 0 and "archive retention 1s" in r.stdout, r.stderr
    ov.serve(site.target, "127.0.0.1", site.port, purge_every=0.2)
    gone2 = vaultcheck.expire(site.src, "offsite", now=time.time() + 2 * 86400)
    assert {g.rsplit(".", 1)[0] for g in gone2} == {newer} and ov.volumes(site.src) == []
    assert {o.status for o in site.archive().objects("pick0")} == {DELETED}
    wait_until(lambda: site.archive().objects("pick0") == [], 30, "the vault server to purge the expired set")
    assert not list((site.target.path / "vault" / "objects" / "pick0").iterdir())
    assert f"purged archive object pick0/{gone2[0]}" in (site.target.path / "vault" / "server.log").read_text()


def test_node_without_archive_retention_cannot_store(site):
    r = kit.cli(site.home, "--system", "vaulthost", "vault", "register", "pick0", "archretain=none")
    assert r.returncode == 0 and "it cannot store data until archretain is set" in r.stdout, r.stderr
    kit.fill(site.src, n=50)
    site.define()
    with pytest.raises(VaultRefused, match="no archive retention"):
        save_to(site.src)
    r = kit.cli(site.home, "--system", "pick0", "vault", "save", "offsite")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "the policy of node 'pick0' has no archive retention: it cannot store data" in r.stderr
    assert ov.volumes(site.src) == [] and site.archive().objects("pick0") == []
    kit.wait_no_partials(site)


def test_audit_finds_a_flipped_byte(site):
    kit.fill(site.src, n=1500)
    site.define(maxsize="150K")
    vset = save_to(site.src)
    vols = VolumeHistory(site.src).volumes("offsite", vset)
    victim = vols[1]
    path = site.target.path / "vault" / "objects" / "pick0" / victim.volume
    data = bytearray(path.read_bytes())
    spot = tape.BLOCK_HEADER + 1000  # inside the payload of the volume's first block
    data[spot] ^= 0x40
    path.write_bytes(bytes(data))
    r = kit.cli(site.home, "--system", "pick0", "vault", "audit", victim.volume)
    assert r.returncode == 1
    assert f"block {victim.first_block} (offset 0) fails its checksum" in r.stdout
    assert "DAMAGED" in r.stdout and "status unavailable" in r.stdout
    assert VolumeHistory(site.src).get(victim.volume).status == UNAVAILABLE
    assert vaultcheck.audit(site.src, vols[0].volume).ok
    r = kit.cli(site.home, "--yes", "--system", "pick0", "vault", "restore", "offsite", vset)
    assert r.returncode == 1 and "unavailable" in r.stderr
    data[spot] ^= 0x40  # the good copy comes back: a clean audit with fix=yes makes it usable
    path.write_bytes(bytes(data))
    assert vaultcheck.audit(site.src, victim.volume, fix=True).status == USABLE


def test_read_only_import_by_a_third_system_cannot_write(site):
    kit.fill(site.src, n=300)
    site.define()
    vset = save_to(site.src)
    before = site.archive().objects("pick0")
    dr = Home(site.home).create("dr", small=True)
    vdef, mode = site.define(dr, node="pick0", readonly=True)
    assert mode == "ro"
    kit.fill(dr, n=20, account="other")
    # Through the ordinary command, and straight at the vault: the vault refuses every write.
    r = kit.cli(site.home, "--system", "dr", "vault", "save", "offsite")
    assert r.returncode == 1 and "read-only" in r.stderr and r.stderr.strip().count("\n") == 0
    with VaultSession("127.0.0.1", site.port, "pick0", vdef.key()) as s:
        assert s.mode == "ro"
        with pytest.raises(VaultRefused, match="store refused.*read-only"):
            s.put("evil.001", io.BytesIO(b"x" * 1000), vset="evil", part=1, kind="save", created=time.time())
        with pytest.raises(VaultRefused, match="read-only"):
            s.mark([before[0].name], DELETED)
        assert len(s.list()) == len(before)  # reading is allowed
    assert site.archive().objects("pick0") == before
    kit.wait_no_partials(site)
    dr.close()
    with System.open(site.home / "dr") as d, ov.open_vault_reader(d, "offsite", vset) as rd:
        saves.restore(site.home / "dr", "dr", rd)
    with System.open(site.home / "dr") as d:
        same_data(site.src, d)


def test_lost_connection_mid_volume_is_retried(site, monkeypatch):
    monkeypatch.setattr(vaultio, "RETRY_WAIT", 0.05)  # the waits are not what is tested here
    kit.fill(site.src, n=1500)
    proxy = kit.CuttingProxy(site.port, cut={0, 1}, after=120_000)  # the first two attempts at volume 1 break
    try:
        site.define(maxsize="200K")
        ov.update(site.src, "offsite", {"port": str(proxy.port)})
        vset = save_to(site.src)
        assert proxy.cuts == 2
        vols = VolumeHistory(site.src).volumes("offsite", vset)
        assert {v.status for v in vols} == {USABLE}
        assert sorted(o.name for o in site.archive().objects("pick0")) == sorted(v.volume for v in vols)  # each once
        kit.wait_no_partials(site)
        # A restore whose connection is cut on the way down resumes where it was.
        down = kit.CuttingProxy(site.port, cut={0}, after=150_000, direction="down")
        ov.update(site.src, "offsite", {"port": str(down.port)})
        dr = Home(site.home).create("dr", small=True)
        dr.close()
        with ov.open_vault_reader(site.src, "offsite", vset) as rd:
            saves.restore(site.home / "dr", "dr", rd)
        assert down.cuts == 1
        with System.open(site.home / "dr") as d:
            same_data(site.src, d)
    finally:
        proxy.close()


def test_link_that_keeps_failing_fails_the_save_clearly(site):
    kit.fill(site.src, n=1500)
    site.define(maxsize="200K")
    proxy = kit.CuttingProxy(site.port, after=60_000, cut_all=True)
    try:
        ov.update(site.src, "offsite", {"port": str(proxy.port)})
        r = kit.cli(site.home, "--system", "pick0", "vault", "save", "offsite")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        *retries, error = r.stderr.strip().splitlines()  # a warning per retry, then the one-line error
        assert len(retries) == 3 and all("failed" in w and "retrying" in w for w in retries), r.stderr
        assert re.fullmatch(r"d3hb: volume save-\S+\.001 could not be stored after 4 attempts \([^;]*\); check the vault and the network, .*", error), error
        assert proxy.connections == 4  # attempt 1 on the session opened before the save, then one per retry
        assert ov.volumes(site.src) == []  # never listed, not even as pending
        assert site.archive().objects("pick0") == []
        kit.wait_no_partials(site)
    finally:
        proxy.close()


def test_save_failing_after_some_volumes_leaves_none_usable(site, monkeypatch):
    monkeypatch.setattr(vaultio, "RETRY_WAIT", 0.05)
    kit.fill(site.src, n=1500)
    site.define(maxsize="200K")
    # The first connection stores volume 1 and breaks in volume 2; every retry of volume 2 breaks at once.
    proxy = kit.CuttingProxy(site.port, limits={0: 300_000, 1: 5_000, 2: 5_000, 3: 5_000})
    try:
        ov.update(site.src, "offsite", {"port": str(proxy.port)})
        with pytest.raises(TapeError, match=r"\.002 could not be stored"):
            save_to(site.src)
    finally:
        proxy.close()
    assert ov.volumes(site.src) == []  # volume 1 was only pending, and is gone with the failed set
    objs = site.archive().objects("pick0")
    assert [(o.part, o.status) for o in objs] == [(1, DELETED)]  # marked for deletion on the vault
    kit.wait_no_partials(site)
    assert vaultcheck.reconcile(site.src, "offsite") == [vaultcheck.Finding(objs[0].name, vaultcheck.ORPHAN_MARKED, False, "none")]


def _partials(site) -> list:
    return list((site.target.path / "vault" / "objects").glob("*/.*.partial"))


def test_vault_killed_mid_volume_restarts_and_the_save_completes(site):
    kit.fill(site.src, n=1500)
    site.define(maxsize="200K")
    proxy = kit.CuttingProxy(site.port, stall={0: 120_000})  # the first connection stops inside volume 1
    try:
        ov.update(site.src, "offsite", {"port": str(proxy.port)})
        save = kit.cli_start(site.home, "--system", "pick0", "vault", "save", "offsite")
        wait_until(proxy.stalled.is_set, 60, "the save to reach the middle of volume 1")
        wait_until(lambda: bool(_partials(site)), 30, "the vault to hold a partial volume")
        pid = ov.status(site.target)["pid"]
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # the server is this process's child (serve started it): reap it
        wait_until(lambda: not ov.status(site.target)["running"], 30, "the killed vault to release its pid lock")
        assert _partials(site) and site.archive().objects("pick0") == []  # what kill -9 leaves
        assert [v.status for v in ov.volumes(site.src)] in ([], [PENDING])  # nothing usable meanwhile
        ov.serve(site.target, "127.0.0.1", site.port)
        assert not _partials(site)  # the restarted vault removed it before listening
        assert "a volume being received when the server stopped" in (site.target.path / "vault" / "server.log").read_text()
        proxy.release.set()  # the stalled connection now finds the old vault gone: the source retries
        out, err = save.communicate(timeout=120)
        assert save.returncode == 0, err
    finally:
        proxy.close()
    vols = ov.volumes(site.src)
    assert len(vols) > 1 and {v.status for v in vols} == {USABLE}
    assert f"Volume set {vols[0].vset}: {len(vols)} volumes" in out
    objs = {o.name: o for o in site.archive().objects("pick0")}
    assert sorted(objs) == sorted(v.volume for v in vols)
    assert all((objs[v.volume].size, objs[v.volume].digest) == (v.size, v.digest) for v in vols)
    dr = Home(site.home).create("dr", small=True)
    dr.close()
    with ov.open_vault_reader(site.src, "offsite", vols[0].vset) as rd:
        saves.restore(site.home / "dr", "dr", rd)
    with System.open(site.home / "dr") as d:
        same_data(site.src, d)


def test_the_vault_menu_defines_saves_lists_reconciles_and_audits(site, tmp_path):
    """The Vault menu's forms, played by the script runner, drive the same commands."""
    kit.fill(site.src, n=300)
    script = tmp_path / "vault-menu.txt"
    script.write_text("\n".join([
        "menu vault",
        "choose Define vault", "enter offsite", "enter 127.0.0.1", f"enter {site.port}", f"enter {kit.PASSWORD}",
        "enter", "enter no", "enter 40K", "enter", "enter", "enter y",
        "expect output \"session rw\"",
        "choose Save to vault", "enter offsite", "enter y",
        "expect output \"Volume set save-\"",
        "choose Volumes", "enter offsite", "enter y",
        "expect output usable",
        "choose Reconcile", "enter offsite", "enter no", "enter y",
        "expect output \"0 errors\"",
    ]) + "\n")
    r = kit.cli(site.home, "--system", "pick0", "menu", "--script", str(script))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    vols = ov.volumes(site.src, "offsite")
    assert len(vols) > 1 and {v.status for v in vols} == {USABLE}
    assert sorted(o.name for o in site.archive().objects("pick0")) == sorted(v.volume for v in vols)
    script.write_text("\n".join(["menu vault", "choose Audit volume", f"enter {vols[-1].volume}", "enter no", "enter y",
                                 "expect output intact"]) + "\n")
    r = kit.cli(site.home, "--system", "pick0", "menu", "--script", str(script))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    # A third system imports through the same menu and restores the set.
    Home(site.home).create("dr", small=True).close()
    script.write_text("\n".join([
        "menu vault",
        "choose Define vault", "enter offsite", "enter 127.0.0.1", f"enter {site.port}", f"enter {kit.PASSWORD}",
        "enter pick0", "enter yes", "enter", "enter", "enter", "enter y",
        "expect output \"session ro (read-only import)\"",
        "choose Restore from vault", "enter offsite", f"enter {vols[0].vset}", "enter y", "yes",
        "expect output \"restore: 2 accounts\"",
    ]) + "\n")
    r = kit.cli(site.home, "--system", "dr", "menu", "--script", str(script))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    with System.open(site.home / "dr") as dr:
        same_data(site.src, dr)
    script.write_text("menu vault\nchoose Status\nexpect output pick0\n")
    r = kit.cli(site.home, "--system", "vaulthost", "menu", "--script", str(script))
    assert r.returncode == 0 and "running, pid" in r.stdout, r.stdout[-2000:] + r.stderr


def test_account_save_and_t_dump_come_back_through_the_commands_on_a_third_system(site):
    kit.fill(site.src, n=800)
    kit.fill(site.src, n=50, account="other", fname="misc")
    site.define(maxsize="60K")
    r = kit.cli(site.home, "--system", "pick0", "vault", "save", "offsite", "acme")
    assert r.returncode == 0, r.stderr
    acct = ov.volumes(site.src, "offsite")
    assert len(acct) > 1 and acct[0].kind == "account-save"
    r = kit.cli(site.home, "--system", "pick0", "vault", "t-dump", "offsite", "misc", "account=other")
    assert r.returncode == 0, r.stderr
    tset = ov.latest_set(site.src, "offsite", ("t-dump",))
    dr = Home(site.home).create("dr", small=True)
    site.define(dr, node="pick0", readonly=True)
    dr.create_account("tools", "D")
    dr.create_file("tools", "misc", None, 3, "D")
    dr.create_file("tools", "misc", "misc", 3, "D")
    dr.close()
    r = kit.cli(site.home, "--system", "dr", "vault", "account-restore", "offsite", acct[0].vset, "acme")
    assert r.returncode == 0 and "account-restore" in r.stdout, r.stderr
    r = kit.cli(site.home, "--system", "dr", "vault", "t-load", "offsite", tset, "misc", "account=tools")
    assert r.returncode == 0, r.stderr
    with System.open(site.home / "dr") as d:
        assert not d.has_account("other")  # an account-save holds only the accounts named
        assert digests(d)["acme,inv"] == digests(site.src)["acme,inv"]
        assert dict(d.file("tools", "misc").items()) == dict(site.src.file("other", "misc").items())


def test_source_killed_mid_save_leaves_nothing_usable_and_expire_clears_it(site):
    kit.fill(site.src, n=1500)
    site.define(maxsize="200K")
    # Volume 1 goes through; the connection then stalls inside volume 2, and the source is killed there.
    proxy = kit.CuttingProxy(site.port, stall={0: 300_000})
    try:
        ov.update(site.src, "offsite", {"port": str(proxy.port)})
        save = kit.cli_start(site.home, "--system", "pick0", "vault", "save", "offsite")
        wait_until(proxy.stalled.is_set, 60, "the save to reach the middle of volume 2")
        wait_until(lambda: len(ov.volumes(site.src)) == 1, 30, "volume 1 to enter the history")
        assert vaultcheck.abandoned(site.src) == set()  # its writer is alive: not touched
        assert vaultcheck.expire(site.src, "offsite") == []
        save.kill()
        save.wait(30)
    finally:
        proxy.release.set()
        proxy.close()
    ov.update(site.src, "offsite", {"port": str(site.port)})
    [vol] = ov.volumes(site.src)
    assert vol.status == PENDING and vaultcheck.abandoned(site.src) == {vol.vset}
    with pytest.raises(Refused, match="pending"), ov.open_vault_reader(site.src, "offsite", vol.vset):
        pass
    r = kit.cli(site.home, "--system", "pick0", "vault", "volumes", "offsite")
    assert "abandoned" in r.stdout and "vault expire NAME" in r.stdout, r.stdout
    # Volume 2's connection died with the source.  What the dead source had already pushed into the
    # socket may or may not have been a whole volume: the vault dropped it half-received, or stored it
    # complete (a volume the history never recorded).  Either way nothing is half-written there.
    kit.wait_no_partials(site)
    objs = {o.name: o.status for o in site.archive().objects("pick0")}
    assert objs in ({vol.volume: ACTIVE}, {vol.volume: ACTIVE, f"{vol.vset}.002": ACTIVE}), objs
    r = kit.cli(site.home, "--system", "pick0", "vault", "expire", "offsite")
    assert r.returncode == 0 and all(f"expired {n}" in r.stdout for n in objs), r.stdout + r.stderr
    assert ov.volumes(site.src) == [] and vaultcheck.abandoned(site.src) == set()
    assert {o.name: o.status for o in site.archive().objects("pick0")} == dict.fromkeys(objs, DELETED)
    assert {(f.case, f.error) for f in vaultcheck.reconcile(site.src, "offsite")} == {(vaultcheck.ORPHAN_MARKED, False)}
    assert not list((site.src.path / "vault-spool").glob("*.lock"))


def test_a_source_rebuilt_from_nothing_takes_its_node_back_with_forcesync(site):
    kit.fill(site.src, n=200)
    site.define()
    old = save_to(site.src)
    # The machine is lost: a new pick0 has neither the definition nor the code.
    site.src.close()
    Home(site.home).delete("pick0")
    site.src = Home(site.home).create("pick0", small=True)
    kit.fill(site.src, n=100)
    with pytest.raises(VaultRefused, match="already has a verification code.*define with forcesync=yes"):
        site.define()
    assert ov.Definitions(site.src).list() == []
    vdef, mode = site.define(forcesync="yes")
    assert mode == "rw"
    new = save_to(site.src)
    assert [f.case for f in vaultcheck.reconcile(site.src, "offsite")] == [vaultcheck.ORPHAN]  # the old set, for fix=yes
    assert {o.vset for o in site.archive().objects("pick0")} == {old, new}
