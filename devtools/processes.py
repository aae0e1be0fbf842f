"""One process harness (issue "Structure" item 4) for ``./dev up`` (supervisor.py), the
reliability suite (reliability.py), the system tests (tests/conftest.py) and the runtime bench.

Every child runs in its own session (process group), so a signal to the harness reaches only
it, and stopping a child reaches everything the child forked (Celery prefork pool processes).
Output goes to ``LOG_DIR/NAME.log`` or, on a console, line by line with a coloured ``NAME |``
prefix. Stopping is SIGTERM to each main process (a Celery worker then shuts down warmly: its
running jobs are asked to stop) and, after a grace period, SIGKILL to every group: nothing is
left behind. The restart policy (:meth:`ProcessGroup.restart_exited`) restarts a child that
exited on its own, as compose's ``restart: unless-stopped`` and Kubernetes do; a child stopped
or killed on purpose (:meth:`signal`) is not restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from signal import Signals

COLORS = ("36", "33", "35", "32", "34", "31")


def worker_args(name: str, concurrency: int) -> list[str]:
    """``gim`` arguments of a Celery worker named ``name`` (unique per process group: the
    tests, the reliability suite and the benches add their own pid and lab), without the
    start-up chatter between workers (mingle, gossip) that a throw-away stack does not need."""
    return ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
            "--without-mingle", "--without-gossip"]  # fmt: skip


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    color: str = "0"


@dataclass
class ProcessGroup:
    env: dict[str, str]
    #: NAME.log files here; None: prefixed lines on this process's stdout.
    log_dir: Path | None = None
    grace: float = 15.0
    children: dict[str, Child] = field(default_factory=dict)
    #: Children stopped or killed on purpose: not restarted.
    deliberate: set[str] = field(default_factory=set)
    #: What the restart policy did: "NAME exited with code N".
    restarts: list[str] = field(default_factory=list)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    _width: int = 8

    def say(self, name: str, line: str, color: str = "1") -> None:
        with self._print_lock:
            sys.stdout.write(f"\033[{color}m{name:<{self._width}}|\033[0m {line}\n")
            sys.stdout.flush()

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``name`` (``env`` overrides some variables). A child of the same
        name still running is killed first: never two of them."""
        previous = self.children.get(name)
        if previous is not None and previous.process.poll() is None:
            self._group(previous, signal.SIGKILL)
            previous.process.wait()
        self.deliberate.discard(name)
        merged = {**self.env, **(env or {})}
        if self.log_dir is not None:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                process = subprocess.Popen(
                    argv, env=merged, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            color = "0"
        else:
            process = subprocess.Popen(
                argv,
                env=merged,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._width = max(self._width, len(name) + 1)
            color = COLORS[len(self.children) % len(COLORS)]
        child = Child(name, argv, env or {}, process, color)
        self.children[name] = child
        if self.log_dir is None:
            threading.Thread(target=self._pump, args=(child,), daemon=True).start()
        return process

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            self.say(child.name, raw.decode(errors="replace").rstrip("\n"), child.color)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return self.children[name].process

    def wait_until(self, predicate: Callable[[], bool], limit: float, what: str) -> None:
        """Poll ``predicate`` until true; after ``limit`` seconds raise, with each log's tail."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise AssertionError(f"{what}: not within {limit} s\n{self.log_tails()}")

    def log_tails(self, characters: int = 2000) -> str:
        if self.log_dir is None:
            return ""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-characters:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    def exited(self) -> list[Child]:
        """Children that exited on their own (not stopped or killed on purpose)."""
        return [
            child
            for name, child in self.children.items()
            if name not in self.deliberate and child.process.poll() is not None
        ]

    def restart_exited(self, only: Callable[[str], bool] = lambda name: True) -> list[str]:
        """The restart policy: start again every child (``only`` those it accepts) that
        exited on its own. Returns their names."""
        restarted = []
        for child in self.exited():
            if not only(child.name):
                continue
            self.restarts.append(f"{child.name} exited with code {child.process.returncode}")
            self.start(child.name, child.argv, child.env)
            restarted.append(child.name)
        return restarted

    def holding(self, pid: int) -> str:
        """The child whose process group holds process ``pid`` (a Celery pool process, say)."""
        group = os.getpgid(pid)
        for name, child in self.children.items():
            if child.process.pid == group:
                return name
        raise LookupError(f"process {pid} belongs to no child of this group")

    def signal(self, name: str, sig: Signals) -> None:
        """Send ``sig`` to the child's whole group; after SIGTERM or SIGKILL it is not
        restarted."""
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.deliberate.add(name)
        self._group(self.children[name], sig)
        if sig == signal.SIGKILL:
            self.children[name].process.wait()

    def stop_all(self, grace: float | None = None, announce: bool = False) -> None:
        """SIGTERM to every main process (newest first; a paused one is continued first),
        then SIGKILL to every group once ``grace`` seconds have passed."""
        grace = self.grace if grace is None else grace
        running = [c for c in reversed(self.children.values()) if c.process.poll() is None]
        for child in running:
            self.deliberate.add(child.name)
            if announce:
                self.say("dev", f"stopping {child.name}")
            self._group(child, signal.SIGCONT)
            with suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if announce:
                    self.say("dev", f"{child.name} did not stop in {grace:.0f} s: killing")
        for child in self.children.values():  # stragglers, forked pool processes
            self._group(child, signal.SIGKILL)
            child.process.wait()

    @staticmethod
    def _group(child: Child, sig: Signals) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)
