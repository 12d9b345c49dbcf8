"""Drive a real terminal in tmux: keystrokes in, ``capture-pane`` text out.

Each :class:`Tmux` has its own server (``tmux -L NAME``), so tests never touch
a user's sessions, and :meth:`Tmux.kill` ends everything it started.  Every
wait has a deadline and, when it runs out, the assertion shows the screen as
it was, so a failing end-to-end test says what the user would have seen.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from d3hb.ui.console.keymap import HINTS

DEADLINE = 60.0
REVIEW = "Enter field number to change, Y to save, X to cancel:"


def available() -> str | None:
    """None when tmux can be used, else why not."""
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    return None


class Tmux:
    """One private tmux server; one window per program."""

    def __init__(self, cwd: Path, env: Mapping[str, str], size: tuple[int, int] = (80, 24)) -> None:
        self.socket = f"d3hb-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd
        self.env = dict(env)
        self.size = size
        self.windows: list[str] = []

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def open(self, window: str, argv: list[str]) -> None:
        """Run ``argv`` in a new window of the fixed size; the window stays after it exits, to be read."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        command = f"cd {shlex.quote(str(self.cwd))} && exec env {env} {shlex.join(argv)}"
        cols, rows = self.size
        if not self.windows:
            # A keeper window holds the session (and the server) while the options are set, so a
            # program that ends at once is still there to be read (remain-on-exit).
            self.tmux("new-session", "-d", "-s", "e2e", "-n", "keeper", "-x", str(cols), "-y", str(rows), "sleep 86400")
            self.tmux("set-option", "-g", "remain-on-exit", "on")
        self.tmux("new-window", "-d", "-t", "e2e", "-n", window, command)
        # No client is attached: the window keeps this size.  (A global window-size=manual would be
        # simpler, but tmux 3.3a crashes on the next new-window with it.)
        self.tmux("resize-window", "-t", f"e2e:{window}", "-x", str(cols), "-y", str(rows))
        self.windows.append(window)

    def screen(self, window: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"e2e:{window}")

    def exit_status(self, window: str) -> int | None:
        """The program's exit status once it has ended, else None."""
        dead, _, status = self.tmux("display-message", "-p", "-t", f"e2e:{window}", "#{pane_dead} #{pane_dead_status}").strip().partition(" ")
        if dead != "1":
            return None
        return int(status) if status.strip().lstrip("-").isdigit() else 0  # tmux leaves the status out for 0 on some builds

    def prompt(self, window: str) -> str:
        """The input line (the screen's last line) without the key hints."""
        lines = self.screen(window).rstrip("\n").splitlines()
        last = lines[-1] if lines else ""
        return last.replace(HINTS, "").strip()

    def wait(self, window: str, condition: str | Callable[[str], object], what: str = "", timeout: float = DEADLINE) -> str:
        """Wait until the screen shows ``condition`` (text, or a test on the screen); returns the screen."""
        test = (lambda s: condition in s) if isinstance(condition, str) else condition
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.screen(window)
            if test(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition!r} in window {window}:\n{screen}")

    def wait_prompt(self, window: str, start: str, timeout: float = DEADLINE) -> str:
        return self.wait(window, lambda _s: self.prompt(window).startswith(start), f"the prompt {start!r}", timeout)

    def type(self, window: str, text: str, enter: bool = True) -> None:
        """Type ``text`` literally (no key names), then Enter."""
        if text:
            self.tmux("send-keys", "-t", f"e2e:{window}", "-l", text)
        if enter:
            self.tmux("send-keys", "-t", f"e2e:{window}", "Enter")

    def key(self, window: str, name: str) -> None:
        self.tmux("send-keys", "-t", f"e2e:{window}", name)

    def fill_form(self, window: str, answers: Mapping[str, str]) -> list[str]:
        """Answer each field prompt by its label (Enter keeps the default) up to the review; returns the labels asked."""
        left = dict(answers)
        asked: list[str] = []
        while True:
            prompt = self.wait(window, lambda _s: self.prompt(window).endswith(":"), "a field prompt") and self.prompt(window)
            if prompt.startswith(REVIEW):
                break
            label = prompt.split(" [", 1)[0].rstrip(":").strip()
            asked.append(label)
            assert len(asked) < 60, f"the form keeps asking: {asked}"
            self.type(window, left.pop(label, ""))
            # The next prompt is another field's, or the review; the same one again means the value was
            # refused, and the timeout's screen shows the message saying why.
            self.wait(window, lambda _s: (p := self.prompt(window)) != prompt and p.endswith(":"), f"the form to take {label!r}")
        assert not left, f"the form never asked {sorted(left)}; it asked {asked}"
        return asked

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False)
