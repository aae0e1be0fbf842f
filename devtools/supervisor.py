"""The foreground supervisor of ``./dev up``, on the shared process harness
(:mod:`devtools.processes`): children's output prefixed on the console; Ctrl-C reaches only
this process, which then stops the children in order (SIGTERM, a warm shutdown for Celery
workers, then SIGKILL to each whole group after a grace period). ``./dev up`` has no restart
policy on purpose: when a child dies everything stops, so that you see it."""

from __future__ import annotations

import signal
import threading

from devtools.processes import ProcessGroup

GRACE_SECONDS = 15.0


class Supervisor(ProcessGroup):
    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env, log_dir=None, grace=GRACE_SECONDS)
        self.stopping = threading.Event()

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
                dead = self.exited()
                if dead:
                    for child in dead:
                        self.say(
                            "dev",
                            f"{child.name} exited with code {child.process.returncode}; "
                            "stopping everything",
                        )
                    code = 1
                    break
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def stop_all(self, grace: float | None = None, announce: bool = True) -> None:
        super().stop_all(grace, announce)
