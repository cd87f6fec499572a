"""A runtime's way of storing values: its serializer, with every payload signed (see :mod:`actorflow.signing`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from . import serialization as ser
from . import signing
from .errors import TamperedRecord
from .serialization import ErrorInfo, Serializer
from .signing import PAIR, Signer, place

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

    def dumps(self, value: Any, run_id: str, kind: str, seq: int = 0, extra: str | None = None) -> Any:
        """Serialize ``value`` and sign it as the ``kind`` value of ``run_id`` (at ``seq``).

        Args:
            extra: text the signature covers too (a step's name, a chunk's namespace).
        """
        return self.seal(self.serializer.dumps(value), run_id, kind, seq, extra)

    def unseal(self, stored: Any, run_id: str, kind: str, seq: int = 0, extra: str | None = None) -> Any:
        """Check a stored value's signature and return its serialized text.

        Raises:
            TamperedRecord: it does not verify.
        """
        return self._signer.unseal(stored, run_id, kind, seq, extra)

    def loads(self, stored: Any, run_id: str, kind: str, seq: int = 0, extra: str | None = None, *, required: bool = False) -> Any:
        """Check and decode a stored value; without the key, an :class:`~actorflow.Unverified` view of it.

        Args:
            required: the value must be there (a completed step's result, a completed
                run's result): a NULL in its place is a :class:`~actorflow.TamperedRecord`.

        Raises:
            TamperedRecord: the signature does not verify (nothing was decoded), or a
                required value is missing.
            SerializationError: it verifies but cannot be decoded.
        """
        if stored is None:
            if required and self._signer.has_key:
                raise TamperedRecord(run_id, place(kind, seq), "the value is missing")
            return None
        if not self._signer.has_key:
            return ser.loads_unverified(self.serializer, Signer.unchecked(stored))
        return self.serializer.loads(self._signer.unseal(stored, run_id, kind, seq, extra))

    @staticmethod
    def run_input(row: Mapping[str, Any]) -> str:
        """What a run's arguments are signed together with: its keyword arguments, flow,
        parent, idempotency key, metadata and serializer (so none can be changed or swapped)."""
        return PAIR.join(
            str(row.get(column) or "")
            for column in ("kwargs", "flow", "flow_ref", "parent_id", "idempotency_key", "metadata", "codec")
        )

    def dumps_arguments(self, args: list[Any], row: Mapping[str, Any], run_id: str) -> Any:
        """Serialize a run's positional arguments, signed with :meth:`run_input` of its ``row``
        (which holds its serialized ``kwargs`` and the other columns already)."""
        return self.seal(self.serializer.dumps(args), run_id, signing.ARGS, 0, self.run_input(row))

    def loads_arguments(self, row: Mapping[str, Any], run_id: str) -> tuple[Any, Any]:
        """Check and decode a run's arguments (see :meth:`dumps_arguments`).

        Raises:
            TamperedRecord: the arguments, or a column signed with them, were changed.
        """
        if not self._signer.has_key:
            return (ser.loads_unverified(self.serializer, Signer.unchecked(row["args"])),
                    ser.loads_unverified(self.serializer, row["kwargs"]))  # fmt: skip
        if row.get("args") is None or row.get("kwargs") is None:
            raise TamperedRecord(run_id, "args", "the arguments are missing")
        args_text = self._signer.unseal(row["args"], run_id, signing.ARGS, 0, self.run_input(row))
        return self.serializer.loads(args_text), self.serializer.loads(row["kwargs"])

    # -- errors -------------------------------------------------------------------------

    def dump_error(self, exc: BaseException, run_id: str, kind: str = signing.ERROR, seq: int = 0, extra: str | None = None) -> str:
        """Record an exception (see :func:`~actorflow.serialization.dump_error`), signed."""
        sealed: str = self._signer.seal(ser.dump_error(exc), run_id, kind, seq, extra)
        return sealed

    def load_error(self, stored: str, run_id: str, kind: str = signing.ERROR, seq: int = 0,
                   extra: str | None = None) -> tuple[ErrorInfo, BaseException | None]:  # fmt: skip
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
        return ser.load_error(self._signer.unseal(stored, run_id, kind, seq, extra))

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
