"""The run and the step executing in this thread: two ContextVars.

A leaf module (it imports nothing of actorflow's at run time), so that every module that
needs to know "am I inside a run, inside a step?" can ask without importing the modules
that define runs and steps.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Context
    from .steps import StepInfo

__all__ = ["run", "step"]

run: contextvars.ContextVar[Context | None] = contextvars.ContextVar("actorflow_run", default=None)
"""The :class:`~actorflow.Context` of the run whose flow executes in this thread, or None."""

step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar("actorflow_step", default=None)
"""The :class:`~actorflow.StepInfo` of the step whose body executes in this thread, or None."""
