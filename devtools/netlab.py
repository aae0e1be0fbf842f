"""A cluster on one machine (issue 39, SPEC H1): Linux network namespaces as hosts.

Each host is a network namespace with one interface on a bridge (the bridge lives in a
namespace of its own, the "switch"); the suite's own process reaches every host through a veth
of its own on that bridge (address ``.1``). Addresses are taken from ``10.231.N.0/24`` with an
N no interface of this machine uses, and exist only on the interfaces the lab made.

A fault is a **cut** between two hosts: in each of the two namespaces, a policy-routing rule
drops every packet arriving from the other (``ip rule add from PEER blackhole``, placed before
the ``local`` table's rule): packets are lost both ways without a reset, as when a link or a
firewall silently stops forwarding. An established TCP connection stalls, a new one times out;
**heal** removes the rules and retransmissions go through. No package beyond ``iproute2``.

:meth:`NetLab.down` kills every process left in the lab's namespaces and removes the
namespaces and the suite's veth; it runs on exit, on an error and on Ctrl-C (the lab is a
context manager), and :func:`remove_stale` clears what a killed suite left behind (namespaces
``gimnet<pid>-*`` of a process that is gone). Needs root (``ip netns``).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gim_tasks.errors import LocalStackError

PREFIX = "gimnet"
_labs = itertools.count(1)  # several labs of one suite process (lanes) at once
CONTROL = "ctl"  # the suite's own process, in the root namespace


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise LocalStackError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def available() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the network lab needs root (ip netns)"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "the network lab needs iproute2 (apt-get install iproute2)"
    return None


def _free_subnet() -> int:
    used = _ip("-o", "addr").stdout
    for _ in range(200):
        candidate = random.randint(16, 250)
        if f"10.231.{candidate}." not in used:
            return candidate
    raise LocalStackError("no free 10.231.N.0/24 subnet for the network lab")


def remove_stale() -> list[str]:
    """Namespaces (and their processes) of a lab whose suite process is gone."""
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0].split("x")[0]
        if owner.isdigit() and _alive(int(owner)):
            continue
        _kill_in(name)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    for line in _ip("-o", "link").stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1 and parts[1].strip().split("@")[0].startswith("gn"):
            link = parts[1].strip().split("@")[0]
            owner = link[2:-1].split("x")[0]
            if owner.isdigit() and not _alive(int(owner)):
                _ip("link", "del", link, check=False)
                removed.append(link)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_in(namespace: str) -> list[int]:
    pids = [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


@dataclass
class NetLab:
    """Hosts (namespaces) on one bridge; :meth:`cut` and :meth:`heal` between two of them."""

    hosts: tuple[str, ...]
    tag: str = field(default_factory=lambda: str(os.getpid()))
    subnet: int = 0
    cuts: set[tuple[str, str]] = field(default_factory=set)

    def namespace(self, host: str) -> str:
        return f"{PREFIX}{self.tag}-{host}"

    def address(self, host: str) -> str:
        if host == CONTROL:
            return f"10.231.{self.subnet}.1"
        return f"10.231.{self.subnet}.{self.hosts.index(host) + 2}"

    def exec(self, host: str) -> list[str]:
        """The command prefix that runs a program on ``host``."""
        return [] if host == CONTROL else ["ip", "netns", "exec", self.namespace(host)]

    def up(self) -> None:
        remove_stale()
        self.subnet = _free_subnet()
        switch = self.namespace("switch")
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for index, host in enumerate((CONTROL, *self.hosts)):
            outer, inner = f"gn{self.tag}{index}a"[:15], f"gn{self.tag}{index}b"[:15]
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", switch)
            _ip("-n", switch, "link", "set", inner, "master", "br0")
            _ip("-n", switch, "link", "set", inner, "up")
            address = f"{self.address(host)}/24"
            if host == CONTROL:
                _ip("addr", "add", address, "dev", outer)
                _ip("link", "set", outer, "up")
                continue
            name = self.namespace(host)
            _ip("netns", "add", name)
            _ip("link", "set", outer, "netns", name)
            _ip("-n", name, "link", "set", outer, "name", "eth0")
            _ip("-n", name, "addr", "add", address, "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            # The cut rules must come before the local table's (priority 0): move it to 200.
            _ip("-n", name, "rule", "add", "pref", "200", "lookup", "local")
            _ip("-n", name, "rule", "del", "pref", "0")

    def _rule(self, action: str, host: str, peer: str) -> None:
        if host == CONTROL:
            raise LocalStackError("the suite's own host is never cut")
        _ip("-n", self.namespace(host), "rule", action, "from", self.address(peer), "blackhole",
            "pref", "100")  # fmt: skip

    def cut(self, a: str, b: str) -> float:
        """Drop every packet between ``a`` and ``b``, both ways; returns when (monotonic)."""
        self._rule("add", a, b)
        self._rule("add", b, a)
        self.cuts.add((a, b))
        return time.monotonic()

    def heal(self, a: str, b: str) -> float:
        self._rule("del", a, b)
        self._rule("del", b, a)
        self.cuts.discard((a, b))
        return time.monotonic()

    def down(self) -> list[str]:
        """Kill what runs in the lab, remove it; returns what was left behind (should be [])."""
        for host in (*self.hosts, "switch"):
            _kill_in(self.namespace(host))
        time.sleep(0.2)
        for host in (*self.hosts, "switch"):
            _ip("netns", "del", self.namespace(host), check=False)
        _ip("link", "del", f"gn{self.tag}0a"[:15], check=False)
        left = [
            line.split()[0]
            for line in _ip("netns", "list").stdout.splitlines()
            if line.startswith(f"{PREFIX}{self.tag}-")
        ]
        left += [
            line.split(":")[1].strip()
            for line in _ip("-o", "link").stdout.splitlines()
            if f" gn{self.tag}" in line
        ]
        return left


@contextmanager
def network(hosts: tuple[str, ...]) -> Iterator[NetLab]:
    """A lab up for the block, down afterwards whatever happens (an error, Ctrl-C)."""
    lab = NetLab(hosts, tag=f"{os.getpid()}x{next(_labs)}")
    try:
        lab.up()
        yield lab
    finally:
        left = lab.down()
        if left:
            raise LocalStackError(f"the network lab left {left} behind")
