"""Signed payloads: every value the journal stores carries an HMAC-SHA256 of its place and bytes.

A stored payload (a run's arguments, result, error, progress and metadata, a step's result
or error, an event, a stream chunk, a flow stored by value) is written as::

    af1:<HMAC-SHA256 in 64 hex digits>:<the serialized value>

(for bytes: ``b"af1:" + 32 raw bytes + value``). The HMAC covers the row's identity (run
id, what the value is, its sequence number) and the value's bytes, so a value edited by
hand, or copied to another run or another step, no longer verifies. A value that does not
verify raises :class:`~actorflow.TamperedRecord` and is never decoded: nothing in it is
unpickled, imported or handed to a flow.

The key is the journal's: ``Runtime(path, secret=...)``, else the environment variable
``ACTORFLOW_SECRET``, else the key file ``<journal>.key`` (32 random bytes as hex, mode
0600) that the first runtime on a new journal creates. See docs/guides/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
import secrets
from collections.abc import Callable
from typing import Any

from .errors import JournalError, TamperedRecord


def _builtin_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (no OpenSSL context to copy: cheaper per short value, which is
    what the journal signs); hashlib's where it is missing. Every SHA-256 gives the same digests."""
    for module in ("_sha2", "_sha256"):  # Python 3.12 and later, Python 3.11
        try:
            found: Callable[[bytes], Any] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return found
    return hashlib.sha256


_sha256 = _builtin_sha256()

__all__ = [
    "ARGS",
    "CHUNK",
    "ERROR",
    "FLOW",
    "METADATA",
    "PROGRESS",
    "RESULT",
    "STEP",
    "STEP_ERROR",
    "Signer",
    "chunk_place",
    "event_kind",
    "key_check",
    "key_path",
    "resolve_key",
]

# what a payload is, part of what its signature covers (with the run id and a sequence number)
ARGS = "args"  # a run's positional arguments; the signature covers its keyword arguments too
METADATA = "metadata"
FLOW = "flow"
RESULT = "result"
ERROR = "error"
PROGRESS = "progress"
STEP = "step"  # a step's result (seq: the step's position)
STEP_ERROR = "step.error"
CHUNK = "chunk"  # a stream chunk (seq: the position of the ctx.write call)


def chunk_place(namespace: str, close: bool) -> str:
    """What a chunk's signature covers besides its run and position: its stream and whether it closes it."""
    return f"{namespace}{PAIR}{int(bool(close))}"


def event_kind(topic: str) -> str:
    """The kind of an event's payload: events of one run and topic are interchangeable."""
    return "event:" + topic


_PREFIX = "af1:"
_BPREFIX = b"af1:"
_MAC_TEXT = 64  # the HMAC in hex
_MEMO_SIZE = 4096  # values up to this many characters are remembered once sealed
_MEMO_ENTRIES = 8192  # the memo is emptied when it holds this many
_MEMO_KINDS = frozenset({"args", "result"})  # read back at once by the process that wrote them
_HEAD = len(_PREFIX) + _MAC_TEXT + 1
_BHEAD = len(_BPREFIX) + 32
_SEP = "\x1f"
PAIR = "\x1e"
ENV_VAR = "ACTORFLOW_SECRET"


class Signer:
    """Seals payloads with the journal's key, and checks them when they are read back.

    Args:
        key: the journal's key; None for a view that has no key (it can read a payload
            with :meth:`unchecked`, never with :meth:`unseal`).
    """

    __slots__ = ("_inner", "_key", "_outer", "_sealed")
    _sealed: dict[tuple[Any, ...], str]

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        # values this signer sealed lately, by (sealed text, identity): reading one back
        # byte for byte needs no check (it is what was signed), which spares the hot paths
        # (a run's arguments and result, read in the process that wrote them) an HMAC each
        self._sealed = {}
        # HMAC-SHA256 (RFC 2104) from its two keyed hash states, copied per value.
        # hmac.digest() gives the same bytes, but it releases the GIL around every call,
        # and in a busy process each release costs a thread switch.
        if key is not None:
            block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
            self._inner = _sha256(bytes(b ^ 0x36 for b in block))
            self._outer = _sha256(bytes(b ^ 0x5C for b in block))

    @property
    def has_key(self) -> bool:
        """True if this signer can seal and verify."""
        return self._key is not None

    def _mac(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def _mac_of(self, value: Any, run_id: str, kind: str, seq: int, extra: Any) -> bytes:
        """The HMAC of a value's identity and bytes (and of ``extra``, a second column it covers)."""
        head = f"{run_id}{_SEP}{kind}{_SEP}{seq}{_SEP}"
        if type(value) is str and (extra is None or type(extra) is str):
            tail = "" if extra is None else PAIR + extra
            return self._mac((head + value + tail).encode("utf-8", "surrogatepass"))
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
        if extra is not None:
            data += PAIR.encode() + (extra if isinstance(extra, bytes) else str(extra).encode("utf-8", "surrogatepass"))
        return self._mac(head.encode() + data)

    def seal(self, value: Any, run_id: str, kind: str, seq: int = 0, extra: Any = None) -> Any:
        """Return ``value`` (str or bytes, None stays None) with its signature in front.

        Args:
            value: the serialized value.
            run_id: the run it belongs to.
            kind: what it is (:data:`ARGS`, :data:`STEP`...).
            seq: its sequence number (a step's position, a write's).
            extra: the text of another column the signature covers too, stored as it is
                (a run's keyword arguments, signed with its positional ones).
        """
        if value is None:
            return None
        if self._key is None:
            raise JournalError("this view of the journal has no key: it cannot write signed values")
        if type(value) is str and (extra is None or type(extra) is str):  # the hot path, inlined
            inner = self._inner.copy()
            tail = "" if extra is None else PAIR + extra
            inner.update(f"{run_id}{_SEP}{kind}{_SEP}{seq}{_SEP}{value}{tail}".encode("utf-8", "surrogatepass"))
            outer = self._outer.copy()
            outer.update(inner.digest())
            sealed = f"{_PREFIX}{outer.hexdigest()}:{value}"
            if kind in _MEMO_KINDS and len(value) <= _MEMO_SIZE:
                memo = self._sealed
                if len(memo) >= _MEMO_ENTRIES:
                    memo.clear()
                memo[(sealed, run_id, kind, seq, extra)] = value
            return sealed
        if type(value) is str:
            return f"{_PREFIX}{self._mac_of(value, run_id, kind, seq, extra).hex()}:{value}"
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
            return _BPREFIX + self._mac_of(data, run_id, kind, seq, extra) + data
        raise TypeError(f"a serializer must return str or bytes, not {type(value).__name__}")

    def unseal(self, stored: Any, run_id: str, kind: str, seq: int = 0, extra: Any = None) -> Any:
        """Check the signature of a stored value and return the value without it.

        Raises:
            TamperedRecord: the signature is missing or does not match (the value, or the
                ``extra`` column it covers, was edited, moved from another row, or written
                with another key).
        """
        if stored is None:
            return None
        if self._key is None:
            raise TamperedRecord(run_id, place(kind, seq), "this view has no key to verify it with")
        if type(stored) is str:
            try:
                known = self._sealed.get((stored, run_id, kind, seq, extra))
            except TypeError:  # an unhashable extra
                known = None
            if known is not None:
                return known
            if stored.startswith(_PREFIX) and len(stored) >= _HEAD and stored[_HEAD - 1] == ":":
                value = stored[_HEAD:]
                try:
                    given = bytes.fromhex(stored[len(_PREFIX) : _HEAD - 1])
                except ValueError:
                    given = b""
                if hmac.compare_digest(given, self._mac_of(value, run_id, kind, seq, extra)):
                    return value
        elif isinstance(stored, (bytes, bytearray)):
            stored = bytes(stored)
            if stored.startswith(_BPREFIX) and len(stored) >= _BHEAD:
                value_b = stored[_BHEAD:]
                if hmac.compare_digest(stored[len(_BPREFIX) : _BHEAD], self._mac_of(value_b, run_id, kind, seq, extra)):
                    return value_b
        raise TamperedRecord(run_id, place(kind, seq), "its signature does not match its content")

    @staticmethod
    def unchecked(stored: Any) -> Any:
        """The value of a stored payload without checking its signature (for a view without the key)."""
        if type(stored) is str and stored.startswith(_PREFIX) and len(stored) >= _HEAD:
            return stored[_HEAD:]
        if isinstance(stored, (bytes, bytearray)) and bytes(stored).startswith(_BPREFIX) and len(stored) >= _BHEAD:
            return bytes(stored)[_BHEAD:]
        return stored


def place(kind: str, seq: int) -> str:
    if kind in (STEP, STEP_ERROR, CHUNK):
        return f"{kind} {seq}"
    return kind


# ------------------------------------------------------------------------------- the key


def key_path(journal: str) -> str:
    """The key file of a journal: ``<journal>.key``."""
    return journal + ".key"


def key_check(key: bytes) -> str:
    """A fingerprint of ``key`` stored in the journal, so a runtime with another key is refused at open."""
    return hmac.digest(key, b"actorflow journal key", "sha256").hex()[:32]


def _as_key(secret: Any, origin: str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"{origin} must be str or bytes, not {type(secret).__name__}")
    if len(secret) < 16:
        raise ValueError(f"{origin} must be at least 16 bytes long (a random key of 32 bytes is best)")
    return bytes(secret)


def resolve_key(journal: str, secret: Any = None, *, create: bool, file_mode: int = 0o600) -> bytes | None:
    """The journal's key: ``secret``, else ``$ACTORFLOW_SECRET``, else the key file.

    Args:
        journal: the journal's path.
        secret: the key given to ``Runtime(secret=...)`` (str or bytes), or None.
        create: create the key file if it does not exist (a runtime opening a journal);
            False for a read-only view, which then has no key.
        file_mode: the mode of a new key file.

    Returns:
        The key, or None (only with ``create=False``) when there is none to read.

    Raises:
        JournalError: the key file exists but cannot be read, or is damaged.
    """
    if secret is not None:
        return _as_key(secret, "secret")
    env = os.environ.get(ENV_VAR)
    if env:
        return _as_key(env, f"${ENV_VAR}")
    path = key_path(journal)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        if not create:
            return None
        return _create_key_file(path, file_mode)
    except OSError as exc:
        if not create:
            return None
        raise JournalError(
            f"cannot read the journal's key file {path!r} ({exc}); give this process read access to it, "
            f"or pass the key with Runtime(secret=...) or ${ENV_VAR}"
        ) from exc
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise JournalError(f"the journal's key file {path!r} is damaged (it must hold the key as hex)") from exc
    if len(key) < 16:
        raise JournalError(f"the journal's key file {path!r} holds a key of {len(key)} bytes: at least 16 are needed")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & 0o002:
        raise JournalError(
            f"the journal's key file {path!r} can be written by anyone (mode {oct(mode & 0o777)}): whoever replaces it "
            "can forge the journal's values; make it private (chmod 600)"
        )
    return key


def _create_key_file(path: str, file_mode: int) -> bytes:
    """Create the key file atomically: a concurrent first open finds either no file or the whole key."""
    key = secrets.token_bytes(32)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
    except OSError as exc:
        raise JournalError(
            f"cannot create the journal's key file {path!r} ({exc}); give this process write access to the "
            f"folder, or pass the key with Runtime(secret=...) or ${ENV_VAR}"
        ) from exc
    try:
        os.fchmod(fd, file_mode)
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        os.unlink(tmp)
        return resolve_key(path[: -len(".key")], None, create=False) or key
    except OSError:  # no hard links on this file system: create it in place instead
        os.unlink(tmp)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
        except FileExistsError:
            return resolve_key(path[: -len(".key")], None, create=False) or key
        try:
            os.fchmod(fd, file_mode)
            os.write(fd, key.hex().encode("ascii") + b"\n")
        finally:
            os.close(fd)
        return key
    os.unlink(tmp)
    return key
