"""A tape device of type vault: the ordinary TCL tape commands write and read virtual volumes."""

from __future__ import annotations

import vaultkit as kit

from d3hb.ops import vault as ov
from d3hb.store import Home, System, digests
from d3hb.store.vaultstore import USABLE


def tcl(site, system: str, *words: str, yes: bool = False):
    return kit.cli(site.home, *(["--yes"] if yes else []), "--system", system, "tcl", *words)


def test_tcl_save_and_t_dump_to_a_vault_device_and_back_on_a_third_system(site):
    kit.fill(site.src, n=1200)
    site.define(maxsize="80K")
    r = tcl(site, "pick0", "set-device", "1", "offsite", "v")
    assert r.returncode == 0 and "offsite (vault)" in r.stdout, r.stderr
    r = tcl(site, "pick0", "save", "nightly")
    assert r.returncode == 0 and "Tape label: save" in r.stdout, r.stderr
    saved = ov.volumes(site.src, "offsite")
    assert len(saved) > 1 and {v.status for v in saved} == {USABLE} and {v.kind for v in saved} == {"save"}
    at_save = digests(site.src)
    r = tcl(site, "pick0", "--account", "acme", "t-dump", "inv")
    assert r.returncode == 0, r.stderr
    tset = ov.latest_set(site.src, "offsite", ("t-dump",))
    # A t-load mounts the newest t-dump set.
    site.src.create_file("acme", "copy", None, 7, "D")
    site.src.create_file("acme", "copy", "copy", 7, "D")
    r = tcl(site, "pick0", "--account", "acme", "t-load", "copy")
    assert r.returncode == 0, r.stderr
    assert dict(site.src.file("acme", "copy").items()) == dict(site.src.file("acme", "inv").items())
    # A third system imports and mounts one set by name.
    dr = Home(site.home).create("dr", small=True)
    site.define(dr, node="pick0", readonly=True)
    dr.close()
    vset = saved[0].vset
    r = tcl(site, "dr", "set-device", "1", f"offsite:{vset}", "v")
    assert r.returncode == 0, r.stderr
    r = tcl(site, "dr", "restore", yes=True)
    assert r.returncode == 0 and "restore: 2 accounts" in r.stdout, r.stderr
    with System.open(site.home / "dr") as d:
        assert digests(d) == at_save and at_save
    assert tset  # the t-dump set stayed as it was written
    # Writing to a device that names a set is refused before anything is written.
    r = tcl(site, "dr", "save")
    assert r.returncode == 2 and "a new tape is a new set" in r.stderr, r.stderr
    # A txn-load finds no transaction tape among the sets: one line, nothing read.
    r = tcl(site, "pick0", "txn-load")
    assert r.returncode == 1 and "no complete txn-dump volume set" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    # A restore mounts the newest full save although a t-dump came after it (the 'copy' file goes away).
    site.src.close()
    r = tcl(site, "pick0", "restore", yes=True)
    assert r.returncode == 0 and "restore: 2 accounts" in r.stdout, r.stderr
    with System.open(site.home / "pick0") as s:
        assert digests(s) == at_save


def test_a_vault_device_needs_a_proper_name(site):
    r = tcl(site, "pick0", "set-device", "1", "off site", "v")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = tcl(site, "pick0", "set-device", "1", "no/such", "v")
    assert r.returncode == 2 and "is not NAME or NAME:VOLUMESET" in r.stderr, r.stderr
    r = tcl(site, "pick0", "set-device", "1", "nowhere", "v")
    assert r.returncode == 0, r.stderr
    r = tcl(site, "pick0", "save")
    assert r.returncode == 1 and "no vault 'nowhere' is defined" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
