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
from .context import Context, current_run
from .errors import (
    ActorflowError,
    Cancelled,
    CorruptRecord,
    FlowNotFound,
    JournalError,
    RunCancelled,
    RunError,
    RunFailed,
    RunNotFound,
    RunTimedOut,
    RuntimeClosed,
    SerializationError,
)
from .flows import Flow, flow
from .handle import RunHandle
from .inspection import JournalView, inspect
from .runtime import Runtime
from .serialization import ErrorInfo, JSONSerializer, Serializer
from .status import RunList, RunStatus, State

__version__ = "0.1.0"

__all__ = [
    "ActorflowError",
    "Cancelled",
    "Context",
    "CorruptRecord",
    "ErrorInfo",
    "Flow",
    "FlowNotFound",
    "JSONSerializer",
    "JournalError",
    "JournalView",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunHandle",
    "RunList",
    "RunNotFound",
    "RunStatus",
    "RunTimedOut",
    "Runtime",
    "RuntimeClosed",
    "SerializationError",
    "Serializer",
    "State",
    "current_run",
    "flow",
    "inspect",
    "messages",
]
