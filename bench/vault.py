"""Vault benchmark: a save and a restore through a vault on loopback, against the same to a local file.

Measured in one run, on one disk (``--dir``, default a temporary directory):

- MB/s of a full save written as virtual volumes to a vault server on
  127.0.0.1 (spooled per volume on the source, fsynced on the vault), and of
  the same save to a local tape file; rounds alternate so that a noisy
  neighbour hits both; their ratio;
- MB/s of a full restore read back from the volume set, and from the file;
- the vault server's peak resident memory (VmHWM): it streams, so it must
  not grow with the size of the save.

Run: ``python bench/vault.py`` (200 MB of items, a few minutes); ``--quick``
for 20 MB.  The last line is ``BENCH-JSON {...}`` for ``bench/run``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d3hb.ops import saves  # noqa: E402
from d3hb.ops import vault as ov  # noqa: E402
from d3hb.store import Home  # noqa: E402
from d3hb.testing.procs import free_port  # noqa: E402

PASSWORD = "bench-vault-password"
ITEM = 2000  # bytes of body per item


def build(home: Home, mb: int):
    src = home.create("pick0", small=True)
    src.create_account("acme", "D")
    src.create_file("acme", "inv", None, 7, "D")
    src.create_file("acme", "inv", "inv", 1009, "D")
    f = src.file("acme", "inv")
    n = mb * 1024 * 1024 // ITEM
    for start in range(0, n, 5000):
        with src.transaction():
            for i in range(start, min(n, start + 5000)):
                f.write(f"k{i}", os.urandom(ITEM // 2).hex())
    return src


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=None, help="MB of item data (default 200; 20 with --quick)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternated (default 3)")
    p.add_argument("--maxsize", default="16M", help="the vault's maximum volume size (default 16M)")
    p.add_argument("--quick", action="store_true", help="20 MB, for bench/run")
    p.add_argument("--dir", type=Path, default=None, help="where to build the systems (default: a temporary directory)")
    args = p.parse_args(argv)
    mb = args.mb or (20 if args.quick else 200)
    root = Path(tempfile.mkdtemp(prefix="d3hb-bench-vault-", dir=args.dir))
    home = Home(root)
    target = src = None
    try:
        src = build(home, mb)
        target = home.create("vaulthost", small=True)
        ov.register(target, "pick0", {"password": PASSWORD, "archretain": "1d"})
        port = free_port()
        pid = ov.serve(target, "127.0.0.1", port)
        ov.define(src, "offsite", {"host": "127.0.0.1", "port": str(port), "password": PASSWORD, "maxsize": args.maxsize})
        tape_file = root / "tape"
        t: dict[str, list[float]] = {"file_save": [], "vault_save": [], "file_restore": [], "vault_restore": []}
        tape_bytes = vols = 0
        vset = ""
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with open(tape_file, "wb") as fh:
                saves.save(src, fh, keep_queue=True)
                fh.flush()
                os.fsync(fh.fileno())
            t["file_save"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with ov.open_vault_writer(src, "offsite") as w:
                saves.save(src, w, keep_queue=True)
            t["vault_save"].append(time.perf_counter() - t0)
            vset, vols = w.vset, len(w.stored)
            tape_bytes = tape_file.stat().st_size
            for kind in ("file_restore", "vault_restore"):
                dest = home.create("dr", small=True)
                dest.close()
                t0 = time.perf_counter()
                if kind == "file_restore":
                    with open(tape_file, "rb") as fh:
                        saves.restore(root / "dr", "dr", fh)
                else:
                    with ov.open_vault_reader(src, "offsite", vset) as rd:
                        saves.restore(root / "dr", "dr", rd)
                t[kind].append(time.perf_counter() - t0)
                home.delete("dr")
            # the volumes of earlier rounds go, as expire would take them: the disk stays bounded
            done = [v.volume for v in ov.volumes(src, "offsite") if v.vset != vset]
            if done:
                from d3hb.store.vaultstore import DELETED, VolumeHistory

                with ov.session(src, ov.Definitions(src).get("offsite")) as s:
                    s.mark(done, DELETED)
                VolumeHistory(src).delete(done)
                ov.purge(target, now=time.time() + 2 * 86400)
        rss = vm_hwm_kb(pid)
        best = {k: min(v) for k, v in t.items()}
        tape_mb = tape_bytes / 1e6
        mbs = {k: tape_mb / v for k, v in best.items()}
        print(f"tape {tape_mb:.1f} MB ({mb} MB of items), vault maximum volume size {args.maxsize}: {vols} volumes; best of {args.rounds} rounds")
        for k in ("file_save", "vault_save", "file_restore", "vault_restore"):
            print(f"{k.replace('_', ' '):<16} {mbs[k]:8.1f} MB/s")
        print(f"vault server peak RSS {rss / 1024:.1f} MB")
        print(f"vault save / file save = {mbs['vault_save'] / mbs['file_save']:.2f}; "
              f"vault restore / file restore = {mbs['vault_restore'] / mbs['file_restore']:.2f}")

        def row(figure, value, unit, reference=None, ref_value=None):
            return {"figure": figure, "value": round(value, 1), "unit": unit, "reference": reference,
                    "ref_value": None if ref_value is None else round(ref_value, 1),
                    "ratio": round(value / ref_value, 3) if ref_value else None}

        label = f"{mb} MB"
        rows = [
            row(f"save to vault MB/s, {label}", mbs["vault_save"], "MB/s", "save to local file MB/s", mbs["file_save"]),
            row(f"restore from vault MB/s, {label}", mbs["vault_restore"], "MB/s", "restore from local file MB/s", mbs["file_restore"]),
            row(f"vault server peak RSS, {label}", rss / 1024, "MB"),
        ]
        print("BENCH-JSON " + json.dumps({"bench": "vault", "rows": rows}))
        return 0
    finally:
        if target is not None:
            ov.stop(target)
        for s in (src, target):
            if s is not None:
                s.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
