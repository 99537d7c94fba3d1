"""Cost against data size: fit and evaluation seconds and peak memory on synthetic MovieLens-like data.

    python benchmarks/scaling.py --sizes 0.1M 1M [--models ease itemknn bpr multvae diffrec sasrec]

Each size has MovieLens's shape (users x items of ML-100K, ML-1M, ML-10M, ML-20M), user
activity drawn from a log-normal and item popularity from a Zipf law, both fitted by eye
to MovieLens (a few heavy users, a long tail of rarely rated films), at least 5
interactions per user (repeated pairs are redrawn), distinct timestamps (so sequential
models have sequences).

Every (size, model) runs in its own process with one thread, so that its peak resident
memory (``ru_maxrss``) is its own; seconds are recorded as wall time and as CPU time
(``time.process_time``, the measure to trust on a shared machine). For a trained model one
epoch = drawing all of its batches (timed in full) + its training steps, of which the first
``--batches`` + 1 are run and the rest extrapolated from the mean step after the first (a
full epoch at 20M would take hours on 2 cores); building the model is timed apart
(``build_cpu_seconds``). EASE and ItemKNN are fitted in full. Evaluation ranks the
full catalogue: a first call on 16 users pays the one-off costs (the split's test-time
matrices, the model's first call; ``eval_setup_cpu_seconds``, counted once), then
``--eval-users`` users are timed and their per-user cost extrapolated to the other users.
The record says which numbers are extrapolated. For EASE and ItemKNN it also gives the
bytes per item pair their fits measured and the largest catalogue that 24 GB would fit by
that measure (``item_matrix_limits``: an estimate, computed). Results: ``genrec_lib/records/scaling.json`` (one
entry per run, with machine and versions) and ``benchmarks/scaling.png`` (log-log, slopes fitted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the library of this checkout, also in the per-run child processes

#: name -> (interactions, users, items): MovieLens's shapes.
SIZES = {"0.1M": (100_000, 943, 1_682), "1M": (1_000_209, 6_040, 3_706),
         "10M": (10_000_054, 69_878, 10_677), "20M": (20_000_263, 138_493, 26_744)}
MODELS = ("ease", "itemknn", "bpr", "multvae", "diffrec", "sasrec")
#: Users of the first, untimed-per-user evaluation call that pays the one-off costs.
WARM_USERS = 16
#: The record ships as package data (like the other benchmark records), the plot beside this script.
RECORD = Path(__file__).resolve().parent.parent / "genrec_lib" / "records" / "scaling.json"
PLOT = Path(__file__).resolve().parent / "scaling.png"


def _pair_keys(n_interactions: int, n_users: int, n_items: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """Sorted unique ``user * n_items + item`` keys: log-normal activity (>= 5 each), Zipf popularity.

    Each round draws every user's shortfall again and keeps the pairs not seen before;
    the new pairs are merged into the sorted keys with one ``searchsorted`` + ``insert``
    (linear in the keys), not a fresh ``union1d`` over all of them each round.
    """
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = 5 + np.floor(activity / activity.sum() * (n_interactions - 5 * n_users)).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = popularity[rng.permutation(n_items)]  # popular ids are not the low ids
    popularity /= popularity.sum()
    keys = np.zeros(0, dtype=np.int64)
    have = np.zeros(n_users, dtype=np.int64)
    for _ in range(20):  # draw, drop repeated pairs, draw each user's shortfall again
        short = counts - have
        if short.sum() == 0:
            break
        users = np.repeat(np.arange(n_users), short)
        new = np.unique(users * n_items + rng.choice(n_items, size=len(users), p=popularity))
        at = np.searchsorted(keys, new)
        seen = at < len(keys)
        seen[seen] = keys[at[seen]] == new[seen]
        new, at = new[~seen], at[~seen]
        keys = np.insert(keys, at, new)
        have += np.bincount(new // n_items, minlength=n_users)
    return keys, rng


def synthetic(n_interactions: int, n_users: int, n_items: int, seed: int = 0, cache: Path | None = None):
    """MovieLens-like Interactions: log-normal activity (>= 5 each), Zipf popularity, no repeated pairs.

    With ``cache`` (a folder), the drawn pairs and timestamps are saved there as ``.npz`` on
    the first call and read back on later ones (every model of a size sees the same data).
    """
    import pandas as pd

    from genrec_lib.data import Interactions

    file = None if cache is None else Path(cache) / f"synthetic-{n_interactions}-{n_users}-{n_items}-{seed}.npz"
    if file is not None and file.is_file():
        stored = np.load(file)
        users, items, stamps = stored["users"], stored["items"], stored["timestamps"]
    else:
        keys, rng = _pair_keys(n_interactions, n_users, n_items, seed)
        users, items = keys // n_items, keys % n_items
        stamps = 1_000_000_000 + rng.permutation(len(users))
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(f".{os.getpid()}.npz")
            np.savez(partial, users=users, items=items, timestamps=stamps)
            os.replace(partial, file)
    frame = pd.DataFrame({"user_id": users + 1, "item_id": items + 1, "rating": 4, "timestamp": stamps})
    item_side = pd.DataFrame({"title": "", "year": 2000, "genres": [[]] * n_items}, index=np.arange(1, n_items + 1))
    user_side = pd.DataFrame(index=np.arange(1, n_users + 1))
    return Interactions.from_frame(frame, item_side, user_side, f"synthetic-{n_interactions}")


def run_one(size: str, model_name: str, batches: int, eval_users: int, cache: Path | None = None,
            device: str = "cpu") -> dict:
    """Fit and evaluate one model on one size in this process; returns its record."""
    import torch

    from genrec_lib.data import make_split
    from genrec_lib.evaluation import evaluate
    from genrec_lib.models import get_model

    torch.set_num_threads(1)
    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Python, torch and the library
    start = time.perf_counter()
    split = make_split(synthetic(*SIZES[size], cache=cache), "random", seed=0)
    record = {"size": size, "model": model_name, "interactions": len(split.dataset), "users": split.n_users,
              "items": split.n_items, "data_seconds": time.perf_counter() - start, "rss_after_imports_mb": imports_mb}
    model = get_model(model_name)
    if hasattr(model, "_device"):
        model._device = torch.device(device)
    record["rss_before_fit_mb"] = _rss_mb(os.getpid())  # imports and the data: what the fit adds is peak - this
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    start, cpu = time.perf_counter(), time.process_time()
    if hasattr(model, "build"):
        from accelerate.utils import send_to_device

        model.build(split)
        model.to(device)
        optimizer = model.configure_optimizer()
        sync()
        record.update(build_seconds=time.perf_counter() - start, build_cpu_seconds=time.process_time() - cpu)
        model.train()
        generator = torch.Generator().manual_seed(0)
        iterator = iter(model.training_batches(split, generator))

        def clock():
            return np.array([time.perf_counter(), time.process_time()])

        # Every batch of one epoch is drawn (and that time counted in full); the first
        # ``batches + 1`` are trained, and the steps of the rest are extrapolated from the
        # mean of the timed ones after the first (which carries one-off costs such as the
        # optimiser's state being allocated).
        draw, steps, per_epoch = np.zeros(2), [], 0
        while True:
            tick = clock()
            batch = next(iterator, None)
            draw += clock() - tick
            if batch is None:
                break
            per_epoch += 1
            if len(steps) <= batches:
                tick = clock()
                loss = model.training_loss(send_to_device(batch, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sync()
                steps.append(clock() - tick)
        steps = np.array(steps)
        per_step = steps[1:].mean(0) if len(steps) > 1 else steps[0]
        epoch = draw + steps.sum(0) + per_step * (per_epoch - len(steps))
        model.eval()
        record.update(fit_seconds=float(epoch[0]), fit_cpu_seconds=float(epoch[1]), fit_extrapolated=len(steps) < per_epoch,
                      draw_cpu_seconds=float(draw[1]), step_cpu_seconds=float(per_step[1]),
                      timed_batches=len(steps), batches_per_epoch=per_epoch, fit_unit="one epoch")
    else:
        model.fit(split)
        sync()
        record.update(fit_seconds=time.perf_counter() - start, fit_cpu_seconds=time.process_time() - cpu,
                      fit_extrapolated=False, fit_unit="full fit")
    users = np.unique(split.test.user)
    sample = np.sort(np.random.default_rng(0).choice(users, min(eval_users, len(users)), replace=False))
    # One-off costs (the split's test-time matrices, built once and cached; the model's first
    # call) are paid once per evaluation, not once per user: a first call on WARM_USERS users
    # pays them and is counted once; the per-user cost comes from the sample after it.
    warm = sample[:WARM_USERS]
    start, cpu = time.perf_counter(), time.process_time()
    evaluate(model, split, "test", ks=(10,), metrics=("ndcg",), users=warm)
    sync()
    setup, setup_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    result = evaluate(model, split, "test", ks=(10,), metrics=("ndcg",), users=sample)
    sync()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    rest = (len(users) - len(warm)) / len(sample)
    record.update(eval_seconds=setup + seconds * rest, eval_cpu_seconds=setup_cpu + cpu_seconds * rest,
                  eval_setup_seconds=setup, eval_setup_cpu_seconds=setup_cpu, eval_warm_users=len(warm),
                  eval_extrapolated=len(sample) < len(users),
                  eval_users=len(sample), test_ndcg10_sample=result["ndcg@10"],
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, device=device)
    if cuda:
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def environment() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "threads": 1, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def plot(records: list[dict], path: Path) -> dict:
    """Log-log plot of fit and evaluation seconds and peak memory against interactions; returns fitted slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slopes = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in zip(axes, ("fit_cpu_seconds", "eval_cpu_seconds", "peak_rss_mb"),
                              ("fit CPU seconds (epoch or full fit)", "evaluation CPU seconds (all users)",
                               "peak RSS (MB)")):
        for model in sorted({r["model"] for r in records}):
            rows = sorted((r["interactions"], r[key]) for r in records if r["model"] == model and r.get(key))
            if not rows:
                continue
            x, y = map(np.array, zip(*rows))
            slope = float(np.polyfit(np.log10(x), np.log10(y), 1)[0]) if len(rows) > 1 else float("nan")
            slopes.setdefault(model, {})[key] = slope
            ax.loglog(x, y, "o-", label=f"{model} (slope {slope:.2f})")
        ax.set_xlabel("interactions")
        ax.set_title(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return slopes


#: Models whose fit holds dense item x item matrices: their memory grows with the catalogue squared.
ITEM_MATRIX_MODELS = ("ease", "itemknn")


def item_matrix_limits(runs: list[dict], memory_gb: float = 24.0) -> dict:
    """Bytes per item pair of EASE's and ItemKNN's fits, and the largest catalogue ``memory_gb`` fits (computed).

    Per model: what the fit added to the process (peak resident memory minus the memory just
    before the fit) divided by items squared, at the largest catalogue it was measured on. The
    largest catalogue is an estimate, ``sqrt((memory - data) / bytes per pair)``, where ``data`` is
    the largest footprint before a fit that any model had at the largest size tried (the imports
    and the data every model of that size holds; a lower bound for a larger size). A measured number
    from one size, extrapolated.
    """
    cpu = [r for r in runs if r.get("device", "cpu") == "cpu"]
    measured = [r for r in cpu if "rss_before_fit_mb" in r]
    tried = max((SIZES[r["size"]][0], r["size"]) for r in measured)[1] if measured else None
    data_mb = max((r["rss_before_fit_mb"] for r in measured if r["size"] == tried), default=None)
    limits = {}
    for model in ITEM_MATRIX_MODELS:
        done = [r for r in cpu if r["model"] == model and "error" not in r and "rss_before_fit_mb" in r]
        if not done or data_mb is None:
            continue
        largest = max(done, key=lambda r: r["items"])
        per_pair = (largest["peak_rss_mb"] - largest["rss_before_fit_mb"]) * 2**20 / largest["items"] ** 2
        limits[model] = {"bytes_per_item_pair": per_pair, "measured_at": largest["size"],
                         "measured_items": largest["items"], "memory_gb": memory_gb, "data_size": tried,
                         "data_mb": data_mb, "largest_items_estimated": int(np.sqrt(
                             (memory_gb * 2**30 - data_mb * 2**20) / per_pair))}
        for r in cpu:  # each failed run says what it would have needed, by the same estimate
            if r["model"] == model and "error" in r:
                items = SIZES[r["size"]][2]
                r["estimate"] = {"bytes_per_item_pair": per_pair, "measured_at": largest["size"],
                                 "items": items, "needed_gb_estimated": (data_mb * 2**20 + per_pair * items**2) / 2**30,
                                 f"largest_items_in_{memory_gb:g}_gb_estimated": limits[model]["largest_items_estimated"]}
    return limits


def _item_matrix_need_gb(runs: list[dict], size: str, model: str, device: str) -> float | None:
    """EASE's or ItemKNN's estimated peak at ``size`` from its bytes per item pair at a smaller measured size.

    The data's footprint is the largest measured before a fit at ``size``, or, where no run of
    ``size`` was measured, at the largest smaller size (then the estimate is a lower bound).
    None for the other models, or when no smaller size of the model was measured.
    """
    if model not in ITEM_MATRIX_MODELS or device != "cpu":
        return None
    smaller = [r for r in runs if "error" not in r and r.get("device", "cpu") == "cpu" and r["model"] == model
               and "rss_before_fit_mb" in r and SIZES[r["size"]][0] < SIZES[size][0]]
    footprints = [(SIZES[r["size"]][0], r["rss_before_fit_mb"]) for r in runs if "rss_before_fit_mb" in r
                  and SIZES[r["size"]][0] <= SIZES[size][0]]
    if not smaller or not footprints:
        return None
    largest = max(smaller, key=lambda r: r["items"])
    per_pair = (largest["peak_rss_mb"] - largest["rss_before_fit_mb"]) * 2**20 / largest["items"] ** 2
    return (max(footprints)[1] * 2**20 + per_pair * SIZES[size][2] ** 2) / 2**30


def table(saved: dict, device: str = "cpu") -> str:
    """The record as a Markdown table (model x size), its slopes and its failures: for benchmarks/README.md."""
    order = {size: i for i, size in enumerate(SIZES)}
    runs = sorted((r for r in saved["runs"] if r.get("device", "cpu") == device),
                  key=lambda r: (MODELS.index(r["model"]), order[r["size"]]))
    lines = ["| model | size | users x items | fit CPU s | fit unit | build CPU s | eval CPU s (all users) "
             "| peak RSS GB |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        users, items = SIZES[r["size"]][1:]
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | {users:,} x {items:,} | not measured: {r['error']} | | | | |")
            continue
        unit = ("full fit" if r["fit_unit"] == "full fit" else
                f"epoch ({r['timed_batches']} of {r['batches_per_epoch']:,} batches trained)")
        build = f"{r['build_cpu_seconds']:.1f}" if "build_cpu_seconds" in r else ""
        lines.append(f"| {r['model']} | {r['size']} | {r['users']:,} x {r['items']:,} | {r['fit_cpu_seconds']:.1f} "
                     f"| {unit} | {build} | {r['eval_cpu_seconds']:.1f} | {r['peak_rss_mb'] / 1024:.2f} |")
    slopes = saved.get("slopes", {})
    lines += ["", "| model | slope: fit CPU s | slope: eval CPU s | slope: peak RSS |", "|---|---|---|---|"]
    for model in MODELS:
        if model in slopes:
            s = slopes[model]
            lines.append(f"| {model} | {s['fit_cpu_seconds']:.2f} | {s['eval_cpu_seconds']:.2f} | {s['peak_rss_mb']:.2f} |")
    for model, limit in saved.get("item_matrix_limits", {}).items():
        lines.append(f"\n{model}: {limit['bytes_per_item_pair']:.1f} bytes per item pair measured at {limit['measured_at']} "
                     f"({limit['measured_items']:,} items); beside the {limit['data_mb'] / 1024:.1f} GB held before a fit at "
                     f"{limit['data_size']}, {limit['memory_gb']:g} GB would fit about {limit['largest_items_estimated']:,} "
                     f"items (computed, an estimate).")
    return "\n".join(lines)


def _rss_mb(pid: int) -> float:
    """Resident memory of a running process (Linux ``/proc``), 0 where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(command: list[str], env: dict, timeout: int, limit_mb: float) -> tuple[dict | None, str | None]:
    """Run one (size, model) process; kill it past ``timeout`` seconds or ``limit_mb`` resident memory."""
    started = time.perf_counter()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        peak = 0.0
        while child.poll() is None:
            peak = max(peak, _rss_mb(child.pid))
            if peak > limit_mb or time.perf_counter() - started > timeout:
                child.kill()
                child.wait()
                reason = (f"killed at {peak:.0f} MB resident, over the {limit_mb:.0f} MB limit" if peak > limit_mb
                          else f"over {timeout} s")
                return None, reason + f" ({time.perf_counter() - started:.0f} s)"
            time.sleep(0.2)
        out, err = child.communicate()
    if child.returncode != 0:
        lines = err.strip().splitlines() or ["no output"]
        return None, lines[-1][:300]
    return json.loads(out.strip().splitlines()[-1]), None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["0.1M", "1M"], choices=list(SIZES))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", type=int, default=30, help="training batches timed per trained model")
    parser.add_argument("--eval-users", type=int, default=2048)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per (size, model) run")
    parser.add_argument("--memory-limit-gb", type=float, default=8.0,
                        help="kill a (size, model) run whose resident memory passes this (recorded as its error)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda times are synchronised)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "genrec-scaling",
                        help="folder for the synthetic datasets (.npz), drawn once per size")
    parser.add_argument("--record", type=Path, default=RECORD, help="JSON record (runs are merged into it)")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--merge", nargs="+", type=Path, metavar="RECORD",
                        help="only merge these records' runs (written in parallel) into --record, re-plot, and exit")
    parser.add_argument("--replot", action="store_true", help="only recompute the slopes, limits and plot from the record")
    parser.add_argument("--table", action="store_true", help="print the record as Markdown (benchmarks/README.md) and exit")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.batches, args.eval_users, args.cache, args.device)))
        return 0
    out = args.record
    saved = json.loads(out.read_text()) if out.is_file() else {"environment": environment(), "runs": []}
    if args.table:
        print(table(saved, args.device))
        return 0
    if args.replot:
        args.sizes = args.models = []
    if args.merge:
        for other in args.merge:
            runs = json.loads(other.read_text())["runs"]
            keys = {(r["size"], r["model"], r.get("device", "cpu")) for r in runs}
            saved["runs"] = [r for r in saved["runs"] if (r["size"], r["model"], r.get("device", "cpu")) not in keys] + runs
        args.sizes = args.models = []
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for size in args.sizes:
        for model in args.models:
            command = [sys.executable, __file__, "--one", size, model, "--batches", str(args.batches),
                       "--eval-users", str(args.eval_users), "--cache", str(args.cache), "--device", args.device]
            need_gb = _item_matrix_need_gb(saved["runs"], size, model, args.device)
            if need_gb is not None and need_gb > args.memory_limit_gb:
                record, error = None, (f"not run: its item x item matrices and the data need at least {need_gb:.1f} GB "
                                       f"by the bytes per item pair measured at a smaller size (an estimate), over "
                                       f"the {args.memory_limit_gb:g} GB limit per run")
            else:
                record, error = run_child(command, env, args.timeout, args.memory_limit_gb * 1024)
            if error is not None:
                record = {"size": size, "model": model, "device": args.device, "error": error}
            if out.is_file():  # runs another invocation wrote meanwhile are kept
                saved = json.loads(out.read_text())
            saved["runs"] = [r for r in saved["runs"] if (r["size"], r["model"], r.get("device", "cpu"))
                             != (size, model, args.device)] + [record]
            saved["environment"] = environment()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(saved, indent=1))
            print(json.dumps(record), flush=True)
    if out.is_file() and not args.merge:
        saved = json.loads(out.read_text())
    saved["slopes"] = plot([r for r in saved["runs"] if "error" not in r and r.get("device", "cpu") == args.device],
                           args.plot)
    saved["item_matrix_limits"] = item_matrix_limits(saved["runs"])
    saved["sizes"] = {name: dict(zip(("interactions", "users", "items"), shape)) for name, shape in SIZES.items()}
    out.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
