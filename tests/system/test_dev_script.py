"""``./dev`` builds ``.venv`` once and never again while nothing changed, and two ``./dev``
commands at once do not break each other (issue 31).

Runs the real script in a copy of the checkout (the tracked files as they are now), with its
own ``GIM_LOCAL_DIR``, so the developer's ``.venv`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="gim-devscript-"))
    tree = base / "checkout"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in tracked)):
        source = ROOT / name
        if source.exists():  # a tracked file deleted in the working tree is not copied
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    try:
        yield tree
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _env(clone: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIM_")},
        "GIM_LOCAL_DIR": str(clone / ".local"),
    }


def _dev(clone: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(clone / "dev"), *args],
        cwd=clone,
        env=_env(clone),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _version(clone: Path) -> float:
    started = time.monotonic()
    done = _dev(clone, "gim", "version")
    output, _ = done.communicate(timeout=300)
    assert done.returncode == 0 and output.strip() == "0.1.0", output
    return time.monotonic() - started


def test_two_dev_commands_at_once_on_a_fresh_clone_both_work(clone: Path) -> None:
    # No .venv yet: the first command builds it under the lock, the second waits, then finds
    # it built (before issue 31, the second deleted .venv/lib under the first).
    both = [_dev(clone, "gim", "version") for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    assert [output.strip().splitlines()[-1] for output in outputs] == ["0.1.0", "0.1.0"]


def test_dev_never_rebuilds_an_unchanged_venv(clone: Path) -> None:
    setup = _dev(clone, "setup")
    output, _ = setup.communicate(timeout=600)
    assert setup.returncode == 0, output
    config = clone / ".venv" / "pyvenv.cfg"
    before = config.stat()
    both = [_dev(clone, "gim", "version") for _ in range(2)]
    assert [process.communicate(timeout=300)[0].strip() for process in both] == ["0.1.0"] * 2
    seconds = min(_version(clone) for _ in range(3))
    after = config.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert seconds < 2, f"./dev gim version took {seconds:.2f} s (12 s when it rebuilt .venv)"
    print(f"./dev gim version: {seconds:.2f} s")


def test_a_changed_lock_file_is_synced_again(clone: Path) -> None:
    _version(clone)
    stamp = clone / ".venv" / ".gim-synced"
    old = stamp.read_text()
    with (clone / "pyproject.toml").open("a") as project:
        project.write("\n# changed\n")
    _version(clone)
    assert stamp.read_text() != old  # the stamp follows what .venv was built from
