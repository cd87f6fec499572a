"""actorflow trust: arguments checked at start, and a journal edited behind actorflow's back.

Run it with ``python examples/trust.py [journal.db]`` (default ``actorflow-trust.db``, a fresh
file each time). It shows:

1. a start whose arguments do not fit the flow, or that its validator refuses, raises at the
   call and writes nothing;
2. every stored value is signed with the journal's key (``<journal>.key``, mode 0600): a
   result edited with the ``sqlite3`` module raises ``TamperedRecord`` instead of being read,
   and the other runs are still listed;
3. a view without the key shows values as unverified and never unpickles them.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys

import actorflow


def _positive(amount: int, currency: str) -> None:
    if amount <= 0:
        raise ValueError("amount must be > 0")


@actorflow.flow(validate=_positive)
def charge(ctx: actorflow.Context, amount: int, currency: str) -> str:
    return f"charged {amount} {currency}"


def main(path: str) -> None:
    for suffix in ("", "-wal", "-shm", ".key"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    with actorflow.Runtime(path) as rt:
        for args in ((40,), (-5, "EUR")):
            try:
                rt.start(charge, *args)
            except (TypeError, actorflow.InvalidInput) as exc:
                print(f"refused {args}: {type(exc).__name__}: {exc}")
        print("runs written so far:", len(rt.list_runs()))

        good = rt.start(charge, 40, "EUR")
        other = rt.start(charge, 12, "USD")
        print("result:", good.result(timeout=10), "/", other.result(timeout=10))
        print("key file:", path + ".key", oct(stat.S_IMODE(os.stat(path + ".key").st_mode)))

        # an attacker who can write the journal (not the key) edits a result
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT result FROM runs WHERE id=?", (good.id,)).fetchone()[0]
            print("stored:", stored[:20] + "…" + stored[69:])
            conn.execute("UPDATE runs SET result=? WHERE id=?", (stored[:69] + '"charged 0 EUR"', good.id))
        try:
            rt.result(good.id)
        except actorflow.TamperedRecord as exc:
            print("TamperedRecord:", exc.column, "of", exc.run_id == good.id and "the edited run")
        for status in rt.list_runs():
            print(" ", status.flow, status.state.value, status.result or status.error)

    os.rename(path + ".key", path + ".key.aside")  # as a user who cannot read the key
    try:
        with actorflow.inspect(path) as view:
            print("view verified:", view.verified, "| result:", view.status(other.id).result)
    finally:
        os.rename(path + ".key.aside", path + ".key")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "actorflow-trust.db")
