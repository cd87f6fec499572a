"""The states of a run, the operations that move runs between them, and the names of step kinds.

Everything that says "which states" (the stores' SQL, the supervisor, the docs' table of
transitions) takes it from here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CANCELLED_AT_ONCE",
    "TERMINAL_NAMES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "UNFINISHED_NAMES",
    "State",
    "StepKind",
    "Transition",
    "parse_state",
    "sql_in",
]


class State(enum.StrEnum):
    """The states of a run. ``completed``, ``failed``, ``cancelled`` and ``timed_out`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        """True for a state that never changes again."""
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.TIMED_OUT})
TERMINAL_NAMES = frozenset(s.value for s in TERMINAL_STATES)
"""The terminal states as stored in the journal's ``state`` column."""
UNFINISHED_NAMES = frozenset(s.value for s in State) - TERMINAL_NAMES
"""``pending``, ``running`` and ``waiting``, as stored."""

CANCELLED_AT_ONCE = frozenset({State.PENDING, State.WAITING})
"""A run in one of these states that is cancelled ends ``cancelled`` at once: no flow code runs
for it. A ``running`` one is asked to stop, and ends at its next cancellation point."""


@dataclass(frozen=True)
class Transition:
    """An operation of the journal, and the states it moves a run from and to.

    Attributes:
        operation: what does it (the store method).
        sources: the states a run may be in for it to apply.
        target: the state it leaves the run in (None: the state it asks for, or unchanged).
        note: when and why.
    """

    operation: str
    sources: frozenset[State]
    target: State | None
    note: str


_UNFINISHED = frozenset({State.PENDING, State.RUNNING, State.WAITING})

TRANSITIONS: tuple[Transition, ...] = (
    Transition("insert_run", frozenset(), State.PENDING, "a start, with no free slot (or to be claimed from a named queue)"),
    Transition("insert_run", frozenset(), State.RUNNING, "a start with a free slot: created and started at once"),
    Transition("claim_run", _UNFINISHED, State.RUNNING, "an execution begins (attempt + 1), unless another runtime holds the run"),
    Transition("set_waiting", frozenset({State.RUNNING}), State.WAITING, "the flow waits and gives up its thread"),
    Transition("requeue", frozenset({State.WAITING}), State.PENDING, "a woken run of a named queue waits for a slot"),
    Transition("request_cancel", CANCELLED_AT_ONCE, State.CANCELLED, "cancelled at once"),
    Transition("request_cancel", frozenset({State.RUNNING}), None, "asked to stop: cancel_requested, ends at its next cancellation point"),
    Transition("cancel_children", CANCELLED_AT_ONCE, State.CANCELLED, "a parent ended: its children go with it"),
    Transition("finish_run", _UNFINISHED, None, "the run's end: completed, failed, cancelled or timed_out (a cancel asked for wins)"),
)
"""Every operation that changes a run's state. A terminal state never changes."""


def sql_in(states: Iterable[State | str]) -> str:
    """``('pending','waiting')``: states as an SQL list (their names are fixed words, safe to inline)."""
    return "(" + ",".join(f"'{State(s).value}'" for s in sorted(State(s).value for s in states)) + ")"


class StepKind:
    """The names under which actorflow's own calls are checkpointed as steps (a replay checks them)."""

    SLEEP = "actorflow.sleep"
    HOOK = "actorflow.hook"
    WRITE = "actorflow.write"
    NOW = "actorflow.now"
    RANDOM = "actorflow.random"
    UUID = "actorflow.uuid"
    CANCEL = "actorflow.cancel"
    RESULT = "actorflow.result"
    GATHER = "actorflow.gather"
    WAIT_FIRST = "actorflow.wait_first"
    EVENT_PREFIX = "actorflow.event:"
    CHILD_PREFIX = "start:"

    @staticmethod
    def event(topic: str) -> str:
        """The step of a wait for an event on ``topic``."""
        return StepKind.EVENT_PREFIX + topic

    @staticmethod
    def child(flow: str) -> str:
        """The step of a start of a child run of ``flow``."""
        return StepKind.CHILD_PREFIX + flow

    @staticmethod
    def is_child(name: str) -> bool:
        """True for the step of a child run's start."""
        return name.startswith(StepKind.CHILD_PREFIX)


def parse_state(state: object) -> State:
    """A :class:`State` from a state or its name.

    Raises:
        TypeError: not a str.
        ValueError: no such state (the message lists the states).
    """
    if isinstance(state, State):
        return state
    if not isinstance(state, str):
        raise TypeError(f"a state is a str or an actorflow.State, not {type(state).__name__}")
    try:
        return State(state)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ValueError(f"{state!r} is not a run state; the states are: {names}") from None


