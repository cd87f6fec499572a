"""Run ids: a prefix and a ULID, so that ids sort by creation time.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits, written in
Crockford's base32 (26 characters). Within one millisecond the random part is
incremented, so ids made by one process are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["child_run_id", "new_run_id", "new_ulid"]


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    return "".join([_ALPHABET[(value >> shift) & 31] for shift in range(5 * (length - 1), -1, -5)])


def new_ulid() -> str:
    """Return a new ULID string, strictly greater than the previous one of this process."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >> 80:  # 2**80 ids in one millisecond: move to the next one
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # keep headroom to increment
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def new_run_id() -> str:
    """Return a new run id such as ``run_01JD3Q...``; ids sort by creation time."""
    return "run_" + new_ulid()


def child_run_id(parent_id: str, seq: int) -> str:
    """Return the id of the child started by ``parent_id`` at position ``seq``.

    Derived, not random, so that replaying the parent never starts a second child.
    """
    return f"{parent_id}.{seq}"
