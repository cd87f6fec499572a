"""A worker process for the multi-process tests: ``python -m tests.worker JOURNAL [options]``.

It opens a runtime on the journal, prints ``ready <runtime id>``, executes whatever it
claims, and shuts down gracefully when its standard input is closed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import actorflow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--queues", default="{}")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("ACTORFLOW_TEST_LOG", "WARNING"), format="%(threadName)s %(levelname)s %(message)s")
    logging.getLogger("pykka").setLevel(logging.WARNING)
    rt = actorflow.Runtime(
        args.journal,
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=args.poll,
        queues=json.loads(args.queues),
        max_recoveries=1000,
    )
    print("ready", rt.id, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    rt.shutdown(timeout=10)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
