"""A run's claim and fence against real PostgreSQL (SPEC R2, S11): the same run claimed twice
at once starts once; a run that lost its lease cannot commit what it wrote."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from gim_tasks.db.engine import make_engine
from gim_tasks.runtime.runs import LeaseLost, claim, fence_for, sweep_lost


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    return make_engine(database_url)


def scheduled(engine: sa.Engine, job: str = "Job_ExtractICON") -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO job_run (job, trigger, actor, state, dispatched_at) VALUES "
                    "(:j, 'scheduled', 'scheduler', 'Scheduled', now()) RETURNING id"
                ),
                {"j": job},
            ).scalar_one()
        )


def test_s11_the_same_run_claimed_by_two_workers_at_once_starts_once(engine: sa.Engine) -> None:
    """Two messages of one run (a resend, a duplicate delivery) reach two workers at the same
    instant: the row lock of Scheduled -> Running lets one claim win; the other gets None."""
    for _ in range(10):
        run_id = scheduled(engine)
        start = threading.Barrier(2)
        tokens: list[int | None] = []

        def take(
            name: str,
            run_id: int = run_id,
            start: threading.Barrier = start,
            tokens: list[int | None] = tokens,
        ) -> None:
            start.wait()
            tokens.append(claim(engine, run_id, name))

        workers = [threading.Thread(target=take, args=(f"w{n}",)) for n in (1, 2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(tokens, key=lambda t: t is None)[1:] == [None], tokens
        assert tokens.count(None) == 1
        with engine.begin() as conn:  # end it, so the next round's claim is not S2
            conn.execute(
                sa.text("UPDATE job_run SET state = 'Completed', ended_at = now() WHERE id = :i"),
                {"i": run_id},
            )


def test_s2_two_runs_of_one_job_claimed_at_once_one_runs_the_other_is_rejected(
    engine: sa.Engine,
) -> None:
    """S2 at the claim (issue 32): two Scheduled runs of one job claimed by two workers at the
    same instant: the partial unique index of Running runs lets one through; the other's
    IntegrityError becomes Rejected, naming the run that runs."""
    for _ in range(10):
        runs = [scheduled(engine), scheduled(engine)]
        start = threading.Barrier(2)
        tokens: dict[int, int | None] = {}

        def take(
            run_id: int,
            start: threading.Barrier = start,
            tokens: dict[int, int | None] = tokens,
        ) -> None:
            start.wait()
            tokens[run_id] = claim(engine, run_id, f"task-{run_id}")

        workers = [threading.Thread(target=take, args=(run_id,)) for run_id in runs]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        (winner,) = [run_id for run_id, token in tokens.items() if token is not None]
        (loser,) = [run_id for run_id in runs if run_id != winner]
        with engine.connect() as conn:
            states = dict(
                conn.execute(
                    sa.text(
                        "SELECT id, state || ': ' || coalesce(reason, '') FROM job_run "
                        "WHERE id IN (:a, :b)"
                    ),
                    {"a": runs[0], "b": runs[1]},
                ).all()
            )
        assert states == {
            winner: "Running: ",
            loser: f"Rejected: already running as run {winner} (S2)",
        }
        with engine.begin() as conn:  # end it, so the next round starts from nothing running
            conn.execute(
                sa.text("UPDATE job_run SET state = 'Completed', ended_at = now() WHERE id = :i"),
                {"i": winner},
            )


def test_r2_a_run_that_lost_its_lease_cannot_commit(engine: sa.Engine) -> None:
    """R2: the beat declared the run lost (no heartbeat for the lease); the paused worker wakes
    and tries to commit a batch: the fence (its token no longer Running) refuses in the same
    transaction, so the batch's writes are rolled back. Its successor's token passes."""
    run_id = scheduled(engine)
    token = claim(engine, run_id, "w1")
    assert token is not None
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE job_run SET heartbeat_at = now() - interval '1 hour' WHERE id = :i"),
            {"i": run_id},
        )
    assert sweep_lost(engine, lease=60) == [run_id]
    with pytest.raises(LeaseLost, match=f"run {run_id} lost its lease"), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO agg_pending VALUES ('a batch', 1)"))
        fence_for(run_id, token)(conn)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM agg_pending")).scalar_one() == 0
        state = conn.execute(
            sa.text("SELECT state FROM job_run WHERE id = :i"), {"i": run_id}
        ).scalar_one()
    assert state == "Failed"
    rerun = scheduled(engine)
    new_token = claim(engine, rerun, "w2")
    assert new_token is not None and new_token > token
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO agg_pending VALUES ('a batch', 1)"))
        fence_for(rerun, new_token)(conn)  # passes: committed
        with pytest.raises(LeaseLost):
            fence_for(rerun, token)(conn)  # the old token, even on the live run, does not
