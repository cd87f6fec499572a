"""The benchmark: ``python -m bench [WORKLOAD ...]`` prints one table.

Workloads (see ../shared/design.md, "How it is measured"):

- W1 start latency: 2,000 sequential ``start()`` calls of a trivial flow; p50 and p99 of the call.
- throughput: 2,000 trivial runs started, then all awaited; runs/s.
- W2 throughput: 2,000 runs of 3 steps each, started, then all awaited; runs/s and steps/s,
  the median of five trials (each on a fresh journal) and their range.
- W2-1cpu: the same in a process restricted to one CPU (``taskset -c 0``), for comparison.
- W2-signing: W2 with signed payloads and with signing switched off (trials alternated): what
  the journal's HMACs cost.
- W3 fan-out: one parent starts 500 children (1 step each), gathers and sums; seconds.
- W4 waiting: 1,000 runs each sleeping 3 s durably (and 10,000), in a fresh process each:
  wall seconds until all complete, peak RSS, peak thread count.
- W5 recovery: 100 runs of five 50 ms steps (concurrency 8) in a process killed with SIGKILL
  after about 1.5 s; a new process opens the journal: do all complete, how many steps ran
  twice (only those in flight at the kill may), and the seconds from reopen to all done.
- W2 x 3 processes: three processes on one file each start 700 runs of 3 steps at once
  and await them; total runs/s.
- takeover: seconds from a runtime's SIGKILL (same host: its dead pid is seen at the next
  poll) or SIGSTOP (its 2 s lease must run out) until another runtime takes its runs over.
- limit: raw sqlite3 on the same disk, same pragmas (WAL, synchronous=NORMAL): single-row
  commits/s and rows/s in 100-row transactions. The ceiling any journal on this disk has.

Each workload uses a fresh journal in a temporary folder under ``--dir`` (default: the
system's temp folder). Figures vary between runs by 10-20% on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import actorflow
from bench import flows

Result = list[tuple[str, str, str]]  # (workload, measure, value)


def _journal(folder: str, name: str) -> str:
    path = os.path.join(folder, name + ".db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def w1_start_latency(folder: str) -> Result:
    """2,000 sequential starts of a trivial flow; the call's p50/p99 in microseconds."""
    with actorflow.Runtime(_journal(folder, "w1")) as rt:
        for _ in range(200):  # warm up
            rt.start(flows.noop)
        times = []
        for _ in range(2000):
            t0 = time.perf_counter()
            rt.start(flows.noop)
            times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return [
        ("W1 start latency", "p50 µs", f"{times[len(times) // 2]:.0f}"),
        ("W1 start latency", "p99 µs", f"{times[int(len(times) * 0.99)]:.0f}"),
        ("W1 start latency", "mean µs", f"{statistics.fmean(times):.0f}"),
    ]


def throughput(folder: str) -> Result:
    """2,000 trivial runs started, then awaited."""
    with actorflow.Runtime(_journal(folder, "throughput")) as rt:
        t0 = time.perf_counter()
        handles = [rt.start(flows.noop) for _ in range(2000)]
        for h in handles:
            h.result(timeout=60)
        elapsed = time.perf_counter() - t0
    return [("trivial runs", "runs/s", f"{2000 / elapsed:.0f}")]


def _w2_once(folder: str) -> float:
    """One W2 trial on a fresh journal: seconds to start 2,000 three-step runs and await them all."""
    with actorflow.Runtime(_journal(folder, "w2")) as rt:
        t0 = time.perf_counter()
        handles = [rt.start(flows.three_steps, i) for i in range(2000)]
        ok = all(h.result(timeout=120) == i + 3 for i, h in enumerate(handles))
        elapsed = time.perf_counter() - t0
    assert ok, "W2 returned wrong results"
    return elapsed


W2_TRIALS = 5
SIGNING_TRIALS = 15


def w2_throughput(folder: str) -> Result:
    """2,000 runs of three steps each, started, then all awaited; the median of five trials."""
    rates = sorted(2000 / _w2_once(folder) for _ in range(W2_TRIALS))
    median = rates[len(rates) // 2]
    return [
        ("W2 throughput", f"runs/s (3 steps each), median of {W2_TRIALS}", f"{median:.0f}"),
        ("W2 throughput", f"runs/s, slowest to fastest of the {W2_TRIALS}", f"{rates[0]:.0f}-{rates[-1]:.0f}"),
        ("W2 throughput", "steps/s (median)", f"{3 * median:.0f}"),
    ]


def w2_signing(folder: str) -> Result:
    """W2 with signed payloads (the default) and with signing switched off, trials alternated.

    Signing off exists only here: the benchmark replaces the signer's two methods with
    ones that pass values through, to measure what the HMACs cost.
    """
    from actorflow.signing import Signer

    signed, unsigned = [], []
    seal, unseal = Signer.seal, Signer.unseal
    def unsigned_once() -> float:
        Signer.seal = lambda self, value, *a, **k: value  # type: ignore[method-assign]
        Signer.unseal = lambda self, value, *a, **k: value  # type: ignore[method-assign]
        try:
            return 2000 / _w2_once(folder)
        finally:
            Signer.seal, Signer.unseal = seal, unseal  # type: ignore[method-assign]

    for trial in range(SIGNING_TRIALS):  # alternated, each first every other time
        if trial % 2:
            unsigned.append(unsigned_once())
            signed.append(2000 / _w2_once(folder))
        else:
            signed.append(2000 / _w2_once(folder))
            unsigned.append(unsigned_once())
    on, off = statistics.median(signed), statistics.median(unsigned)
    return [
        ("W2, signing on/off", f"runs/s signed, median of {SIGNING_TRIALS} (alternated)", f"{on:.0f}"),
        ("W2, signing on/off", f"runs/s unsigned, median of {SIGNING_TRIALS} (alternated)", f"{off:.0f}"),
        ("W2, signing on/off", "cost of signing", f"{(off - on) / off * 100:.1f}%"),
    ]


def w2_one_cpu(folder: str) -> Result:
    """W2 in a process restricted to one CPU (as ``taskset -c 0`` does): the GIL's hand-offs stay on it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "W2", "--dir", folder],
        capture_output=True, text=True, env=env, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    ).stdout  # fmt: skip
    median = next(line.split("|")[3].strip() for line in out.splitlines() if "median of" in line)
    return [("W2 throughput, one CPU", f"runs/s, process pinned to one CPU, median of {W2_TRIALS}", median)]


def w3_fan_out(folder: str) -> Result:
    """One parent starts 500 children of one step each, gathers, sums."""
    with actorflow.Runtime(_journal(folder, "w3")) as rt:
        rt.start(flows.fan_out_sum, 10).result(timeout=60)  # warm up
        t0 = time.perf_counter()
        total = rt.start(flows.fan_out_sum, 500).result(timeout=120)
        elapsed = time.perf_counter() - t0
    assert total == sum(range(1, 501)), "W3 summed wrong"
    return [("W3 fan-out", "s for 500 children, gathered", f"{elapsed:.3f}")]


def w4_waiting(folder: str) -> Result:
    """1,000 and 10,000 runs each sleeping 3 s durably, each batch in a fresh process."""
    rows: Result = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for n in (1000, 10000):
        out = subprocess.run(
            [sys.executable, "-m", "bench.w4_child", _journal(folder, f"w4-{n}"), str(n)],
            capture_output=True, text=True, env=env, check=True,
        ).stdout  # fmt: skip
        wall, rss, threads, ok = out.split()
        label = f"W4 waiting ({n:,} runs)"
        rows += [
            (label, "wall s until all complete", f"{float(wall):.2f}" + ("" if ok == "True" else " (WRONG RESULTS)")),
            (label, "peak RSS MB", rss),
            (label, "peak threads", threads),
        ]
    return rows


def w5_recovery(folder: str) -> Result:
    """100 runs of five 50 ms steps; SIGKILL after ~1.5 s; a new process finishes them."""
    journal = _journal(folder, "w5")
    log = os.path.join(folder, "w5.log")
    if os.path.exists(log):
        os.remove(log)
    cmd = [sys.executable, "-m", "bench.w5_child", journal, log]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([*cmd, "start"], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    child.stdout.readline()  # "started": every run is committed
    time.sleep(1.5)  # the workload's own definition: kill about 1.5 s in
    child.send_signal(signal.SIGKILL)
    child.wait()
    with open(log) as f:
        before = f.read().splitlines()
    conn = sqlite3.connect(journal)
    committed = {f"{r}:{s}" for r, s in conn.execute("SELECT run_id, seq FROM steps WHERE state='completed'")}
    in_flight = conn.execute("SELECT count(*) FROM steps WHERE state='running'").fetchone()[0]
    conn.close()
    out = subprocess.run([*cmd, "recover"], capture_output=True, text=True, env=env, check=True).stdout
    _, seconds, count, correct = out.split()
    with open(log) as f:
        after = f.read().splitlines()[len(before):]
    again = [s for s in after if s in set(before)]
    repeated_committed = [s for s in after if s in committed]
    return [
        ("W5 recovery", "all 100 complete, results right", "yes" if count == "100" and correct == "True" else "NO"),
        ("W5 recovery", "steps done before the kill", f"{len(before)}"),
        ("W5 recovery", "steps in flight at the kill", f"{in_flight}"),
        ("W5 recovery", "steps re-executed", f"{len(again)}"),
        ("W5 recovery", "committed steps re-executed", f"{len(repeated_committed)}"),
        ("W5 recovery", "s from reopen to all done", f"{float(seconds):.2f}"),
        ("W5 recovery", "of which remaining step time (s)", f"{(500 - len(before)) * 0.05 / 8:.2f}"),
    ]


def _proc(journal: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.proc_worker", journal, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().startswith("ready")
    return child


def w2_three_processes(folder: str) -> Result:
    """W2 run by three processes on one file at once: 3 x 700 runs of 3 steps; total runs/s."""
    journal = _journal(folder, "w2x3")
    procs = [_proc(journal, "w2", "700") for _ in range(3)]
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=600)
    wall = time.perf_counter() - t0
    return [("W2 x 3 processes", "total runs/s (3 steps each)", f"{2100 / wall:.0f}")]


def takeover(folder: str) -> Result:
    """Seconds from the death (or pause) of a runtime to another one taking over its runs."""
    rows: Result = []
    for how, sig, lease in (("SIGKILL, same host", signal.SIGKILL, "10"), ("SIGSTOP, lease 2 s", signal.SIGSTOP, "2")):
        journal = _journal(folder, f"takeover-{sig}")
        victim = _proc(journal, "hold", "40", lease)
        assert victim.stdout is not None
        victim.stdout.readline()  # "started"
        taker = _proc(journal, "serve", "0", lease)
        conn = sqlite3.connect(journal)
        t0 = time.perf_counter()
        victim.send_signal(sig)
        if sig == signal.SIGKILL:
            victim.wait()  # reaped, as a service manager does: a zombie's pid still exists
        while not conn.execute("SELECT count(*) FROM history WHERE kind='taken_over'").fetchone()[0]:
            time.sleep(0.005)  # the benchmark watches the journal from outside
        elapsed = time.perf_counter() - t0
        conn.close()
        if sig == signal.SIGSTOP:
            victim.send_signal(signal.SIGCONT)
        victim.kill()
        victim.wait()
        taker.communicate(timeout=120)
        rows.append(("takeover", f"s after {how}", f"{elapsed:.2f}"))
    return rows


def limit(folder: str) -> Result:
    """Raw sqlite3 commits on the same disk with the journal's pragmas."""
    path = _journal(folder, "limit")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    row = ("x" * 30, "y" * 200)
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (a, b) VALUES (?, ?)", row)
        conn.execute("COMMIT")
    single = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n // 100):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (a, b) VALUES (?, ?)", [row] * 100)
        conn.execute("COMMIT")
    grouped = n / (time.perf_counter() - t0)
    conn.execute("PRAGMA synchronous=FULL")
    t0 = time.perf_counter()
    for _ in range(500):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (a, b) VALUES (?, ?)", row)
        conn.execute("COMMIT")
    full = 500 / (time.perf_counter() - t0)
    conn.close()
    return [
        ("limit (raw sqlite3)", "single-row commits/s", f"{single:.0f}"),
        ("limit (raw sqlite3)", "rows/s in 100-row commits", f"{grouped:.0f}"),
        ("limit (raw sqlite3)", "single-row commits/s, synchronous=FULL", f"{full:.0f}"),
    ]


WORKLOADS: dict[str, Callable[[str], Result]] = {
    "W1": w1_start_latency,
    "throughput": throughput,
    "W2": w2_throughput,
    "W2-1cpu": w2_one_cpu,
    "W2-signing": w2_signing,
    "W3": w3_fan_out,
    "W4": w4_waiting,
    "W5": w5_recovery,
    "W2x3": w2_three_processes,
    "takeover": takeover,
    "limit": limit,
}


def main(argv: list[str] | None = None) -> None:
    """Run the chosen workloads (all by default) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="which to run (default: all)")
    parser.add_argument("--dir", default=None, help="folder for the journals (default: a temporary one)")
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    chosen = args.workloads or list(WORKLOADS)
    folder = args.dir or tempfile.mkdtemp(prefix="actorflow-bench-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    rows: Result = []
    for name in chosen:
        rows += WORKLOADS[name](folder)
    print(f"actorflow {actorflow.__version__} · Python {platform.python_version()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    width = [max(len(r[i]) for r in rows + [("workload", "measure", "value")]) for i in range(3)]
    print(f"| {'workload'.ljust(width[0])} | {'measure'.ljust(width[1])} | {'value'.rjust(width[2])} |")
    print(f"|{'-' * (width[0] + 2)}|{'-' * (width[1] + 2)}|{'-' * (width[2] + 1)}:|")
    for w, m, v in rows:
        print(f"| {w.ljust(width[0])} | {m.ljust(width[1])} | {v.rjust(width[2])} |")
