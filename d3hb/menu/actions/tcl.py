"""TCL verbs for accounts, files, D-pointers, logging, the queue and messages.

Each verb keeps D3's syntax (``create-file {dict|data} name {dmod} {dmod}
{(options}``) and, where D3 prints a numbered message, its wording.  Item
verbs (list, sort, count, ct, copy, write, read, delete) are in
:mod:`d3hb.menu.actions.tcl_items`, imported at the end so one import
registers every ``tcl.*`` action.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator

from d3hb import __version__
from d3hb.errors import D3hbError, NotFound, Refused, UsageError
from d3hb.menu.actions.common import open_system, show_bytes, table
from d3hb.menu.registry import Context, Request, action
from d3hb.store import FileInfo, System, dptr, messages

DEFAULT_DICT_MODULO = 7
DEFAULT_DATA_MODULO = 31


def check_options(req: Request, allowed: str, verb: str) -> str:
    """The option letters, lower-cased; unknown letters are refused, naming them."""
    letters = re.sub(r"\d+", "", req.options).lower()
    bad = sorted(set(letters) - set(allowed))
    if bad:
        known = ", ".join(allowed) if allowed else "none"
        raise UsageError(f"unknown option{'s' if len(bad) > 1 else ''} {''.join(bad)!r} for {verb}", f"{verb} options are: {known}")
    return letters


def modulo_arg(text: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16_777_213:
        raise UsageError(f"bad {what} {text!r}", "give a modulo from 1 to 16777213")
    return int(text)


def code_from_options(letters: str) -> str:
    return dptr.parse("D" + "".join(sorted(set(letters.upper()) & set(dptr.FLAGS))))


# -- accounts -------------------------------------------------------------
@action("tcl.create-account", "Create an account (D-pointer code from the options)", "NAME {(l x y t}")
def create_account(ctx: Context, req: Request) -> None:
    name = req.arg(0, "account name")
    code = code_from_options(check_options(req, "lxyt", "create-account"))
    with open_system(ctx) as s:
        s.create_account(name, code)
    ctx.out(f"[ '{name}' created; code {code} ]")


@action("tcl.delete-account", "Delete an account and all its files", "NAME")
def delete_account(ctx: Context, req: Request) -> None:
    name = req.arg(0, "account name")
    check_options(req, "", "delete-account")
    with open_system(ctx) as s:
        s.account(name)  # an unknown name is refused before asking
        if not ctx.confirm(f"Delete account '{name}' and all its files?"):
            raise UsageError(f"account {name!r} not deleted", "answer Y, or give --yes")
        n = s.delete_account(name)
    ctx.out(f"[ '{name}' deleted with {n} file levels ]")


# -- files ----------------------------------------------------------------
def _level_words(req: Request, verb: str) -> tuple[str | None, str, list[str]]:
    """``{dict|data} name rest...`` -> (level or None, name, rest)."""
    args = list(req.args)
    level = None
    if args and args[0].lower() in ("dict", "data"):
        level = args.pop(0).lower()
    if not args:
        raise UsageError(f"missing file name for {verb}", f"e.g. '{verb} invoices'")
    return level, args[0], args[1:]


def _split(name: str) -> tuple[str, str]:
    """``invoices`` -> (invoices, invoices); ``invoices,2026`` -> (invoices, 2026)."""
    if "," in name:
        d, sec = name.split(",", 1)
        return d, sec or d
    return name, name


@action("tcl.create-file", "Create a file: dictionary and data section, or one level",
        "{dict|data} NAME{,SECTION} {DMOD} {MOD} {(l x y t}")
def create_file(ctx: Context, req: Request) -> None:
    level, name, rest = _level_words(req, "create-file")
    code = code_from_options(check_options(req, "lxytfpnus", "create-file"))
    dict_name, data_name = _split(name)
    with open_system(ctx) as s, s.transaction():
        made: list[FileInfo] = []
        if level == "dict":
            if len(rest) > 1:
                raise UsageError("create-file dict takes one modulo", "e.g. 'create-file dict invoices 7'")
            mod = modulo_arg(rest[0], "dictionary modulo") if rest else DEFAULT_DICT_MODULO
            made.append(s.create_file(ctx.account, dict_name, None, mod, code))
        elif level == "data":
            if len(rest) > 1:
                raise UsageError("create-file data takes one modulo", "e.g. 'create-file data invoices,2026 31'")
            mod = modulo_arg(rest[0], "data modulo") if rest else DEFAULT_DATA_MODULO
            made.append(s.create_file(ctx.account, dict_name, data_name, mod, code))
        else:
            if len(rest) > 2:
                raise UsageError("create-file takes at most two moduli", "e.g. 'create-file invoices 7 31'")
            dmod = modulo_arg(rest[0], "dictionary modulo") if rest else DEFAULT_DICT_MODULO
            mod = modulo_arg(rest[1], "data modulo") if len(rest) > 1 else DEFAULT_DATA_MODULO
            s.account(ctx.account)
            if s.find_file(ctx.account, dict_name, None) is None:
                made.append(s.create_file(ctx.account, dict_name, None, dmod, code))
            made.append(s.create_file(ctx.account, dict_name, data_name, mod, code))
    for f in made:
        ctx.out(f"[417] File '{f.ref}' created; FOF = {f.fof}, modulo = {f.modulo}, code = {f.code}.")


@action("tcl.delete-file", "Delete a file, a data section or a dictionary", "{dict|data} NAME{,SECTION}")
def delete_file(ctx: Context, req: Request) -> None:
    level, name, rest = _level_words(req, "delete-file")
    check_options(req, "", "delete-file")
    if rest:
        raise UsageError(f"unexpected {' '.join(rest)!r} after the file name", "delete one file at a time")
    dict_name, data_name = _split(name)
    with open_system(ctx) as s, s.transaction():
        s.account(ctx.account)
        if level == "dict":
            targets = [_must(s, ctx.account, dict_name, None)]
        elif level == "data" or "," in name:
            targets = [_must(s, ctx.account, dict_name, data_name)]
        else:
            # A bare name is the whole file: its data sections, then the dictionary (D3's order).
            targets = [f for f in s.files(ctx.account) if f.dict_name == dict_name and f.data_name is not None]
            dict_level = s.find_file(ctx.account, dict_name, None)
            if dict_level is not None:
                targets.append(dict_level)
            if not targets:
                raise NotFound(f"file {name!r} not found in account {ctx.account!r}", "check the name with 'list-files' or 'd3hb system show'")
        for f in targets:
            s.delete_file(f)
    for f in targets:
        ctx.out(f"[418] File '{f.ref}' deleted.")


def _must(s: System, account: str, dict_name: str, data_name: str | None) -> FileInfo:
    f = s.find_file(account, dict_name, data_name)
    if f is None:
        ref = f"dict {dict_name}" if data_name is None else (dict_name if data_name == dict_name else f"{dict_name},{data_name}")
        raise NotFound(f"file {ref!r} not found in account {account!r}", "check the name, or create it with create-file")
    return f


@action("tcl.clear-file", "Remove every item of a file level", "{data|dict} NAME{,SECTION}")
def clear_file(ctx: Context, req: Request) -> None:
    level, name, rest = _level_words(req, "clear-file")
    check_options(req, "", "clear-file")
    if rest:
        raise UsageError(f"unexpected {' '.join(rest)!r} after the file name", "clear one file at a time")
    dict_name, data_name = _split(name)
    with open_system(ctx) as s:
        s.account(ctx.account)
        f = _must(s, ctx.account, dict_name, None if level == "dict" else data_name)
        n = s.clear_file(f)
    ctx.out(f"[ '{f.ref}' cleared: {n} items removed ]")


# -- set-dptr ---------------------------------------------------------------
def _dptr_targets(s: System, account: str, word: str, accounts: bool) -> Iterator[FileInfo | str]:
    """What one item-list word names: file levels, or (a) an account and all its files."""
    if accounts:
        s.account(word)
        yield word  # the account's own pointer in mds
        yield from s.files(word)
        return
    acct = account
    if word.endswith(",") and word.count(",") == 2:  # pa,entity,  = all data levels of entity in pa
        acct, fname, _ = word.split(",")
        s.account(acct)
        levels = [f for f in s.files(acct) if f.dict_name == fname and f.data_name is not None]
    elif word.lower().startswith("dict "):
        levels = [_must(s, acct, word[5:].strip(), None)]
    elif "," in word:
        d, sec = _split(word)
        levels = [_must(s, acct, d, sec)]
    else:
        levels = [f for f in s.files(acct) if f.dict_name == word]
    if not levels:
        raise NotFound(f"file {word!r} not found in account {acct!r}", "check the name")
    yield from levels


@action("tcl.set-dptr", "Set or reset D-pointer types (x y l t s p n u f)", "{[+|-]TYPES} NAME ... {(a f q}")
def set_dptr(ctx: Context, req: Request) -> int:
    opts = check_options(req, "afq", "set-dptr")
    if "a" in opts and "f" in opts:
        raise UsageError("options a and f exclude each other", "give (a for accounts or (f for files")
    args = list(req.args)
    change = dptr.Change(frozenset(), frozenset())
    if args and args[0][:1] in "+-":
        change = dptr.parse_change(args.pop(0))
    if not args:
        raise UsageError("missing item list for set-dptr", "name the files (or accounts with (a), e.g. 'set-dptr +l invoices'")
    quiet = "q" in opts
    changed, errors, shown = 0, [], []
    with open_system(ctx) as s, s.transaction():
        s.account(ctx.account)
        for word in args:
            try:
                targets = list(_dptr_targets(s, ctx.account, word, "a" in opts))
            except D3hbError as exc:
                errors.append(str(exc))
                continue
            for t in targets:
                label = f"mds {t}" if isinstance(t, str) else t.qualified
                old = s.account(t).code if isinstance(t, str) else t.code
                if change.empty:
                    shown.append((label, old))
                    continue
                try:
                    new = dptr.apply_change(old, change)
                    if new == old:
                        continue
                    if isinstance(t, str):
                        s.set_account_code(t, new)
                    else:
                        s.set_code(t, new)
                except D3hbError as exc:
                    errors.append(f"{label}: {exc}")
                    continue
                changed += 1
                if not quiet:
                    shown.append((label, f"{old} -> {new}"))
    if shown and not quiet:
        table(ctx, ("File", "Type"), shown)
    if not change.empty:
        ctx.out(f"{changed} file{'s' if changed != 1 else ''} changed.")
    for e in errors:
        ctx.out(f"error: {e}")
    return 1 if errors else 0


# -- logging and the queue -------------------------------------------------
def _switch(ctx: Context, req: Request, key: str, on: bool, verb: str, what: str) -> None:
    check_options(req, "", verb)
    with open_system(ctx) as s, s.transaction():
        was = s.meta(key, "on") == "on"
        s.set_meta(key, "on" if on else "off")
        s.error_log(f"{what} {'started' if on else 'stopped'} by {verb} ({_user()})", "logging")
    state = "started" if on else "stopped"
    ctx.out(f"{what.capitalize()} {state}." if was != on else f"{what.capitalize()} was already {state}.")


@action("tcl.startlog", "Start global transaction logging (written to the errors log)")
def startlog(ctx: Context, req: Request) -> None:
    _switch(ctx, req, "logging", True, "startlog", "transaction logging")


@action("tcl.stoplog", "Stop global transaction logging (written to the errors log)")
def stoplog(ctx: Context, req: Request) -> None:
    _switch(ctx, req, "logging", False, "stoplog", "transaction logging")


@action("tcl.start-enqueuing", "Start enqueuing logged updates (written to the errors log)")
def start_enqueuing(ctx: Context, req: Request) -> None:
    _switch(ctx, req, "enqueuing", True, "start-enqueuing", "enqueuing")


@action("tcl.stop-enqueuing", "Stop enqueuing logged updates (written to the errors log)")
def stop_enqueuing(ctx: Context, req: Request) -> None:
    _switch(ctx, req, "enqueuing", False, "stop-enqueuing", "enqueuing")


def _running_masters(s: System) -> list[str]:
    from d3hb.ops.running import hot_backup_servers

    names = hot_backup_servers(s.path)
    if not names:
        return []
    try:
        from d3hb.ops.serverdefs import Definitions

        defs = Definitions(s)
        return [n for n in names if not defs.exists(n) or defs.get(n).is_master]
    except D3hbError:
        return names  # cannot tell which: treat them all as masters, the safe side


@action("tcl.tlqdisplay", "Display the transaction log queue", "{(c d m<n> u v}")
def tlqdisplay(ctx: Context, req: Request) -> None:
    opts = check_options(req, "cdmuv", "tlqdisplay")
    if "v" in opts:
        ctx.out(f"tlqdisplay (d3hb {__version__})")
        return
    with open_system(ctx) as s:
        q = s.queue
        if "m" in opts:
            m = re.search(r"m(\d+)", req.options.lower())
            if not m or int(m.group(1)) < 1:
                raise UsageError("option m needs the number to start the queue at", "e.g. 'tlqdisplay (m1000'")
            running = _running_masters(s)
            if running:
                raise Refused(f"hot backup master server{'s' if len(running) > 1 else ''} {', '.join(running)} running",
                              "stop the master server before repositioning the queue")
            n = int(m.group(1))
            with s.transaction():
                q.set_next(n)
                s.error_log(f"transaction log queue repositioned by tlqdisplay (m{n}: next number {n} ({_user()})", "queue")
            ctx.out(f"Queue repositioned: the next transaction number is {n}.")
            return
        st = q.state()
        ctx.out(f"Transaction log queue: {st.depth} transactions, {st.bytes} bytes; "
                f"first {st.first or '-'}, last assigned {st.last}.")
        ctx.out(f"Logging {'on' if st.logging else 'OFF'}. Enqueuing {'on' if st.enqueuing else 'OFF'}. "
                f"{'Log ALL files' if st.log_all else 'Log DL files only'}.")
        if "c" in opts:
            prev, ok = 0, True
            for t in _all(q):
                ok = ok and t.tno > prev
                prev = t.tno
            ctx.out("Queue linkage OK." if ok else "Queue linkage BROKEN: numbers out of order.")
            return
        if "u" in opts:
            return  # D3 recalculates the frame count; our counts above are always exact
        rows = []
        width = 60 if "d" in opts else 30
        for t in _all(q):
            if t.item or t.body:
                data = f"{t.file_ref} {show_bytes(t.item)}"
                if "d" in opts and t.body:
                    data += " " + show_bytes(t.body.replace(b"\xfe", b"^").replace(b"\xfd", b"]").replace(b"\xfc", b"\\"))
            elif t.kind.value in "AZ" or (t.kind.value == "P" and not t.fof):
                data = f"account {t.account} {t.code}"
            else:
                data = f"{t.account},{t.file_ref} {t.code} {t.modulo or ''}".rstrip()
            rows.append((t.tno, t.kind.value, t.fof, data[:width]))
        if rows:
            table(ctx, ("TNo", "T", "FOF#", "Data"), rows)
        else:
            ctx.out("The queue is empty.")


def _all(q: object) -> Iterator:
    after = 0
    while batch := q.read(after, 1000):  # type: ignore[attr-defined]
        yield from batch
        after = batch[-1].tno


# -- messages ----------------------------------------------------------------
def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@action("tcl.msg", "Send a message to a user or a port (!n)", "USER|!PORT TEXT ...")
def msg(ctx: Context, req: Request) -> None:
    check_options(req, "", "msg")
    target = req.arg(0, "user or !port")
    if len(req.args) < 2:
        raise UsageError("missing message text", f"e.g. 'msg {target} hello'")
    with open_system(ctx) as s:
        path = messages.send(s.path, target, " ".join(req.args[1:]), sender=f"{_user()} ({ctx.account})")
    ctx.out(f"Message sent to {target} ({path.name}).")


from d3hb.menu.actions import tcl_items  # noqa: E402,F401  registers the item verbs
