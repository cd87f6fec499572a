"""A small pool of worker threads on which execution actors run their loops.

An execution actor lives for one run. Giving each its own new thread would cost a thread
start per run; instead the pool keeps up to ``size`` threads and hands each new actor's
loop to an idle one. The supervisor never runs more execution actors than the pool has
threads, so an actor's loop waits in the queue only for the moment between one actor
reporting its end and its thread becoming free.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerPool"]


_names = itertools.count(1)


class WorkerPool:
    """Up to ``size`` daemon threads running submitted callables, started as needed.

    Args:
        size: the most threads the pool keeps.
        name: prefix of the threads' names.
        thread_class: the class of its threads.
    """

    def __init__(self, size: int, name: str = "actorflow-worker", thread_class: type[threading.Thread] = threading.Thread) -> None:
        self._thread_class = thread_class
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on a pool thread (a new one if none is idle and the pool is not full)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            if self._idle == 0 and len(self._threads) < self._size:
                thread = self._thread_class(target=self._work, name=f"{self._name}-{next(_names)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1  # this idle thread is spoken for
            # under the lock: a shutdown cannot slip its stop markers in before this work
            self._queue.put(fn)

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()
            except BaseException:
                logging.getLogger("actorflow").exception("a pool thread's work raised")
            finally:
                with self._lock:
                    self._idle += 1

    def shutdown(self, timeout: float | None = None) -> list[threading.Thread]:
        """Stop the threads once their current work is done.

        Returns:
            The threads still alive after ``timeout`` (busy with work that did not end).
        """
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return [t for t in threads if t.is_alive()]
