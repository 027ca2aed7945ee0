"""The CPU a PostgreSQL + Redis run costs outside the server's own processes: the
PostgreSQL backends serving the run's database, and the run's Redis.

On a 2-core machine every CPU-second these take (and the driver's) is one the workers
cannot use, so two workers can do at most 2w / (w + o) of what one worker pinned to
a core of its own does, where w is the workers' CPU per request and o everyone else's:
the scenarios print both, per request, post or delivery.

A backend is found by its process title (PostgreSQL names the database in it) and read
from /proc/<pid>/stat every `EVERY` seconds, when new processes are looked for too: one
that the pool closes takes its CPU with it, so at most its last sample's worth is
missed (and all of one that lived less than a sample). Redis is the run's own
redis-server (bench.servers.app_database starts one where it is installed), so its CPU
is the run's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
EVERY = 0.05


def process_cpu(pid: int) -> float | None:
    """utime + stime of a process, in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def is_backend_of(pid: int, database: str) -> bool:
    """Whether process `pid` is a PostgreSQL backend connected to `database` (its
    title names it)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return title.startswith(b"postgres: ") and f" {database} ".encode() in title


class SharedCpu:
    """Samples, while running, the CPU of `database`'s backends and of the process
    `redis_pid`; `seconds()` is each one's CPU since `start()`."""

    def __init__(self, database: str | None, redis_pid: int | None) -> None:
        self.database = database
        self.redis_pid = redis_pid
        self._backends: dict[int, list[float]] = {}  # pid -> [at start, latest]
        self._looked_at: set[int] = set()  # every process seen, ours or not
        self._redis_start = 0.0
        self._task: asyncio.Task[None] | None = None
        # This process's CPU spent sampling: not the driver's work, so the scenarios
        # take it off the driver's figure.
        self.own_cpu = 0.0

    def _look_for_backends(self, born_since_start: bool) -> None:
        """Backends not seen before (only new processes' titles are read)."""
        if self.database is None:
            return
        for name in os.listdir("/proc"):
            if not name.isdigit() or (pid := int(name)) in self._looked_at:
                continue
            self._looked_at.add(pid)
            if is_backend_of(pid, self.database) and (used := process_cpu(pid)) is not None:
                # One that started since counts from nothing: its start-up is the run's.
                self._backends[pid] = [0.0 if born_since_start else used, used]

    def _sample(self) -> None:
        for pid, values in self._backends.items():
            if (used := process_cpu(pid)) is not None:
                values[1] = used

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(EVERY)
            started = time.process_time()
            self._look_for_backends(True)
            self._sample()
            self.own_cpu += time.process_time() - started

    def start(self) -> None:
        self._backends, self._looked_at, self.own_cpu = {}, set(), 0.0
        self._look_for_backends(False)
        self._redis_start = self._redis_cpu()
        self._task = asyncio.create_task(self._run())

    def _redis_cpu(self) -> float:
        if self.redis_pid is None:
            return 0.0
        return process_cpu(self.redis_pid) or 0.0

    def seconds(self) -> dict[str, float]:
        """CPU-seconds since `start()`: {"postgres": ..., "redis": ...}."""
        self._look_for_backends(True)
        self._sample()
        return {
            "postgres": sum(latest - first for first, latest in self._backends.values()),
            "redis": self._redis_cpu() - self._redis_start,
        }

    async def stop(self) -> dict[str, float]:
        used = self.seconds()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return used
