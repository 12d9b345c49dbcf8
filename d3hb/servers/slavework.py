"""The slave's work beside its connections: its options, live (d3hb.servers.options).

A mixin of :class:`d3hb.servers.slave.SlaveServer`, kept apart so each
module stays small.  Two tasks run beside the connections: one watches the
helpers every ``helper.CHECK_EVERY`` seconds, one applies the hold a chunk
at a time between batches (after apply updates is turned on, or a helper
ends), so acknowledgements never wait for either.  The control channel's
``apply`` command changes the three options of a running slave between two
batches, so a batch sees one setting from its first transaction to its
last.
"""

from __future__ import annotations

import asyncio
import contextlib

from d3hb.errors import D3hbError, StoreError
from d3hb.servers import status as st
from d3hb.servers.helper import CHECK_EVERY, Helpers
from d3hb.servers.options import SlaveOptions
from d3hb.store import park as store_park
from d3hb.store.system import System


class OptionsWork:
    # Set by SlaveServer.__init__.
    cfg: st.Config
    system: System
    rt: st.Runtime
    handler: object
    helpers: Helpers
    drain_wanted: asyncio.Event
    stopping: asyncio.Event
    draining: bool

    def show_options(self) -> None:
        """Query's figures for the options: applied or not, held, parked, helpers."""
        h = self.handler
        if isinstance(h, SlaveOptions):
            self.rt.update(updates_applied=h.apply_on, held=h.n_held, helpers=len(self.helpers.running),
                           parked=store_park.parked_count(self.system, self.cfg.name) if store_park.any_parked(self.system, self.cfg.name) else 0,
                           log_slave=h.relog, auto_create=h.auto_create)

    async def set_apply(self, req: dict) -> dict:
        """Control ``{"cmd": "apply", "on": bool, "log_slave": bool, "auto_create": bool}`` (each optional): at once.

        Runs on the loop between two batches, so a batch sees one setting from
        its first transaction to its last."""
        h = self.handler
        if not isinstance(h, SlaveOptions):
            raise D3hbError(f"server {self.cfg.name} cannot change its options while running", "stop it, change it, start it")
        if "log_slave" in req and bool(req["log_slave"]) != h.relog:
            h.relog = bool(req["log_slave"])
            self.rt.log(f"Log slave update {'ON: applied updates are queued again' if h.relog else 'OFF: applied updates are not queued'}")
        if "auto_create" in req and bool(req["auto_create"]) != h.auto_create:
            h.auto_create = bool(req["auto_create"])
            self.rt.log(f"Auto-create {'ON: missing accounts and files are created' if h.auto_create else 'OFF: updates for missing files are parked'}")
        if "on" in req and bool(req["on"]) != h.apply_on:
            h.apply_on = bool(req["on"])
            self.rt.log(f"Apply updates {'ON: applying the ' + str(h.n_held) + ' held transactions, then live' if h.apply_on else 'OFF: received transactions are held'}")
        if h.apply_on:
            self.drain_wanted.set()
        self.show_options()
        self.rt.write_status(force=True)
        return {"ok": True, "apply": h.apply_on, "held": h.n_held, "log_slave": h.relog, "auto_create": h.auto_create}

    def after_handle(self) -> None:
        """What a batch or a drain step left to do: incidents for parked updates, helpers to start."""
        h = self.handler
        if not isinstance(h, SlaveOptions):
            return
        parks, jobs, named = h.take_events()
        for text in named:
            self.rt.log(text)
        for p in parks:
            t = p.txn
            where = f"{t.account},{t.file_ref}" if t.dict_name else f"account {t.account}"
            self.rt.incidents.raise_(f"parked-{p.section}", f"{where} (FOF {t.fof} on the master) is not on this system: updates "
                                     f"to it are parked in {p.section} from transaction {t.tno}; create it, then "
                                     f"'d3hb hot-backup replay-parked {self.cfg.name}'")
        for job in jobs:
            self.helpers.start(job)
        if parks or jobs:
            self.show_options()

    async def _watch_helpers(self) -> None:
        h = self.handler
        assert isinstance(h, SlaveOptions)
        while not self.stopping.is_set():
            for job in list(h.jobs.values()):
                if job.tno not in self.helpers.running:
                    self.helpers.start(job)
            try:
                done = self.helpers.check()
            except StoreError as exc:
                self.rt.log(f"Cannot look at the helpers now: {exc}")
                done = []
            for tno in done:
                h.job_done(tno)
            if done:
                self.drain_wanted.set()
            self.show_options()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), CHECK_EVERY)

    async def _drain(self) -> None:
        """Apply the hold a chunk at a time, letting batches in between."""
        h = self.handler
        assert isinstance(h, SlaveOptions)
        while not self.stopping.is_set():
            await self.drain_wanted.wait()
            self.drain_wanted.clear()
            after, blocked, total = 0, set(), 0
            self.draining = bool(h.apply_on and h.n_held)
            while h.apply_on and h.n_held and not self.stopping.is_set():
                try:
                    n, nxt = h.drain(after, blocked)
                except StoreError as exc:  # locked: try again shortly; nothing was applied
                    self.rt.incidents.raise_("store", f"cannot apply the hold now: {exc}")
                    await asyncio.sleep(1)
                    self.drain_wanted.set()
                    break
                total += n
                self.after_handle()
                if nxt == after:
                    break
                after = nxt
                self.rt.update(applied=self.handler.last_applied(), held=h.n_held)
                await asyncio.sleep(0)
            self.draining = False
            if total:
                self.rt.log(f"Applied {total} held transactions; {h.n_held} still held")
            self.show_options()
