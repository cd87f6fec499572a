"""Reply: a lighter pykka future for the answers actorflow's actors send each other.

pykka's ``ThreadingFuture`` waits on a ``threading.Condition``, which allocates a lock
for every wait. A reply is set once and read by one or a few threads, so a single lock
held from creation until the value is set does the same job for a fraction of the cost
on the hot paths (start, step checkpoints). It is a real :class:`pykka.Future`: it can
be passed wherever one is expected, and set from any thread.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pykka
from pykka._types import OptExcInfo

__all__ = ["Admission", "Reply"]


T = TypeVar("T")


class Reply(pykka.Future[T]):
    """A future set exactly once; any number of threads may ``get`` it."""

    __slots__ = ("_exc", "_lock", "_set", "_value")

    def __init__(self) -> None:
        super().__init__()
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False
        self._value: Any = None
        self._exc: BaseException | None = None

    def get(self, *, timeout: float | None = None) -> T:
        """Wait for the value and return it (or raise the exception that was set).

        Raises:
            pykka.Timeout: ``timeout`` seconds passed first.
        """
        if not self._set:
            wait = -1 if timeout is None else min(max(timeout, 0), threading.TIMEOUT_MAX)
            if not self._lock.acquire(True, wait):
                raise pykka.Timeout(f"{timeout} seconds")
            self._lock.release()  # let the next waiter through
        if self._exc is not None:
            raise self._exc
        return self._value  # type: ignore[no-any-return]  # the future holds whatever it was set with

    def set(self, value: T | None = None) -> None:
        """Set the value and wake the waiters."""
        if self._set:
            raise RuntimeError("a Reply can be set only once")
        self._value = value
        self._set = True
        self._lock.release()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Set an exception (``sys.exc_info()`` by default) and wake the waiters."""
        if self._set:
            raise RuntimeError("a Reply can be set only once")
        info = exc_info if exc_info is not None else sys.exc_info()
        exc = info[1] if info[1] is not None else (info[0]() if info[0] is not None else RuntimeError("unknown error"))
        self._exc = exc
        self._set = True
        self._lock.release()

    @property
    def done(self) -> bool:
        """True once a value or an exception is set."""
        return self._set

    def __repr__(self) -> str:
        return f"<Reply {'set' if self._set else 'pending'}>"


class Admission(Reply[bool]):
    """The answer to "was this run's insert committed?", with one callback run once it is set.

    The supervisor inserts a run that has a free slot as already running and creates its
    execution actor at once; :meth:`then` starts the actor's loop only when the insert's
    fate is known, so the worker thread wakes once, when there is work, instead of waking
    to wait. The callback runs in the thread that sets the answer (the journal's, after
    its commit), or at once if the answer is already set.
    """

    __slots__ = ("_guard", "_then")

    def __init__(self) -> None:
        super().__init__()
        self._guard = _thread.allocate_lock()
        self._then: Callable[[], Any] | None = None

    def then(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` once the answer is set (now, if it is)."""
        with self._guard:
            if not self._set:
                self._then = fn
                return
        fn()

    def set(self, value: bool | None = None) -> None:
        """Set the answer, then run the callback."""
        self._answer(lambda: Reply.set(self, value))

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Set an error as the answer (the run was not inserted), then run the callback."""
        info = exc_info if exc_info is not None else sys.exc_info()
        self._answer(lambda: Reply.set_exception(self, info))

    def _answer(self, store: Callable[[], None]) -> None:
        with self._guard:
            store()
            fn, self._then = self._then, None
        if fn is not None:
            fn()
