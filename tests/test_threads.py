"""The thread count a chapter computes with (genrec_lib.threads): chosen from the free cores."""

import pytest
import torch

from genrec_lib import threads


def _stat(tmp_path, idle, total, name="stat"):
    """A one-line /proc/stat whose idle share is idle/total."""
    path = tmp_path / name
    busy = total - idle
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n")
    return str(path)


def test_free_cores_reads_the_idle_share_between_two_readings(tmp_path, monkeypatch):
    # the real file parses: idle + iowait out of the first eight fields
    assert threads._cpu_times(_stat(tmp_path, 30, 100)) == (30, 100)
    readings = iter([(100, 1000), (100 + 250, 1000 + 1000)])  # a quarter of the CPU time idle in between
    monkeypatch.setattr(threads, "_cpu_times", lambda path: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.free_cores(interval=0) == pytest.approx(1.0)


@pytest.mark.parametrize("free, expected", [(2.0, 2), (1.8, 2), (1.6, 1), (1.0, 1), (0.1, 1), (7.9, 2)])
def test_one_thread_per_free_core_at_least_one_at_most_the_usable_cpus(free, expected, monkeypatch):
    monkeypatch.delenv("GENREC_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    assert threads.choose_threads(free) == expected


def test_the_environment_overrides_the_choice_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("GENREC_THREADS", "1")
    assert threads.choose_threads(2.0) == 1  # GENREC_THREADS first
    monkeypatch.delenv("GENREC_THREADS")
    assert threads.choose_threads(0.2) == 2  # an explicit OMP_NUM_THREADS is a deliberate choice
    monkeypatch.setenv("GENREC_THREADS", "auto")
    assert threads.choose_threads(0.2) == 1  # auto ignores OMP_NUM_THREADS
    monkeypatch.setenv("GENREC_THREADS", "two")
    with pytest.raises(ValueError, match="GENREC_THREADS='two' is not a thread count"):
        threads.choose_threads(2.0)
    with pytest.raises(ValueError, match="threads must be 'auto' or a whole number"):
        threads.set_threads(0)


def test_start_chapter_sets_and_records_the_thread_count(tmp_path, monkeypatch):
    from genrec_lib import results

    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    before = torch.get_num_threads()
    try:
        results.start_chapter("99_threads", threads=1)
        assert torch.get_num_threads() == 1
        assert results.read("99_threads")["chapter.threads"] == 1
    finally:
        torch.set_num_threads(before)
