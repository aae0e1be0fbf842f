"""A small foreground process supervisor for ``./dev up``.

Each child runs in its own session (process group), so Ctrl-C reaches only this supervisor,
which then stops the children in order: SIGTERM to each main process (a warm shutdown for
Celery workers), then SIGKILL to each whole group after a grace period.
Killing the whole group also ends pool processes a child forked (Celery prefork workers), so
nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

COLORS = ("36", "33", "35", "32", "34", "31")
GRACE_SECONDS = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[str] | None = None


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._print_lock = threading.Lock()
        self._width = 8

    def say(self, name: str, line: str, color: str = "1") -> None:
        with self._print_lock:
            sys.stdout.write(f"\033[{color}m{name:<{self._width}}|\033[0m {line}\n")
            sys.stdout.flush()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` as ``name``; ``env`` overrides some of the supervisor's variables."""
        child = Child(name, argv)
        self._width = max(self._width, len(name) + 1)
        color = COLORS[len(self.children) % len(COLORS)]
        child.process = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.children.append(child)
        threading.Thread(target=self._pump, args=(child, color), daemon=True).start()

    def _pump(self, child: Child, color: str) -> None:
        assert child.process is not None and child.process.stdout is not None
        for line in child.process.stdout:
            self.say(child.name, line.rstrip("\n"), color)

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM or until a child exits; then stop all. Returns the exit
        code for ``./dev up``: 0 after Ctrl-C, 1 when a child died on its own."""
        previous = {
            sig: signal.signal(sig, lambda *_: self.stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        code = 0
        try:
            while not self.stopping.wait(0.2):
                dead = [c for c in self.children if c.process and c.process.poll() is not None]
                if dead:
                    for child in dead:
                        assert child.process is not None
                        self.say(
                            "dev",
                            f"{child.name} exited with code "
                            f"{child.process.returncode}; stopping everything",
                        )
                    code = 1
                    break
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def stop_all(self) -> None:
        running = [c for c in reversed(self.children) if c.process and c.process.poll() is None]
        for child in running:
            self.say("dev", f"stopping {child.name}")
            # The main process only: a Celery worker then shuts down warmly (its running jobs
            # are asked to stop and end Stopped); whatever is left is killed below.
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("dev", f"{child.name} did not stop in {GRACE_SECONDS:.0f} s: killing")
        # Whatever is left in any child's group (stragglers, forked pool processes) is killed.
        for child in self.children:
            _signal_group(child, signal.SIGKILL)
            if child.process:
                child.process.wait()


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.process is None:
        return
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
