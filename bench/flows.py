"""Flows the benchmark runs (importable, so they are stored by reference like a service's)."""

from __future__ import annotations

import actorflow


@actorflow.flow
def noop(ctx: actorflow.Context) -> None:
    return None
