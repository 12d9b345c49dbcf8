"""TCL verbs on items: list, sort, count, ct, copy, write, read, delete.

Bodies cross the command line one attribute a line, ``]`` for a value mark
and ``\\`` for a subvalue mark (``--raw``: the bytes as they are), so
``write`` and ``read`` round-trip.  Ids from argv are bytes
(``os.fsencode``), so a UTF-8 terminal round-trips its text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from d3hb.errors import NotFound, UsageError
from d3hb.menu.actions.common import open_system, show_bytes, table
from d3hb.menu.actions.tcl import check_options
from d3hb.menu.registry import Context, Request, action
from d3hb.ops import query
from d3hb.store import File, System
from d3hb.store.marks import SVM_B, VM_B, check_id, from_lines, to_lines


def _file(s: System, ctx: Context, ref: str) -> File:
    s.account(ctx.account)
    return s.file(ctx.account, ref)


def _file_and_rest(req: Request, verb: str) -> tuple[str, list[str]]:
    args = list(req.args)
    if not args:
        raise UsageError(f"missing file name for {verb}", f"e.g. '{verb} invoices 1'")
    ref = args.pop(0)
    if ref.lower() in ("dict", "data") and args:
        ref = f"{ref} {args.pop(0)}"
    return ref, args


def _ids(f: File, words: Iterable[str]) -> list[bytes]:
    """Item ids from argv; ``*`` is every item (in group order, as D3 lists them)."""
    words = list(words)
    if words == ["*"]:
        return list(f.ids())
    return [check_id(os.fsencode(w)) for w in words]


def _display(value: bytes) -> str:
    return show_bytes(value.replace(VM_B, b"]").replace(SVM_B, b"\\"))


# -- list / sort / count -------------------------------------------------------
def _report(ctx: Context, req: Request, *, sort: bool, verb: str) -> None:
    check_options(req, "", verb)
    with open_system(ctx) as s:
        words = list(req.args)
        if not words:
            raise UsageError(f"missing file name for {verb}", f"e.g. '{verb} invoices with a1 = \"x\"'")
        probe = query.parse(words[:2] if words[0].lower() in ("dict", "data") else words[:1])
        f = _file(s, ctx, probe.file_ref)
        d = s.find_file(ctx.account, f.info.dict_name, None)
        names = query.dictionary_attributes(File(s, d) if d is not None and d.fof != f.info.fof else None)
        q = query.parse(words, sort=sort, dictionary=names)
        columns = q.columns or tuple(a for a, _ in q.by if a)
        rows = [(_display(r.id), *(_display(v) for v in r.values)) for r in query.run(f, q)]
    if not rows:
        ctx.out("[401] No items present.")
        return
    table(ctx, (f.info.ref.upper(), *(f"A{c}" for c in columns)), rows)
    ctx.out(f"[405] {len(rows)} item{'s' if len(rows) != 1 else ''} listed.")


@action("tcl.list", "List items (group order), with a selection and columns", "FILE {IDS} {with aN OP \"v\" ...} {by aN} {aN ...}")
def list_(ctx: Context, req: Request) -> None:
    _report(ctx, req, sort=False, verb="list")


@action("tcl.sort", "List items sorted (by id, or by the attributes named)", "FILE {with ...} {by aN | by-dsnd aN} {aN ...}")
def sort(ctx: Context, req: Request) -> None:
    _report(ctx, req, sort=True, verb="sort")


@action("tcl.count", "Count the items that qualify", "FILE {IDS} {with aN OP \"v\" ...}")
def count(ctx: Context, req: Request) -> None:
    check_options(req, "", "count")
    with open_system(ctx) as s:
        words = list(req.args)
        if not words:
            raise UsageError("missing file name for count", "e.g. 'count invoices'")
        q = query.parse(words)
        f = _file(s, ctx, q.file_ref)
        n = query.count(f, q)
    ctx.out(f"[407] {n} item{'s' if n != 1 else ''} counted.")


# -- ct / read / write / delete -----------------------------------------------
def _out_bytes(ctx: Context, data: bytes) -> None:
    if ctx.stdout is not None:
        ctx.stdout.write(data)
        ctx.stdout.flush()
    else:
        ctx.out(show_bytes(data.removesuffix(b"\n")))


@action("tcl.ct", "Copy items to the terminal: numbered attributes, ] and \\ for marks", "FILE ID ... | FILE *")
def ct(ctx: Context, req: Request) -> int:
    check_options(req, "", "ct")
    ref, words = _file_and_rest(req, "ct")
    raw = req.fields.get("raw") == "yes"
    missing = 0
    with open_system(ctx) as s:
        f = _file(s, ctx, ref)
        for iid in _ids(f, words or ["*"]):
            body = f.read(iid)
            if body is None:
                ctx.out(f"[202] '{show_bytes(iid)}' not on file.")
                missing += 1
                continue
            if raw:
                _out_bytes(ctx, body)
                continue
            ctx.out("")
            ctx.out(f"    {show_bytes(iid)}")
            for n, line in enumerate(to_lines(body), 1):
                ctx.out(f"{n:03d} {show_bytes(line)}")
    return 1 if missing else 0


@action("tcl.read", "Print an item one attribute a line (the form write reads)", "FILE ID")
def read(ctx: Context, req: Request) -> None:
    check_options(req, "", "read")
    ref, words = _file_and_rest(req, "read")
    if len(words) != 1:
        raise UsageError("read takes one item-id", "e.g. 'read invoices 1'")
    with open_system(ctx) as s:
        f = _file(s, ctx, ref)
        iid = check_id(os.fsencode(words[0]))
        body = f.read(iid)
    if body is None:
        raise NotFound(f"item {words[0]!r} not on file {f.info.ref!r}", "check the id with 'list " + f.info.ref + "'")
    if req.fields.get("raw") == "yes":
        _out_bytes(ctx, body)
    else:
        _out_bytes(ctx, b"".join(line + b"\n" for line in to_lines(body)))


@action("tcl.write", "Write an item: the body from stdin (one attribute a line) or the arguments",
        "FILE ID {ATTR ...} {(c}")
def write(ctx: Context, req: Request) -> None:
    opts = check_options(req, "c", "write")
    ref, words = _file_and_rest(req, "write")
    if not words:
        raise UsageError("missing item-id for write", "e.g. 'write invoices 1 < body.txt'")
    iid = check_id(os.fsencode(words[0]))
    if len(words) > 1:
        text = b"\n".join(os.fsencode(w) for w in words[1:])
    elif ctx.stdin is not None:
        text = ctx.stdin.read()
    else:
        raise UsageError("no item body", "give the attributes as arguments or on standard input")
    if req.fields.get("raw") == "yes":
        body = text
    elif "c" in opts:
        # (c: one line as D3's editor shows an item: ^ attribute, ] value, \ subvalue mark.
        body = from_lines(text.removesuffix(b"\n").replace(b"^", b"\n") + b"\n")
    else:
        body = from_lines(text)
    with open_system(ctx) as s:
        f = _file(s, ctx, ref)
        tno = f.write(iid, body)
    logged = f", queued as transaction {tno}" if tno else ""
    ctx.out(f"[ '{show_bytes(iid)}' filed in {f.info.ref}{logged} ]")


@action("tcl.delete", "Delete items", "FILE ID ... | FILE *")
def delete(ctx: Context, req: Request) -> int:
    check_options(req, "", "delete")
    ref, words = _file_and_rest(req, "delete")
    if not words:
        raise UsageError("missing item-id for delete", "e.g. 'delete invoices 1' (or * for every item)")
    gone, missing = 0, 0
    with open_system(ctx) as s:
        f = _file(s, ctx, ref)
        ids = _ids(f, words)
        with s.transaction():
            for iid in ids:
                if f.delete(iid) is False:
                    ctx.out(f"[202] '{show_bytes(iid)}' not on file.")
                    missing += 1
                else:
                    gone += 1
    ctx.out(f"[ {gone} item{'s' if gone != 1 else ''} deleted ]")
    return 1 if missing else 0


# -- copy ----------------------------------------------------------------------
def _split_target(words: list[str]) -> tuple[list[str], list[str] | None]:
    """``ids... to: FILE {ids}`` or ``ids... to=FILE {ids}`` -> (source ids, target words)."""
    for i, w in enumerate(words):
        if w.lower() == "to:":
            return words[:i], words[i + 1 :]
        if w.lower().startswith("to="):
            return words[:i], [w[3:]] + words[i + 1 :]
    return words, None


@action("tcl.copy", "Copy items to another file (or the terminal with (t)", "FILE ID ... to: FILE {NEWID ...} {(o d t}")
def copy(ctx: Context, req: Request) -> int:
    opts = check_options(req, "odt", "copy")
    ref, words = _file_and_rest(req, "copy")
    src_words, target = _split_target(words)
    if not src_words:
        raise UsageError("missing item-ids for copy", "e.g. 'copy invoices 1 2 to: archive' (or * for every item)")
    if "t" in opts:
        return ct(ctx, Request((ref, *src_words), req.fields, ""))
    if target is None and ctx.interactive:
        answer = ctx.ask("to:", "(FILE {NEWID ...}: the file to copy to, then new ids if any")
        target = answer.lstrip("(").split() if answer else None
    if not target or not target[0]:
        raise UsageError("copy needs a target", "give 'to: FILE {NEWID ...}' or 'to=FILE'")
    tref, new_words = target[0].lstrip("("), target[1:]
    if tref.lower() in ("dict", "data") and new_words:
        tref = f"{tref} {new_words.pop(0)}"
    copied, skipped = 0, 0
    with open_system(ctx) as s:
        src = _file(s, ctx, ref)
        dst = _file(s, ctx, tref)
        ids = _ids(src, src_words)
        new_ids = [check_id(os.fsencode(w)) for w in new_words]
        if new_ids and len(new_ids) != len(ids):
            raise UsageError(f"{len(ids)} items to copy but {len(new_ids)} new ids", "give one new id per item, or none")
        with s.transaction():
            for n, iid in enumerate(ids):
                to = new_ids[n] if new_ids else iid
                body = src.read(iid)
                if body is None:
                    ctx.out(f"[202] '{show_bytes(iid)}' not on file.")
                    skipped += 1
                    continue
                if dst.read(to) is not None and "o" not in opts:
                    ctx.out(f"[ '{show_bytes(to)}' exists on file {dst.info.ref} ]")
                    skipped += 1
                    continue
                dst.write(to, body)
                if "d" in opts and not (dst.info.fof == src.info.fof and to == iid):
                    src.delete(iid)
                copied += 1
    ctx.out(f"[ {copied} item{'s' if copied != 1 else ''} copied ]")
    return 1 if skipped else 0

