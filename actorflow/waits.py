"""What a run waits for, durably: one :class:`Wait` value for every kind of wait.

A flow's wait (``ctx.sleep``, ``ctx.wait_event``, ``hook.wait``, ``handle.result``,
``ctx.gather``, ``ctx.wait_first``) is a checkpointed call like a step: the execution actor's
one method, :meth:`actorflow.execution.Execution.wait`, numbers it, replays it, commits its
start (with its deadline), waits in the flow's thread for a moment and then gives the thread
up (the run passivates), and records its outcome. What differs between kinds is here: what
is awaited, how it shows in the run's status, and what a missed deadline means.

Adding a kind of wait: a constructor here, the checks of its kind in ``Execution.wait``, a
``ctx`` method that calls it, and a test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ._time import iso
from .states import StepKind

__all__ = ["Wait", "WaitKind"]


class WaitKind(enum.Enum):
    """The kinds of wait."""

    SLEEP = "sleep"
    """Until a point in time."""
    EVENT = "event"
    """For the next event on a topic (hooks are events on ``hook:<token>``), or a timeout."""
    RUNS = "runs"
    """For other runs to end (all, all unless one fails first, or the first), or a timeout."""


@dataclass(frozen=True)
class Wait:
    """One wait of a run.

    Attributes:
        kind: what is awaited.
        step: the name its checkpoint is recorded under (a replay checks it).
        deadline: epoch seconds at which it ends anyway (a sleep's wake-up, a timeout), or None.
        topic: the event topic (``EVENT``).
        run_ids: the awaited runs (``RUNS``).
        mode: ``"all"``, ``"all_or_failure"`` or ``"first"`` (``RUNS``).
        timeout: the timeout it was given in seconds, for messages.
    """

    kind: WaitKind
    step: str
    deadline: float | None
    topic: str | None = None
    run_ids: tuple[str, ...] = field(default=())
    mode: str = "all"
    timeout: float | None = None

    @classmethod
    def sleep(cls, until: float) -> Wait:
        """A durable sleep until ``until`` (epoch seconds)."""
        return cls(WaitKind.SLEEP, StepKind.SLEEP, until)

    @classmethod
    def event(cls, topic: str, deadline: float | None, timeout: float | None = None) -> Wait:
        """The next event on ``topic``, or None once ``deadline`` has passed."""
        return cls(WaitKind.EVENT, StepKind.event(topic), deadline, topic=topic, timeout=timeout)

    @classmethod
    def runs(cls, step: str, run_ids: tuple[str, ...], mode: str, deadline: float | None, timeout: float | None = None) -> Wait:
        """Other runs ending per ``mode``; a TimeoutError once ``deadline`` has passed."""
        return cls(WaitKind.RUNS, step, deadline, run_ids=run_ids, mode=mode, timeout=timeout)

    def with_deadline(self, deadline: float | None) -> Wait:
        """The same wait with the deadline committed when it began (a resumed wait keeps it)."""
        return Wait(self.kind, self.step, deadline, self.topic, self.run_ids, self.mode, self.timeout)

    def shown(self) -> dict[str, Any]:
        """What the run's status shows it waits for (``RunStatus.waiting_for``)."""
        if self.kind is WaitKind.SLEEP:
            assert self.deadline is not None
            return {"sleep_until": iso(self.deadline)}
        if self.kind is WaitKind.EVENT:
            return {"event": self.topic, **({"until": iso(self.deadline)} if self.deadline is not None else {})}
        return {"mode": self.mode, "runs": list(self.run_ids[:10]), "count": len(self.run_ids)}
