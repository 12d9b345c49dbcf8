"""A system: one MultiValue database (D3's virtual machine) in one directory.

The write path lives here.  Every update and, when D3's logging rules say
so, its queue record are written in ONE SQLite transaction: an update is in
the file and in the queue, or in neither — also when the process is killed
at any instant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import AlreadyExists, NotFound, Refused, UsageError
from d3hb.store import control, dptr, logrules, schema
from d3hb.store.txn import Kind

logger = logging.getLogger(__name__)

DB_NAME = "system.db"
DEFAULT_ACCOUNT_MODULO = 37
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# D3: account names may not contain  *~@,'():?/<>\"|^[]  ; file names likewise, no comma.
_BAD_NAME = set("*~@,'():?/<>\"|^[] \t\\")


def check_name(name: str, what: str) -> str:
    if not name or len(name) > 64 or _BAD_NAME & set(name) or any(ord(c) < 32 or ord(c) > 126 for c in name):
        raise UsageError(f"illegal {what} name {name!r}", f"{what} names are 1-64 printable characters without spaces or *~@,'():?/<>\"|^[]\\")
    return name


@dataclass(frozen=True)
class FileInfo:
    """One file level: the dictionary (``data_name`` None) or a data section."""

    fof: int
    account: str
    dict_name: str
    data_name: str | None
    code: str
    modulo: int

    @property
    def ref(self) -> str:
        if self.data_name is None:
            return f"dict {self.dict_name}"
        if self.data_name == self.dict_name:
            return self.dict_name
        return f"{self.dict_name},{self.data_name}"

    @property
    def qualified(self) -> str:
        return f"{self.account},{self.ref}" if self.data_name is not None else f"{self.account},dict {self.dict_name}"

    @property
    def is_control(self) -> bool:
        return control.is_control(self.account, self.dict_name)


@dataclass(frozen=True)
class Account:
    name: str
    code: str


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``invoices`` -> (invoices, invoices); ``dict invoices`` -> (invoices, None);
    ``invoices,2026`` -> (invoices, 2026)."""
    text = ref.strip()
    low = text.lower()
    if low.startswith("dict "):
        return text[5:].strip(), None
    if low.startswith("data "):
        text = text[5:].strip()
    if "," in text:
        d, s = text.split(",", 1)
        return d.strip(), (s.strip() or d.strip())
    return text, text


def _row_file(row: sqlite3.Row | tuple) -> FileInfo:
    fof, account, dict_name, data_name, code, modulo = row
    return FileInfo(fof, account, dict_name, data_name or None, code, modulo)


class System:
    """An open system.  Not shared across threads; open one per process/thread."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._depth = 0
        self.local_logging = True  # D3's per-process logging switch (rule 2)

    # -- opening --------------------------------------------------------
    @classmethod
    def create(cls, path: Path, name: str | None = None, *, small: bool = False) -> System:
        path = Path(path)
        if (path / DB_NAME).exists():
            raise AlreadyExists(f"system {path.name!r} already exists at {path}", "open it, or delete it first")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        conn = schema.connect(path / DB_NAME)
        schema.init(conn)
        sysobj = cls(path, conn)
        now = time.time()
        with sysobj.transaction():
            for key, value in {
                "schema": str(schema.SCHEMA_VERSION),
                "name": name or path.name,
                "history_id": uuid.uuid4().hex,
                "epoch": "1",
                "created": repr(now),
                "logging": "on",
                "enqueuing": "on",
                "log_mode": "dl",
                "replica": "off",
                "small": "yes" if small else "no",
            }.items():
                sysobj.set_meta(key, value)
            conn.execute("INSERT INTO accounts VALUES(?,?,?)", (control.SYSTEM_ACCOUNT, "D", now))
            for fname, code in control.CONTROL_FILES:
                # file-of-files and mds are single-level system files; the others get a dictionary too.
                if fname not in ("file-of-files", "mds"):
                    continue
                conn.execute(
                    "INSERT INTO files(account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?)",
                    (control.SYSTEM_ACCOUNT, fname, fname, code, 1 if small else 7, now),
                )
            for fname, code in control.CONTROL_FILES:
                if fname in ("file-of-files", "mds"):
                    continue
                for data in ("", fname):
                    conn.execute(
                        "INSERT INTO files(account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?)",
                        (control.SYSTEM_ACCOUNT, fname, data, code if data else "D", 1 if small else 7, now),
                    )
        logger.info("created system %s at %s", sysobj.name, path)
        return sysobj

    @classmethod
    def open(cls, path: Path | str) -> System:
        path = Path(path)
        db = path / DB_NAME
        if (path / "restore.swap").exists() or (path / (DB_NAME + ".restoring")).exists():
            from d3hb.store.dump import recover  # a restore was interrupted: finish or undo it first

            recover(path)
        if not db.exists():
            raise NotFound(f"no system at {path}", "create it with 'd3hb system create NAME'")
        conn = schema.connect(db)
        sysobj = cls(path, conn)
        with schema.translate(db):
            row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or int(row[0]) != schema.SCHEMA_VERSION:
            conn.close()
            raise NotFound(f"{db} is not a d3hb system of schema {schema.SCHEMA_VERSION}", "restore it from a save")
        return sysobj

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        with schema.translate(self.path.name):
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            with schema.translate(self.path.name):
                self.conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A consistent read view (a save reads this while writers go on)."""
        if self._depth:
            yield self.conn
            return
        with schema.translate(self.path.name):
            self.conn.execute("BEGIN DEFERRED")
            self.conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone()  # takes the read snapshot now
        self._depth = 1
        try:
            yield self.conn
        finally:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("COMMIT")

    def q(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        with schema.translate(self.path.name):
            return self.conn.execute(sql, params)

    # -- meta and settings ----------------------------------------------
    def meta(self, key: str, default: str = "") -> str:
        row = self.q("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.q("INSERT INTO meta VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    @property
    def name(self) -> str:
        return self.meta("name", self.path.name)

    @property
    def history_id(self) -> str:
        return self.meta("history_id")

    @property
    def epoch(self) -> int:
        return int(self.meta("epoch", "1"))

    @property
    def log_all(self) -> bool:
        return self.meta("log_mode") == "all"

    @property
    def logging(self) -> bool:
        return self.meta("logging", "on") == "on"

    @property
    def enqueuing(self) -> bool:
        return self.meta("enqueuing", "on") == "on"

    @property
    def replica(self) -> bool:
        """A hot-backup slave not yet promoted: local writes to DL files are refused."""
        return self.meta("replica", "off") == "on"

    def error_log(self, message: str, kind: str = "info") -> None:
        """Append to dm,errors (D3 logs enqueuing start/stop and incidents there)."""
        with self.transaction():
            seq = int(self.meta("errors_seq", "0")) + 1
            self.set_meta("errors_seq", str(seq))
            f = self.file_info(control.SYSTEM_ACCOUNT, "errors")
            now = time.time()
            body = "\xfe".join([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)), kind, message])
            self._put(f, str(seq).encode(), body.encode("utf-8", "replace"), log=None, guard=False)

    # -- accounts ---------------------------------------------------------
    def accounts(self) -> list[Account]:
        return [Account(n, c) for n, c in self.q("SELECT name, code FROM accounts ORDER BY name")]

    def account(self, name: str) -> Account:
        row = self.q("SELECT name, code FROM accounts WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"account {name!r} not found on system {self.name!r}", "check the name with 'list mds', or create it with create-account")
        return Account(*row)

    def has_account(self, name: str) -> bool:
        return self.q("SELECT 1 FROM accounts WHERE name=?", (name,)).fetchone() is not None

    def create_account(self, name: str, code: str = "D", *, log: bool | None = None, guard: bool = True) -> Account:
        check_name(name, "account")
        code = dptr.parse(code)
        with self.transaction():
            if self.has_account(name):
                raise AlreadyExists(f"account {name!r} already exists", "choose another name")
            self.q("INSERT INTO accounts VALUES(?,?,?)", (name, code, time.time()))
            self._log_dptr(Kind.CREATE_ACCOUNT, None, code, account=name, log=log)
        return Account(name, code)

    def delete_account(self, name: str, *, log: bool | None = None, guard: bool = True) -> int:
        if name == control.SYSTEM_ACCOUNT:
            raise Refused("the dm account cannot be deleted", "it holds the system's control files")
        with self.transaction():
            acct = self.account(name)
            files = self.files(name)
            if guard:
                for f in files:
                    self._guard(f)
            for f in files:
                self.q("DELETE FROM items WHERE fof=?", (f.fof,))
                self.q("DELETE FROM files WHERE fof=?", (f.fof,))
            self.q("DELETE FROM accounts WHERE name=?", (name,))
            self._log_dptr(Kind.DELETE_ACCOUNT, None, acct.code, account=name, log=log)
        return len(files)

    def set_account_code(self, name: str, code: str, *, log: bool | None = None) -> None:
        code = dptr.parse(code)
        with self.transaction():
            self.account(name)
            self.q("UPDATE accounts SET code=? WHERE name=?", (code, name))
            self._log_dptr(Kind.DPTR, None, code, account=name, log=log)

    # -- files ------------------------------------------------------------
    _FILE_COLS = "fof, account, dict_name, data_name, code, modulo"

    def files(self, account: str | None = None) -> list[FileInfo]:
        if account is None:
            rows = self.q(f"SELECT {self._FILE_COLS} FROM files ORDER BY fof")
        else:
            rows = self.q(f"SELECT {self._FILE_COLS} FROM files WHERE account=? ORDER BY fof", (account,))
        return [_row_file(r) for r in rows]

    def find_file(self, account: str, dict_name: str, data_name: str | None) -> FileInfo | None:
        row = self.q(
            f"SELECT {self._FILE_COLS} FROM files WHERE account=? AND dict_name=? AND data_name=?",
            (account, dict_name, data_name or ""),
        ).fetchone()
        return _row_file(row) if row else None

    def file_by_fof(self, fof: int) -> FileInfo | None:
        row = self.q(f"SELECT {self._FILE_COLS} FROM files WHERE fof=?", (fof,)).fetchone()
        return _row_file(row) if row else None

    def file_info(self, account: str, ref: str) -> FileInfo:
        dict_name, data_name = parse_ref(ref)
        f = self.find_file(account, dict_name, data_name)
        if f is None:
            self.account(account)
            raise NotFound(f"file {ref!r} not found in account {account!r}", "check the name, or create it with create-file")
        return f

    def file(self, account: str, ref: str) -> "File":
        from d3hb.store.files import File

        return File(self, self.file_info(account, ref))

    def create_file(
        self,
        account: str,
        dict_name: str,
        data_name: str | None,
        modulo: int,
        code: str = "D",
        *,
        fof: int | None = None,
        log: bool | None = None,
        guard: bool = True,
    ) -> FileInfo:
        """Create one file level.  A data section needs its dictionary first, as in D3."""
        check_name(dict_name, "file")
        if data_name is not None:
            check_name(data_name, "file")
        if not 1 <= modulo <= 16_777_213:
            raise UsageError(f"modulo {modulo} out of range", "give a modulo from 1 to 16777213")
        code = dptr.parse(code)
        with self.transaction():
            acct = self.account(account)
            # Files inherit the account's logging/saving flags (create-account l, t, x, y).
            inherited = set(acct.code[1:]) & set("LTXY")
            if inherited and not (set(code[1:]) & set("LTXY")):
                code = dptr.parse(code + "".join(inherited))
            if self.find_file(account, dict_name, data_name) is not None:
                raise AlreadyExists(f"file {FileInfo(0, account, dict_name, data_name, code, modulo).ref!r} already exists in {account!r}", "choose another name or delete it first")
            if data_name is not None and self.find_file(account, dict_name, None) is None:
                raise NotFound(f"dictionary {dict_name!r} not found in {account!r}", f"create it first: create-file dict {dict_name} 7")
            if fof is None:
                cur = self.q(
                    "INSERT INTO files(account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?)",
                    (account, dict_name, data_name or "", code, modulo, time.time()),
                )
                fof = int(cur.lastrowid)  # type: ignore[arg-type]
            else:
                if self.file_by_fof(fof) is not None:
                    raise AlreadyExists(f"FOF number {fof} is in use", "choose another or renumber with save (k")
                self.q(
                    "INSERT INTO files(fof,account,dict_name,data_name,code,modulo,created) VALUES(?,?,?,?,?,?,?)",
                    (fof, account, dict_name, data_name or "", code, modulo, time.time()),
                )
            info = FileInfo(fof, account, dict_name, data_name, code, modulo)
            self._log_dptr(Kind.CREATE_FILE, info, code, log=log)
        return info

    def delete_file(self, f: FileInfo, *, log: bool | None = None, guard: bool = True) -> None:
        if f.fof <= 2 or (f.is_control and guard):
            raise Refused(f"{f.qualified} is a system file", "it cannot be deleted")
        with self.transaction():
            if guard:
                self._guard(f)
            if f.data_name is None:
                others = [x for x in self.files(f.account) if x.dict_name == f.dict_name and x.data_name is not None]
                if others:
                    raise Refused(f"dictionary {f.dict_name!r} still has data sections ({', '.join(x.ref for x in others)})", "delete the data sections first")
            self.q("DELETE FROM items WHERE fof=?", (f.fof,))
            self.q("DELETE FROM files WHERE fof=?", (f.fof,))
            self._log_dptr(Kind.DELETE_FILE, f, f.code, log=log)

    def set_code(self, f: FileInfo, code: str, *, log: bool | None = None) -> FileInfo:
        code = dptr.parse(code)
        if f.fof == 1 and code != "DX":
            raise Refused("the file-of-files must stay DX", "D3 requires it so FOF numbers survive a restore")
        with self.transaction():
            self.q("UPDATE files SET code=? WHERE fof=?", (code, f.fof))
            new = FileInfo(f.fof, f.account, f.dict_name, f.data_name, code, f.modulo)
            self._log_dptr(Kind.DPTR, new, code, log=log)
        return new

    def clear_file(self, f: FileInfo, *, log: bool | None = None, guard: bool = True) -> int:
        with self.transaction():
            if guard:
                self._guard(f)
            n = self.conn.execute("DELETE FROM items WHERE fof=?", (f.fof,)).rowcount
            self._log(Kind.CLEAR, f, log=log)
        return n

    def resize(self, f: FileInfo, modulo: int, *, log: bool | None = None, batch: int | None = None) -> FileInfo:
        """Regroup every item.  ``batch`` commits every N items (a helper's way, so
        the slave is not blocked); the file is usable and consistent throughout
        because the group is derived from (id, modulo) and rewritten, not moved."""
        from d3hb.store.hashing import group

        if not 1 <= modulo <= 16_777_213:
            raise UsageError(f"modulo {modulo} out of range", "give a modulo from 1 to 16777213")
        with self.transaction():
            self.q("UPDATE files SET modulo=? WHERE fof=?", (modulo, f.fof))
            self._log(Kind.RESIZE, f, modulo=modulo, log=log)
        last = -1
        while True:
            with self.transaction():
                rows = self.q(
                    "SELECT rid, id FROM items WHERE fof=? AND rid>? ORDER BY rid LIMIT ?",
                    (f.fof, last, batch or 1 << 62),
                ).fetchall()
                if not rows:
                    break
                self.conn.executemany("UPDATE items SET grp=? WHERE rid=?", [(group(i, modulo), r) for r, i in rows])
                last = rows[-1][0]
            if batch is None:
                break
        return FileInfo(f.fof, f.account, f.dict_name, f.data_name, f.code, modulo)

    # -- the write path ----------------------------------------------------
    def _guard(self, f: FileInfo) -> None:
        if "L" in f.code and self.replica:
            raise Refused(
                f"{f.qualified} is replicated from a master: system {self.name!r} is a hot-backup slave",
                "write on the master, or promote this system with 'd3hb hot-backup promote NAME'",
            )

    def _put(self, f: FileInfo, item_id: bytes, body: bytes, *, log: bool | None, guard: bool) -> int | None:
        from d3hb.store.hashing import group

        if guard:
            self._guard(f)
        self.conn.execute(
            "INSERT INTO items(fof,id,grp,body) VALUES(?,?,?,?) ON CONFLICT(fof,id) DO UPDATE SET body=excluded.body",
            (f.fof, item_id, group(item_id, f.modulo), body),
        )
        return self._log(Kind.WRITE, f, item=item_id, body=body, log=log)

    def _drop(self, f: FileInfo, item_id: bytes, *, log: bool | None, guard: bool) -> int | None | bool:
        """Delete an item: False when it was not there, else its transaction number (None: not logged)."""
        if guard:
            self._guard(f)
        gone = self.conn.execute("DELETE FROM items WHERE fof=? AND id=?", (f.fof, item_id)).rowcount > 0
        if not gone:
            return False
        return self._log(Kind.DELETE, f, item=item_id, log=log)

    def should_log(self, file_code: str, *, is_dptr: bool = False, dptr_code: str = "") -> logrules.Decision:
        # One read of the three switches per update: another process may flip them at any time.
        switches = dict(self.q("SELECT key, value FROM meta WHERE key IN ('logging','enqueuing','log_mode')").fetchall())
        return logrules.decide(
            global_on=switches.get("logging", "on") == "on" and switches.get("enqueuing", "on") == "on",
            local_on=self.local_logging,
            file_code=file_code,
            is_dptr=is_dptr,
            dptr_code=dptr_code,
            log_all=switches.get("log_mode") == "all",
        )

    def _log(self, kind: Kind, f: FileInfo, *, item: bytes = b"", body: bytes = b"", modulo: int = 0, log: bool | None) -> int | None:
        """Queue the update when the rules (or ``log``) say so; return its number."""
        if log is None:
            log = bool(self.should_log(f.code))
        if not log:
            return None
        return self.enqueue(kind, f.fof, f.account, f.dict_name, f.data_name, item=item, body=body, code=f.code, modulo=modulo or f.modulo)

    def _log_dptr(self, kind: Kind, f: FileInfo | None, code: str, *, account: str = "", log: bool | None) -> None:
        """Log a D-pointer update: rules 3/4 read the code of the file holding the
        pointer (the account's MD, or mds for an account pointer), rule 6 the pointer's own."""
        if f is not None:
            account = f.account
        if log is None:
            holder = self.account(account).code if f is not None and self.has_account(account) else "D"
            log = bool(self.should_log(holder, is_dptr=True, dptr_code=code))
        if log:
            if f is None:
                self.enqueue(kind, 0, account, "", None, code=code)
            else:
                self.enqueue(kind, f.fof, f.account, f.dict_name, f.data_name, code=code, modulo=f.modulo)

    def enqueue(
        self,
        kind: Kind,
        fof: int,
        account: str,
        dict_name: str,
        data_name: str | None,
        *,
        item: bytes = b"",
        body: bytes = b"",
        code: str = "",
        modulo: int = 0,
    ) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO queue(kind,fof,account,dict_name,data_name,item,body,code,modulo,ts) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (kind.value, fof, account, dict_name, data_name, item, body, code, modulo, time.time()),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    @property
    def queue(self) -> "Queue":
        from d3hb.store.queue import Queue

        return Queue(self)
