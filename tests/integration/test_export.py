"""Job_ExportGIM against real PostgreSQL and real files (SPEC D4, [gim-export])."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from gim_tasks.db import mart_tables as mart
from gim_tasks.db.engine import make_engine
from gim_tasks.idb.generator import generate
from gim_tasks.idb.schema import init_idb
from gim_tasks.jobs import export, extract, transform
from gim_tasks.jobs.base import JobContext
from gim_tasks.options.values import Options

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
NOW = START + timedelta(hours=6, minutes=30)


@pytest.fixture
def loaded(make_database: Callable[..., str]) -> str:
    """An Info Mart with 6 hours of transformed traffic."""
    idb = make_database(migrated=False)
    init_idb(make_engine(idb))
    with psycopg.connect(idb, autocommit=True) as conn:
        generate(conn, START, 6, agents=20, queues=4, rate=600, seed=9)
    url = make_database()
    for body in (extract.run, transform.run):
        body(JobContext(mart=make_engine(url), idb_urls=[idb], options=Options.defaults()))
    return url


def context(url: str, out: Path, **options: str) -> JobContext:
    texts = {
        ("gim-export", "output-directory"): str(out),
        ("gim-export", "chunk-size-seconds"): "3600",
        ("gim-export", "start-date"): START.date().isoformat(),
        ("gim-export", "retry-delay-seconds"): "0",
    }
    texts.update({("gim-export", k.replace("_", "-")): v for k, v in options.items()})
    return JobContext(
        mart=make_engine(url),
        idb_urls=[],
        options=Options.from_texts(texts),
        now=lambda: NOW,
        output_base=out.parent,  # GIM_OUTPUT_DIRECTORY: the export folder must lie under it
    )


def manifests(out: Path) -> list[dict]:
    return [json.loads((d / "manifest.json").read_text()) for d in sorted(out.glob("chunk-*"))]


def assert_exactly_once(url: str, out: Path) -> None:
    """Chunks tile [first, last) without gap or overlap, files match their manifests, and
    every fact row of that time is in exactly one chunk."""
    found = manifests(out)
    assert found
    for previous, following in zip(found, found[1:], strict=False):
        assert previous["end"] == following["start"]
    assert not list(out.glob(".partial-*"))
    for chunk_dir, manifest in zip(sorted(out.glob("chunk-*")), found, strict=True):
        for entry in manifest["tables"].values():
            data = (chunk_dir / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    with make_engine(url).connect() as conn:
        for table in mart.FACTS:
            expected = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table.name} WHERE start_ts >= :a AND start_ts < :b"
                ),
                {"a": found[0]["start"], "b": found[-1]["end"]},
            ).scalar_one()
            assert sum(m["tables"][table.name]["rows"] for m in found) == expected


@pytest.mark.date_sensitive
def test_d4_complete_chunks_once_each_and_incremental(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export.run(context(loaded, out))
    assert [m["start"][11:16] for m in manifests(out)] == [
        "00:00",
        "01:00",
        "02:00",
        "03:00",
        "04:00",
        "05:00",
        "06:00",
        "07:00",
        "08:00",
        "09:00",
        "10:00",
        "11:00",
    ]
    assert manifests(out)[-1]["end"] == "2026-11-23T12:00:00+00:00"  # 12:30 - 15 min, floored
    assert_exactly_once(loaded, out)
    later = context(loaded, out)
    later.now = lambda: NOW + timedelta(hours=2)
    export.run(later)  # continues from the exported-through point
    assert len(manifests(out)) == 14
    assert_exactly_once(loaded, out)


def test_d4_crash_before_rename_leaves_nothing_visible_and_rerun_redoes_the_chunk(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_rename, calls = os.rename, []

    def crashing_rename(source: object, target: object) -> None:
        calls.append(target)
        if len(calls) == 8:
            raise KeyboardInterrupt("killed mid-chunk")  # as abrupt as a kill for our files
        real_rename(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(export.os, "rename", crashing_rename)
    with pytest.raises(KeyboardInterrupt):
        export.run(context(loaded, out))
    assert len(manifests(out)) == 7 and list(out.glob(".partial-*"))
    monkeypatch.setattr(export.os, "rename", real_rename)
    export.run(context(loaded, out))
    assert len(manifests(out)) == 12
    assert_exactly_once(loaded, out)


def test_d4_crash_after_rename_before_commit_reuses_the_chunk(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real = export.export_chunk
    done: list[str] = []

    def crash_after_third(*args: object) -> dict:
        result = real(*args)  # type: ignore[arg-type]
        done.append(result["chunk"])
        if len(done) == 3:
            raise KeyboardInterrupt("killed before the mark was committed")
        return result

    monkeypatch.setattr(export, "export_chunk", crash_after_third)
    with pytest.raises(KeyboardInterrupt):
        export.run(context(loaded, out))
    monkeypatch.setattr(export, "export_chunk", real)
    before = (sorted(out.glob("chunk-*"))[2] / "manifest.json").read_text()
    export.run(context(loaded, out))
    assert (sorted(out.glob("chunk-*"))[2] / "manifest.json").read_text() == before  # reused
    assert_exactly_once(loaded, out)


def test_encoding_is_honoured(loaded: str, tmp_path: Path) -> None:
    utf8, utf16 = tmp_path / "utf8", tmp_path / "utf16"
    export.run(context(loaded, utf8, use_export_views="true"))
    with make_engine(loaded).begin() as conn:
        conn.execute(sa.text("DELETE FROM export_mark"))  # export the same data again
    export.run(context(loaded, utf16, use_export_views="true", output_files_encoding="utf-16"))
    first = sorted(utf8.glob("chunk-*"))[0] / "interaction_segments.csv"
    second = sorted(utf16.glob("chunk-*"))[0] / "interaction_segments.csv"
    assert second.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # a UTF-16 BOM
    assert second.read_bytes().decode("utf-16") == first.read_text("utf-8")
    header = first.read_text().splitlines()[0]
    assert header.startswith("idb_id,segment_id,interaction_id,seq,queued_at")
    assert "queue" in header.split(",") and "agent_login" in header.split(",")


def test_transient_fault_terminated_backend_is_retried(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = export.ExportTable(
        "interaction_segment_fact",
        "SELECT * FROM ("
        + export.FACT_EXPORTS[1].query.split(" ORDER BY")[0]
        + ") q WHERE pg_sleep(0.004) IS NOT NULL",
    )
    monkeypatch.setattr(export, "FACT_EXPORTS", (slow,))
    killed: list[int] = []

    def terminate_once() -> None:
        deadline = time.monotonic() + 20
        with psycopg.connect(loaded, autocommit=True) as admin:
            while not killed and time.monotonic() < deadline:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name ="
                    " 'gim-export' AND state = 'active'"
                ).fetchall()
                for (pid,) in rows:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.append(pid)
                time.sleep(0.05)

    fault = threading.Thread(target=terminate_once)
    fault.start()
    ctx = context(loaded, tmp_path / "out", chunk_size_seconds="86400", start_date="2026-11-22")
    ctx.now = lambda: NOW + timedelta(days=1)
    export.run(ctx)
    fault.join()
    assert killed and ctx.counts.warnings == 1  # one retry after the terminated backend
    assert len(manifests(tmp_path / "out")) == 2


@pytest.mark.date_sensitive
def test_retention_removes_old_chunks_and_partial_leftovers(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = out / export.chunk_name(NOW - timedelta(days=30), NOW - timedelta(days=29))
    young = out / export.chunk_name(NOW - timedelta(days=2), NOW - timedelta(days=1))
    leftover = out / ".partial-chunk-x-1"
    for folder in (old, young, leftover):
        folder.mkdir(parents=True)
    ctx = context(loaded, out, days_to_keep_output_files="14")
    export.run(ctx)
    assert not old.exists() and young.exists() and not leftover.exists()
    assert ctx.counts.summary["files_removed"] == 1


@pytest.mark.date_sensitive
def test_d4_sigkill_during_export_then_rerun_exports_every_interval_once(
    gim_env: dict[str, str], tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from gim_tasks.db.partitions import ensure_partitions

    url, out = gim_env["GIM_DATABASE_URL"], Path(gim_env["GIM_OUTPUT_DIRECTORY"]) / "out"
    engine = make_engine(url)
    # Relative to today: a fixed date would fall out of the 14-day output retention one day,
    # and the exactly-once check would then compare removed chunks (a time bomb).
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    with engine.begin() as conn:
        ensure_partitions(conn, "interaction_segment_fact", [day.date()])
        conn.execute(
            sa.text(
                "INSERT INTO interaction_segment_fact (idb_id, segment_id, start_ts, "
                "date_time_key, outcome) SELECT 1, g, :day + (g % 86400) * interval '1 second', "
                "0, 'answered' "
                "FROM generate_series(1, 1500000) g"
            ),
            {"day": day},
        )
        for name, value in (
            ("output-directory", str(out)),
            ("chunk-size-seconds", "3600"),
            ("start-date", day.date().isoformat()),
        ):
            conn.execute(
                sa.text("INSERT INTO option_value VALUES ('gim-export', :n, :v, 't', now())"),
                {"n": name, "v": value},
            )
        conn.execute(
            sa.text(
                "INSERT INTO option_value VALUES ('schedule', 'run-export', 'true', 't', now())"
            )
        )
    gim = str(Path(sys.executable).with_name("gim"))
    env = {**os.environ, **gim_env}
    process = subprocess.Popen(
        [gim, "run", "Job_ExportGIM", "--local", "--force"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("chunk-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-export, between or inside chunks
    process.wait()
    interrupted = len(list(out.glob("chunk-*")))
    assert 3 <= interrupted < 24
    result = subprocess.run(
        [gim, "run", "Job_ExportGIM", "--local", "--force"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_exactly_once(url, out)
    assert len(manifests(out)) >= 24
    # Every one of the day's rows was exported (issue 32): the manifests' total is the table's
    # count, and the files hold exactly those rows (one header line each, no value spans lines).
    found = manifests(out)
    exported = sum(m["tables"]["interaction_segment_fact"]["rows"] for m in found)
    with engine.connect() as conn:
        facts = conn.execute(sa.text("SELECT count(*) FROM interaction_segment_fact")).scalar()
    assert exported == facts == 1_500_000
    lines = sum(
        (chunk / m["tables"]["interaction_segment_fact"]["file"]).read_bytes().count(b"\n") - 1
        for chunk, m in zip(sorted(out.glob("chunk-*")), found, strict=True)
    )
    assert lines == exported
    engine.dispose()
