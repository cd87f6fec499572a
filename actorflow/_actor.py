"""The base class of actorflow's actors.

pykka stops an actor when a message sent with ``tell`` raises. The supervisor, registry
and journal must survive a bad message, so :class:`Actor` remembers whether the message
being handled was asked (it has a reply future): an exception from an asked message goes
back to the caller as usual, one from a told message is logged and the actor carries on.
"""

from __future__ import annotations

import logging
import queue
from typing import Any, ClassVar

import pykka
from pykka._envelope import Envelope

__all__ = ["Actor", "tell"]


log = logging.getLogger("actorflow")


class _Inbox(queue.SimpleQueue[Envelope[Any]]):
    """A pykka inbox that keeps the envelope being handled, to tell asks from tells.

    It is a ``SimpleQueue`` (implemented in C) rather than pykka's default ``Queue``,
    which is several times slower per message; the inbox only needs put, get and empty.
    """

    current: Envelope[Any] | None = None

    def get(self, block: bool = True, timeout: float | None = None) -> Envelope[Any]:
        envelope = super().get(block, timeout)
        self.current = envelope
        return envelope


class Actor(pykka.ThreadingActor):
    """A pykka actor that survives exceptions raised by told messages."""

    use_daemon_thread: ClassVar[bool] = True

    @staticmethod
    def _create_actor_inbox() -> _Inbox:
        return _Inbox()

    def _asked(self) -> bool:
        """True if the message being handled was sent with ``ask``."""
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        return inbox.current is not None and inbox.current.reply_to is not None

    def on_receive(self, message: Any) -> Any:
        """Dispatch ``message`` to :meth:`handle`; log (not raise) errors of told messages."""
        try:
            return self.handle(message)
        except Exception:
            if self._asked():
                raise
            log.exception("%s failed to handle %r", type(self).__name__, message)
            return None

    def handle(self, message: Any) -> Any:
        """Handle one message (overridden by each actor)."""
        log.warning("%s got an unexpected message: %r", type(self).__name__, message)
        return None


def tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``ref.tell(message)`` for the hot paths: the same check and the same inbox put, fewer calls.

    Raises:
        pykka.ActorDeadError: the actor has stopped.
    """
    if ref.actor_stopped.is_set():
        raise pykka.ActorDeadError(f"{ref} not found")
    ref.actor_inbox.put(Envelope(message))
