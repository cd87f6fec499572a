"""actorflow: durable execution for Python on the actor model, in one SQLite file.

Start a function in the background and get a run id at once; the run survives crashes
and restarts, and anyone holding the id can inspect it, wait for it, or cancel it::

    import actorflow

    @actorflow.flow
    def greet(ctx, name):
        ctx.progress({"stage": "greeting"})
        return f"hello {name}"

    with actorflow.Runtime("actorflow.db") as rt:
        run = rt.start(greet, "ada")
        print(run.result(timeout=10))
"""

from . import messages
from .children import AwaitResult, Child, ChildHandle, ChildOutcome, await_result, parent_flow, sequence
from .clock import Clock, ManualClock, SystemClock
from .context import Context, Hook, current_run
from .errors import (
    ActorflowError,
    Cancelled,
    CorruptRecord,
    FatalError,
    FlowNotFound,
    HookConflict,
    HookNotFound,
    InvalidInput,
    JournalError,
    NonDeterminismError,
    RetryableError,
    RunCancelled,
    RunError,
    RunFailed,
    RunFinished,
    RunNotFound,
    RuntimeClosed,
    RunTimedOut,
    SerializationError,
    SerializerMismatch,
    StepFailed,
    StepTimeout,
    TamperedRecord,
)
from .flows import Flow, flow
from .handle import RunHandle
from .inspection import JournalView, inspect
from .retry import Retry
from .runtime import Runtime
from .serialization import ErrorInfo, JSONSerializer, Opaque, Serializer, Unverified
from .states import State
from .status import RunList, RunStatus, RunTree, StepList, StepStatus
from .steps import Step, StepInfo, current_step, step

__version__ = "0.1.0"

__all__ = [
    "ActorflowError",
    "AwaitResult",
    "Cancelled",
    "Child",
    "ChildHandle",
    "ChildOutcome",
    "Clock",
    "Context",
    "CorruptRecord",
    "ErrorInfo",
    "FatalError",
    "Flow",
    "FlowNotFound",
    "Hook",
    "HookConflict",
    "HookNotFound",
    "InvalidInput",
    "JSONSerializer",
    "JournalError",
    "JournalView",
    "ManualClock",
    "NonDeterminismError",
    "Opaque",
    "Retry",
    "RetryableError",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunHandle",
    "RunList",
    "RunNotFound",
    "RunStatus",
    "RunTimedOut",
    "RunTree",
    "Runtime",
    "RuntimeClosed",
    "SerializationError",
    "Serializer",
    "SerializerMismatch",
    "State",
    "Step",
    "StepFailed",
    "StepInfo",
    "StepList",
    "StepStatus",
    "StepTimeout",
    "SystemClock",
    "TamperedRecord",
    "Unverified",
    "await_result",
    "current_run",
    "current_step",
    "flow",
    "inspect",
    "messages",
    "parent_flow",
    "sequence",
    "step",
]
