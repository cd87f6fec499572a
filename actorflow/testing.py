"""Helpers for testing code that uses actorflow (``trio.testing`` is the model).

- :class:`ManualClock`: move time by hand (``Runtime(clock=ManualClock())``), so that a flow
  that sleeps a day finishes as soon as the test says ``clock.advance("1d")``.
- :func:`wait_for_state`: wait until a run reaches a state, ``waiting`` say, that no call
  waits for.
- :func:`no_leftover_actors` (a context manager) and :func:`no_leftover_actors_fixture`
  (for a ``conftest.py``): fail a test that leaves a runtime's actors running, that is, a
  ``Runtime`` it never shut down.

::

    from actorflow.testing import ManualClock, no_leftover_actors, wait_for_state

    def test_reminder_waits_a_day(tmp_path):
        clock = ManualClock()
        with no_leftover_actors(), actorflow.Runtime(tmp_path / "t.db", clock=clock) as rt:
            run = rt.start(remind, "ada")
            wait_for_state(run, "waiting")
            clock.advance("1d")
            assert run.result(timeout=10) == "reminded ada"
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pykka

from .clock import ManualClock
from .states import State, parse_state
from .status import RunStatus

if TYPE_CHECKING:
    from .handle import RunHandle

__all__ = ["ManualClock", "LeftoverActors", "no_leftover_actors", "no_leftover_actors_fixture", "wait_for_state"]


def wait_for_state(handle: RunHandle[Any], state: State | str, timeout: float = 10.0, *, waiting_for: str | None = None) -> RunStatus:
    """Wait until the run of ``handle`` is in ``state``; return its status then.

    A terminal state is waited for without polling (``handle.wait()``); a passing state
    (``pending``, ``running``, ``waiting``) has nothing to wait on, so the status is read
    every few milliseconds.

    Args:
        handle: the run (``rt.start(...)``, ``rt.get_run(id)``).
        state: the state, or its name.
        timeout: seconds to wait at most.
        waiting_for: for ``waiting``, a key that must be in the run's ``waiting_for``
            (``"sleep_until"``, ``"event"``, ``"mode"``...).

    Raises:
        AssertionError: the run did not reach the state in time, or ended in another
            terminal state (the message shows its status).
    """
    wanted = parse_state(state)
    deadline = time.monotonic() + timeout
    if wanted.terminal and waiting_for is None:
        status = handle.wait(timeout=timeout)
        if status.state is not wanted:
            raise AssertionError(f"run {handle.id} ended {status.state.value}, not {wanted.value}: {status!r}")
        return status
    pause = threading.Event()
    while True:
        status = handle.status()
        if status.state is wanted and (waiting_for is None or waiting_for in (status.waiting_for or {})):
            return status
        if status.state.terminal and not wanted.terminal:
            raise AssertionError(f"run {handle.id} ended {status.state.value} before it was {wanted.value}: {status!r}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"run {handle.id} was not {wanted.value} within {timeout}s: {status!r}")
        pause.wait(0.005)


class LeftoverActors(AssertionError):
    """A test left actors running: a ``Runtime`` that was never shut down.

    Attributes:
        actors: descriptions of the actors that were still running (they have been stopped).
    """

    def __init__(self, actors: list[str]) -> None:
        super().__init__(
            f"{len(actors)} actor(s) left running (a Runtime not shut down? use `with Runtime(...)`): {', '.join(actors)}"
        )
        self.actors = actors


@contextlib.contextmanager
def no_leftover_actors(timeout: float = 5.0) -> Iterator[None]:
    """Fail (with :class:`LeftoverActors`) if the block leaves pykka actors running.

    The actors still running are stopped before it raises, so one leaky test does not
    spoil the next. Actors that were running before the block are not counted.

    Args:
        timeout: seconds to give the leftover actors to stop.
    """
    before = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
    yield
    left = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_urn not in before]
    if left:
        for ref in left:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(block=True, timeout=timeout)
        raise LeftoverActors([str(ref) for ref in left])


def _fixture() -> Any:
    try:
        import pytest
    except ImportError:  # pytest is not installed: the fixture is not needed
        return None

    @pytest.fixture
    def no_leftover_actors_fixture() -> Iterator[None]:
        """A pytest fixture: the test fails if it leaves a runtime's actors running.

        Use it in a ``conftest.py``, for every test of a folder::

            from actorflow.testing import no_leftover_actors_fixture

            @pytest.fixture(autouse=True)
            def _actors(no_leftover_actors_fixture): ...
        """
        with no_leftover_actors():
            yield

    return no_leftover_actors_fixture


no_leftover_actors_fixture = _fixture()
