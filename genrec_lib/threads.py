"""How many threads torch computes with: chosen from the cores that are actually free.

A core that another process keeps busy is the worst place for a second OpenMP thread:
torch splits each operation between its threads and waits for the slowest, and the thread
that shares its core with the busy process waits for the scheduler's next time slice,
milliseconds for an operation that needs microseconds. Small-batch training (BPR's 2048 x 128
lookups, a GRU step) then runs several times slower with two threads than with one. On a
2-core laptop or Colab's two vCPUs with a browser, a second notebook or a download running,
that is the common case.

:func:`set_threads` (called by :func:`genrec_lib.results.start_chapter`, so at the top of
every chapter) therefore measures the idle share of the CPUs over a quarter of a second and
gives torch one thread per free core, at least one:

    free = n_cpus * idle_share,      threads = max(1, min(n_usable, floor(free + 1/4)))

An idle 2-core machine gets 2 threads (the larger matrix products of the language-model
chapters gain from the second one); beside one busy process it gets 1. ``GENREC_THREADS``
overrides the choice (``GENREC_THREADS=1``), and so does an explicit ``OMP_NUM_THREADS``.
The choice is made once per call: a process that starts later is not seen (call
:func:`set_threads` again before a long computation).
"""

from __future__ import annotations

import math
import os
import time

#: a core counts as free from three quarters idle: 1.8 free cores give 2 threads, 1.6 give 1
_ROUND_UP_FROM = 0.75


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _cpu_times(stat_path: str = "/proc/stat") -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs from the first line of ``/proc/stat``."""
    with open(stat_path) as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)


def free_cores(interval: float = 0.25, stat_path: str = "/proc/stat") -> float:
    """Cores left idle by every process over the next ``interval`` seconds.

    Read from ``/proc/stat`` twice on Linux; elsewhere from the 1-minute load average, and
    where neither exists every CPU counts as free.
    """
    n = os.cpu_count() or 1
    try:
        idle0, total0 = _cpu_times(stat_path)
        time.sleep(interval)
        idle1, total1 = _cpu_times(stat_path)
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, n - os.getloadavg()[0])
        except (AttributeError, OSError):
            return float(n)
    if total1 <= total0:
        return float(n)
    return n * (idle1 - idle0) / (total1 - total0)


def choose_threads(free: float | None = None) -> int:
    """Threads for torch: ``GENREC_THREADS`` or ``OMP_NUM_THREADS`` when set, else one per free core."""
    for variable in ("GENREC_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value and value != "auto":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{variable}={value!r} is not a thread count: set it to a whole number "
                                 "of at least 1, or to 'auto' (one thread per free core)")
            return int(value)
        if value == "auto":
            break
    if free is None:
        free = free_cores()
    return max(1, min(usable_cpus(), math.floor(free + 1 - _ROUND_UP_FROM)))


def set_threads(n: int | str = "auto") -> int:
    """Set torch's intra-op threads to ``n`` (``"auto"``: :func:`choose_threads`) and return the count."""
    import torch

    if n == "auto":
        n = choose_threads()
    elif isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be 'auto' or a whole number of at least 1, got {n!r}")
    torch.set_num_threads(n)
    return n
