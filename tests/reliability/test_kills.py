"""kill -9 and SIGSTOP of the servers and of the writer process, under load.

The writer is a separate process (d3hb.testing.writer) journalling each
batch and each acknowledgement it saw; the oracle reads the journals, so a
write acknowledged before a crash and missing after it is caught.
"""

from __future__ import annotations

import signal
import time

from d3hb.ops import supervisor as sv
from d3hb.servers import status as st
from d3hb.store import System
from d3hb.store import apply as store_apply
from d3hb.testing import chaos, oracle, procs

NAME = chaos.NAME


def test_kill9_of_master_slave_and_writer_in_turn(home):
    rig = chaos.Rig(home, seed=11)
    try:
        rig.start()
        rig.writes_grow()
        for target in ("slave", "master", "writer", "slave", "writer", "master"):
            if target == "writer":
                assert rig.proc is not None
                rig.proc.send_signal(signal.SIGKILL)
                rig.proc.wait(10)
                rig.new_writer()
            else:
                system = rig.s if target == "slave" else rig.m
                applied = store_apply.last_applied(rig.s, NAME)
                procs.kill(system, NAME, signal.SIGKILL)
                procs.wait_stopped(system, NAME)
                # Mid-way, with the writer going on: everything acknowledged is on the slave, nothing extra.
                with System.open(rig.s.path) as fresh:
                    rep = oracle.verify(rig.m, fresh, NAME, rig.log(), drained=False, contiguous=False)
                assert rep.ok, rep.problems
                sv.start(system, NAME)
                procs.wait_until(lambda a=applied: store_apply.last_applied(rig.s, NAME) > a, 30, "replication to go on")
            rig.writes_grow()
        _, rep = rig.settle()
        assert rep.ok, rep.problems
        assert rig.wid == 3 and rep.acknowledged == rep.writes > 100
        assert "Terminated abnormally" in "\n".join(st.recent_messages(sv.files(rig.m, NAME), 0, permanent=True))
    finally:
        rig.close()


def test_sigstop_of_the_master_past_the_timeouts_then_sigcont(home):
    rig = chaos.Rig(home, seed=12)
    try:
        rig.start()
        rig.writes_grow()
        procs.kill(rig.m, NAME, signal.SIGSTOP)
        try:
            time.sleep(chaos.TIMEOUT * 2.5)  # a frozen master: the writer goes on, the slave hears nothing
            rig.writes_grow()
        finally:
            procs.kill(rig.m, NAME, signal.SIGCONT)
        rig.writes_grow()
        _, rep = rig.settle()
        assert rep.ok, rep.problems
    finally:
        rig.close()
