"""A runtime's way of storing values: its serializer, with every payload signed (see :mod:`actorflow.signing`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from . import serialization as ser
from . import signing
from .serialization import ErrorInfo, Serializer
from .signing import Signer

__all__ = ["Codec"]


class Codec:
    """Serializes and signs the values of runs, and checks and decodes them when read back.

    Every method takes the identity of the row a value belongs to (run id, what it is,
    its sequence number): the signature covers it, so a value moved to another row does
    not verify.

    Args:
        serializer: the runtime's serializer.
        signer: the journal's key; a signer without a key makes a codec that only reads,
            never unpickles, and marks what it shows as :class:`~actorflow.Unverified`.

    Attributes:
        serializer: the serializer.
        name: the serializer's name, recorded with each run.
    """

    __slots__ = ("_signer", "name", "seal", "serializer")

    def __init__(self, serializer: Serializer, signer: Signer) -> None:
        self.serializer = serializer
        self._signer = signer
        self.name: str = getattr(serializer, "name", type(serializer).__name__)
        #: Sign text that is serialized already: ``seal(text, run_id, kind, seq=0)``
        #: (:meth:`Signer.seal`, bound: one call fewer on the hot paths).
        self.seal: Callable[..., Any] = signer.seal

    @property
    def verifies(self) -> bool:
        """True if this codec has the journal's key (it checks signatures and may unpickle)."""
        return self._signer.has_key

    # -- values -------------------------------------------------------------------------

    def dumps(self, value: Any, run_id: str, kind: str, seq: int = 0) -> Any:
        """Serialize ``value`` and sign it as the ``kind`` value of ``run_id`` (at ``seq``)."""
        return self.seal(self.serializer.dumps(value), run_id, kind, seq)

    def unseal(self, stored: Any, run_id: str, kind: str, seq: int = 0) -> Any:
        """Check a stored value's signature and return its serialized text.

        Raises:
            TamperedRecord: it does not verify.
        """
        return self._signer.unseal(stored, run_id, kind, seq)

    def loads(self, stored: Any, run_id: str, kind: str, seq: int = 0) -> Any:
        """Check and decode a stored value; without the key, an :class:`~actorflow.Unverified` view of it.

        Raises:
            TamperedRecord: the signature does not verify (nothing was decoded).
            SerializationError: it verifies but cannot be decoded.
        """
        if stored is None:
            return None
        if not self._signer.has_key:
            return ser.loads_unverified(self.serializer, Signer.unchecked(stored))
        return self.serializer.loads(self._signer.unseal(stored, run_id, kind, seq))

    def dumps_arguments(self, args: list[Any], kwargs: dict[str, Any], run_id: str) -> tuple[Any, Any]:
        """Serialize a run's arguments: the positional ones signed, with a signature that covers the keywords too.

        Returns:
            ``(args column, kwargs column)``.
        """
        serializer = self.serializer
        kw_text = serializer.dumps(kwargs)
        return self._signer.seal(serializer.dumps(args), run_id, signing.ARGS, 0, kw_text), kw_text

    def loads_arguments(self, args_stored: Any, kwargs_stored: Any, run_id: str) -> tuple[Any, Any]:
        """Check and decode a run's arguments (see :meth:`dumps_arguments`).

        Raises:
            TamperedRecord: either column was changed.
        """
        if not self._signer.has_key:
            return (ser.loads_unverified(self.serializer, Signer.unchecked(args_stored)),
                    ser.loads_unverified(self.serializer, kwargs_stored))  # fmt: skip
        args_text = self._signer.unseal(args_stored, run_id, signing.ARGS, 0, kwargs_stored)
        return self.serializer.loads(args_text), self.serializer.loads(kwargs_stored)

    # -- errors -------------------------------------------------------------------------

    def dump_error(self, exc: BaseException, run_id: str, kind: str = signing.ERROR, seq: int = 0) -> str:
        """Record an exception (see :func:`~actorflow.serialization.dump_error`), signed."""
        sealed: str = self._signer.seal(ser.dump_error(exc), run_id, kind, seq)
        return sealed

    def load_error(self, stored: str, run_id: str, kind: str = signing.ERROR, seq: int = 0) -> tuple[ErrorInfo, BaseException | None]:
        """Read a recorded exception: its description, and the exception itself when it can be rebuilt.

        Without the key the exception is never rebuilt (that would unpickle) and the
        description is marked unverified.

        Raises:
            TamperedRecord: the signature does not verify.
            SerializationError: the text is not a recorded error.
        """
        if not self._signer.has_key:
            info, _ = ser.load_error(Signer.unchecked(stored), rebuild=False)
            return dataclasses.replace(info, verified=False), None
        return ser.load_error(self._signer.unseal(stored, run_id, kind, seq))

    # -- flows --------------------------------------------------------------------------

    def load_flow(self, ref: str, blob: bytes | None, run_id: str) -> Callable[..., Any]:
        """Load a run's flow; a flow stored by value is checked before it is unpickled.

        Raises:
            TamperedRecord: the stored flow does not verify.
            FlowNotFound: it cannot be imported or unpickled.
        """
        if blob is not None:
            blob = self._signer.unseal(blob, run_id, signing.FLOW)
        return ser.load_flow(ref, blob)

    def __repr__(self) -> str:
        return f"<Codec {self.name}{'' if self.verifies else ' (no key: unverified)'}>"
