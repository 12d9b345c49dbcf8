"""D3's network save/restore, as steps a demo, a test or an administrator's script can run.

The procedure (man tape-socket(8), "Network save/restore"): on host A the
system ``pick0`` saves into its pipe; an output server reads the pipe and
sends it to an input server running in a small system ``vmrest`` on host B,
which writes it into its own pipe; a full restore of host B's ``pick0``
reads that pipe.  No tape, and no copy of the save on any disk.  Afterwards
``shutdown`` from the sending side stops both servers, and hot backup can
start from A to B with no gap: the restore recorded the transaction number
the save began at, and the slave continues from it.

This module only prepares definitions and builds the command lines; who
runs them where (the same host, or ``ip netns exec`` in a test) is the
caller's business, so the same steps serve loopback and two namespaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import d3hb
from d3hb.ops.tapes import Devices
from d3hb.ops.tapesocket import Definitions
from d3hb.store.system import System

SERVER = "ssave"  # D3's advice: not the default servers, which hot backup's transaction logger may use

Launcher = Callable[[Sequence[str]], subprocess.Popen]


@dataclass(frozen=True)
class Route:
    """Where the tape travels: the receiver's address as the sender calls it, and the port."""

    port: int
    connect: str = "127.0.0.1"  # the input server's host, as the output server calls it
    listen: str = "127.0.0.1"  # the address the input server listens on (0.0.0.0: every one)
    server: str = SERVER


@dataclass(frozen=True)
class Pipes:
    sender: Path  # host A: the save writes here, the output server reads
    receiver: Path  # host B: the input server writes here, the restore reads


def attach_pipe(system_dir: Path, pipe: Path) -> int:
    """Make ``pipe`` a pseudo-tape (type ``c``) of a system and attach it; returns its device number."""
    devs = Devices(system_dir)
    for dev in devs.list():
        if dev.path == str(pipe) and dev.type == "c":
            devs.attach(dev.number)
            return dev.number
    number = len(devs.list())
    devs.define(number, str(pipe), "c")
    devs.attach(number)
    return number


def prepare(sender: System, vmrest: System, receiver_dir: Path, route: Route) -> Pipes:
    """Define the output server on the sender, the input server in vmrest, and the two pipes as tapes.

    The receiver (host B's pick0) only needs the pipe as its tape: the
    restore replaces its database, but the device list lives beside it.
    """
    pipes = Pipes(sender.path / f"{route.server}.pipe", vmrest.path / f"{route.server}.pipe")
    Definitions(sender).setup(route.server, {
        "role": "output", "pipe": str(pipes.sender), "host": route.connect, "port": str(route.port),
        "callrep": "0", "callwait": "0.2",  # call until the input server answers: it may start later
    })  # fmt: skip
    Definitions(vmrest).setup(route.server, {"role": "input", "pipe": str(pipes.receiver), "host": route.listen, "port": str(route.port)})
    attach_pipe(sender.path, pipes.sender)
    receiver_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    attach_pipe(receiver_dir, pipes.receiver)
    return pipes


def cli(home: Path, system: str, *words: str) -> list[str]:
    """The ``d3hb`` command line for one system, answering yes to confirmations."""
    return [sys.executable, "-m", "d3hb", "--home", str(home), "--system", system, "-y", *words]


def env() -> dict[str, str]:
    """The environment for d3hb child processes: this d3hb first on the path, whatever the cwd."""
    root = str(Path(d3hb.__file__).resolve().parent.parent)
    e = dict(os.environ)
    e["PYTHONPATH"] = root + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def local_launcher(argv: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


@dataclass
class Transfer:
    """A save on host A and a restore on host B, running; :meth:`wait` collects both."""

    save: subprocess.Popen
    restore: subprocess.Popen

    def running(self) -> bool:
        return self.save.poll() is None

    def wait(self, timeout: float) -> tuple[str, str]:
        """Both outputs; a failure of either raises RuntimeError with its message."""
        outs = []
        for what, proc in (("save", self.save), ("restore", self.restore)):
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"the {what} failed (exit {proc.returncode}): {(err or out).strip()}")
            outs.append(out)
        return outs[0], outs[1]


def start_transfer(home_a: Path, sender: str, home_b: Path, receiver: str, *, hot_backup: Sequence[str] = (),
                   launch_a: Launcher = local_launcher, launch_b: Launcher = local_launcher, label: str = "network save") -> Transfer:
    """Start the restore on host B (it waits for the tape), then the full save on host A.

    ``hot_backup`` names the hot backup servers that will feed the restored
    system: the restore gives each the save's start number as its last
    applied transaction.  The save clears the sender's queue only up to that
    number, so every update made during and after the save is still queued
    for hot backup.
    """
    restore = launch_b(cli(home_b, receiver, "tcl", "restore", *hot_backup))
    save = launch_a(cli(home_a, sender, "tcl", "save", label))
    return Transfer(save, restore)
