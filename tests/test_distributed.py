"""Two-process data-parallel training (DDP over gloo, on the CPU) finishes and learns.

The training loop used to give process ``p`` the batches with ``index % 2 == p``: with an
odd number of batches one process took a step more than the other, and its gradient
all-reduce waited forever. Here the epoch has 7 batches (943 ML-100K users in batches of
150). The two-process run must finish within the timeout, and its best validation NDCG@10
must match a one-process run with the same effective batch (300 users, 4 steps an epoch)
within the sampling noise of the metric: three standard errors of the per-user NDCG@10.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from genrec_lib.data import load_split
from genrec_lib.evaluation import evaluate
from genrec_lib.models import get_model

CONFIG = dict(hidden=64, latent=32, learning_rate=3e-3, epochs=40, eval_every=5, patience=1000, seed=7)
PER_PROCESS_BATCH, PROCESSES = 150, 2
TIMEOUT_S = 300  # about 30 s of CPU; generous for a busy machine

WORKER = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from accelerate import PartialState
    from genrec_lib.data import load_split
    from genrec_lib.models import get_model

    config = json.loads(sys.argv[2])
    split = load_split("ml-100k")
    model = get_model("multdae", **config).fit(split, device="cpu")
    state = PartialState()
    if state.is_main_process:
        from genrec_lib.evaluation import evaluate

        check = evaluate(model, split, "valid", ks=(10,), metrics=("ndcg",))["ndcg@10"]
        json.dump({"processes": state.num_processes, "backend": str(state.backend), "check": check,
                   "best": model.history_.best_score, "epochs": model.history_.epochs}, open(sys.argv[1], "w"))
""")


@pytest.fixture(scope="module")
def split():
    return load_split("ml-100k")


def test_two_processes_with_an_odd_batch_count_finish_and_match_one_process(split, tmp_path):
    n_batches = math.ceil(split.n_users / PER_PROCESS_BATCH)
    assert n_batches % PROCESSES == 1  # the uneven case that used to hang
    script, out = tmp_path / "worker.py", tmp_path / "ddp.json"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}",
               str(script), str(out), json.dumps(dict(CONFIG, batch_size=PER_PROCESS_BATCH))]
    # A session of its own, so that a hung run's workers are ended with the launcher.
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        _, stderr = launcher.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        pytest.fail(f"two-process training did not finish in {TIMEOUT_S} s: the processes took different numbers of steps")
    assert launcher.returncode == 0, stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert ddp["processes"] == PROCESSES and ddp["backend"] == "gloo"

    torch.set_num_threads(1)
    single = get_model("multdae", **CONFIG, batch_size=PER_PROCESS_BATCH * PROCESSES).fit(split, device="cpu")
    per_user = evaluate(single, split, "valid", ks=(10,), metrics=("ndcg",)).per_user["ndcg@10"]
    assert abs(single.history_.best_score - float(per_user.mean())) < 1e-9  # the restored weights
    tolerance = 3 * per_user.std(ddof=1) / np.sqrt(len(per_user))
    assert abs(ddp["best"] - single.history_.best_score) <= tolerance, (ddp["best"], single.history_.best_score, tolerance)
    # The gathered validation covered every validation user once: its mean is what one
    # process's evaluator gives for the restored (best) weights.
    assert abs(ddp["check"] - ddp["best"]) < 1e-6
    assert [e["epoch"] for e in ddp["epochs"] if "valid_ndcg@10" in e] == list(range(5, 41, 5))
