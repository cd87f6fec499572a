"""actorflow.testing: the helpers users test their flows with."""

from __future__ import annotations

import pytest

import actorflow
from actorflow.testing import LeftoverActors, ManualClock, no_leftover_actors, wait_for_state
from tests import flows


def test_wait_for_state_follows_a_run_through_its_states(db_path: str) -> None:
    clock = ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run = rt.start(flows.sleeper, "1d")
        status = wait_for_state(run, "waiting", waiting_for="sleep_until")
        assert status.wake_at is not None
        clock.advance("1d")
        assert wait_for_state(run, actorflow.State.COMPLETED).result == "awake"


def test_wait_for_state_says_what_happened_instead(rt: actorflow.Runtime) -> None:
    failed = rt.start(flows.fail, "x")
    with pytest.raises(AssertionError, match="ended failed, not completed"):
        wait_for_state(failed, "completed")
    with pytest.raises(AssertionError, match="ended failed before it was waiting"):
        wait_for_state(failed, "waiting")
    held = rt.start(flows.hold, "held")
    with pytest.raises(AssertionError, match="was not waiting within 0.05s"):
        wait_for_state(held, "waiting", timeout=0.05)
    flows.gate("held").set()
    with pytest.raises(ValueError, match="the states are"):
        wait_for_state(held, "done")


def test_a_runtime_left_open_fails_the_block_and_is_stopped(db_path: str) -> None:
    with pytest.raises(LeftoverActors) as info:
        with no_leftover_actors():
            rt = actorflow.Runtime(db_path)
            rt.start(flows.add, 1, 2).result(timeout=10)
    assert len(info.value.actors) >= 3 and "not shut down" in str(info.value)
    with no_leftover_actors():  # a runtime shut down in the block is fine
        with actorflow.Runtime(db_path) as rt:
            assert rt.list_runs()[0].result == 3
    rt.shutdown()
