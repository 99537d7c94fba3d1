"""Side by side: genrec_lib and RecBole 1.2.1 on exactly the same exported split.

    /work/venvs/recbole/bin/python benchmarks/side_by_side.py --threads 1   # see README.md

1. ``genrec data export`` writes the split (random and loo protocols, one seed) as TSVs.
2. The TSVs become RecBole atomic files (``benchmark_filename``: train/valid/test), so
   RecBole trains, validates and tests on the same interactions as the library.
3. Each model is trained by each library with that library's defaults (the few settings
   changed for RecBole are listed in ``RECBOLE_SETTINGS`` and in the table's notes), in one
   process, with the same thread count, one model after another.
4. Every trained model's test scores for all users are ranked by one evaluator,
   ``reference_eval.py`` (plain numpy, exact expectation over random tie-breaking), under
   both conventions: seen items masked, and not masked. Each library's own evaluator's
   number is kept next to it, in that library's convention.

Writes ``genrec_lib/records/side_by_side.csv`` and ``side_by_side.md`` (package data: chapters read them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import reference_eval as ref  # noqa: E402

# RecBole 1.2.1 (Config.compatibility_settings) re-aliases NumPy names that NumPy 2 removed;
# give it the NumPy 2 equivalents so that it runs next to the library's NumPy.
for _old, _new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if _old not in np.__dict__:
        setattr(np, _old, _new)
# RecBole 1.2.1 measures the length of every token sequence with ``Series.agg(len)``, which
# pandas < 3 applied per element and pandas 3 applies to the whole Series (one number): its
# sequence fields (the loo inputs) then fail to load. Give ``agg(len)`` its old meaning; no
# other call changes (the library never calls ``agg(len)``).
_series_agg = pd.Series.agg


def _agg_len_per_element(self, func=None, *args, **kwargs):
    if func is len:
        return self.map(len)
    return _series_agg(self, func, *args, **kwargs)


pd.Series.agg = pd.Series.aggregate = _agg_len_per_element

GENERAL = {"pop": "Pop", "itemknn": "ItemKNN", "ease": "EASE", "bpr": "BPR", "multvae": "MultiVAE",
           "multdae": "MultiDAE", "diffrec": "DiffRec"}
SEQUENTIAL = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "gru4rec": "GRU4Rec"}
# What we set for RecBole beyond the data: the library's early-stopping metric (RecBole's
# default is MRR@10), no negative sampling for models that do not use it (required by
# RecBole for cross-entropy models), CPU, and quiet output.
RECBOLE_SETTINGS = {"valid_metric": "NDCG@10", "metrics": ["NDCG", "Recall", "Hit", "MRR"], "topk": [10],
                    "use_gpu": False, "show_progress": False, "worker": 0, "reproducibility": True,
                    "log_wandb": False, "save_dataset": False, "save_dataloaders": False}


def export(protocol: str, seed: int, work: Path) -> Path:
    out = work / "export" / protocol
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-m", "genrec_lib.cli", "data", "export", "--dataset", "ml-100k",
                    "--protocol", protocol, "--seed", str(seed), "--out", str(out)], check=True,
                    stdout=subprocess.DEVNULL, env=env)
    return out


def write_atomic(protocol: str, parts: dict, work: Path, max_len: int = 50) -> tuple[Path, str]:
    """RecBole atomic files for the exported split: plain interactions (random) or, for
    loo, one row per prediction with its input sequence (RecBole's benchmark format)."""
    name = f"genrec-{protocol}"
    folder = work / "recbole" / name
    folder.mkdir(parents=True, exist_ok=True)
    if protocol == "random":
        for part, frame in parts.items():
            frame.rename(columns={"user_id": "user_id:token", "item_id": "item_id:token", "rating": "rating:float",
                                  "timestamp": "timestamp:float"}).to_csv(folder / f"{name}.{part}.inter", sep="\t", index=False)
        return folder.parent, name
    # Each user's rows are exported in time order (ties as the split broke them).
    train = parts["train"]
    rows = {"train": [], "valid": [], "test": []}
    for user, items in train.groupby("user_id", sort=False)["item_id"]:
        items = items.to_numpy()
        for t in range(1, len(items)):
            rows["train"].append((user, items[max(0, t - max_len):t], items[t]))
    for part, known in (("valid", train), ("test", pd.concat([train, parts["valid"]]))):
        held = parts[part]
        inputs = ref.strict_input(known, held)
        sequences = {u: g["item_id"].to_numpy() for u, g in inputs.groupby("user_id", sort=False)}
        for user, item in zip(held["user_id"], held["item_id"]):
            rows[part].append((user, sequences.get(user, np.array([], dtype=int))[-max_len:], item))
    for part, records in rows.items():
        frame = pd.DataFrame({"user_id:token": [r[0] for r in records],
                              "item_id_list:token_seq": [" ".join(map(str, r[1])) for r in records],
                              "item_id:token": [r[2] for r in records]})
        frame.to_csv(folder / f"{name}.{part}.inter", sep="\t", index=False)
    return folder.parent, name


class Truth:
    """Users, items, seen and held-out test items from the exported TSVs (original ids)."""

    def __init__(self, parts: dict):
        everything = pd.concat(parts.values())
        self.user_ids = np.sort(everything["user_id"].unique())
        self.item_ids = np.sort(everything["item_id"].unique())
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {v: i for i, v in enumerate(self.item_ids)}
        shape = (len(self.user_ids), len(self.item_ids))
        self.seen = ref.dense(pd.concat([parts["train"], parts["valid"]]), self.user_index, self.item_index, shape)
        self.targets = ref.dense(parts["test"], self.user_index, self.item_index, shape)

    def metrics(self, scores: np.ndarray) -> dict:
        out = {}
        for convention, seen in (("masked", self.seen), ("unmasked", np.zeros_like(self.seen))):
            result = ref.expected_metrics(scores, seen, self.targets, k=10)
            for name in ("ndcg@10", "recall@10", "hit@10"):
                out[f"{convention}.{name}"] = result[name][0]
        return out


# ----- genrec_lib ------------------------------------------------------------------------------

def _warm_up() -> None:
    """Pay one-off imports before any timer starts: the first ``torch.optim.Adam`` imports
    ``torch._dynamo`` (seconds), and the training loop imports ``accelerate``. RecBole builds
    its optimizer before its ``fit`` is timed, so the library's first model must not pay them
    inside its ``fit``."""
    import accelerate  # noqa: F401
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def run_genrec(name: str, protocol: str, seed: int, truth: Truth, device: str = "cpu") -> dict:
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation import evaluate
    from genrec_lib.evaluation.ranking import user_batches
    from genrec_lib.models import MODELS
    from genrec_lib.training import seed_everything

    split = load_split("ml-100k", protocol, seed)
    _warm_up()
    seed_everything(seed)
    from genrec_lib.models.base import TrainableRecommender

    trainable = issubclass(MODELS[name], TrainableRecommender)
    # the trained models take the device at fit; the closed-form ones (EASE, ItemKNN) at construction; Pop has none
    model = MODELS[name]() if trainable or name == "pop" else MODELS[name](device=device)
    start = time.perf_counter()
    model.fit(split, device=device) if trainable else model.fit(split)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    own = evaluate(model, split, "test", ks=(10,))
    eval_seconds = time.perf_counter() - start
    users = np.arange(split.n_users)
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model.score(batch).float().cpu() for _, batch in
                            user_batches(split, "test", users, 1024, model.max_seq_len, model.device)]).numpy()
    # Reorder rows and columns from the library's dense indices to the export's sorted ids.
    rows = np.array([truth.user_index[u] for u in split.dataset.user_ids])
    cols = np.array([truth.item_index[i] for i in split.dataset.item_ids])
    aligned = np.empty_like(scores)
    aligned[np.ix_(rows, cols)] = scores
    history = getattr(model, "history_", None)
    return {"library": "genrec_lib", "fit_s": fit_seconds, "eval_s": eval_seconds,
            "own.ndcg@10": own["ndcg@10"], "own.convention": "masked",
            "epochs": len(history.epochs) if history else None, **truth.metrics(aligned)}


# ----- RecBole ---------------------------------------------------------------------------------

def _input_history(model, matrix, device):
    """Give a RecBole general model ``matrix`` (users x items, internal ids) as its input."""
    import scipy.sparse as sp
    import torch

    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if hasattr(model, "history_item_id"):  # autoencoders and DiffRec read these padded rows
        width = max(int(np.diff(matrix.indptr).max()), 1)
        ids = np.zeros((matrix.shape[0], width), dtype=np.int64)
        values = np.zeros((matrix.shape[0], width), dtype=np.float32)
        for u in range(matrix.shape[0]):
            row = matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]]
            ids[u, :len(row)], values[u, :len(row)] = row, 1.0
        model.history_item_id = torch.from_numpy(ids).to(device)
        model.history_item_value = torch.from_numpy(values).to(device)
    if type(model).__name__ == "EASE":
        model.interaction_matrix = matrix
    if type(model).__name__ == "ItemKNN":
        model.pred_mat = matrix.dot(model.w).tolil()


def run_recbole(name: str, protocol: str, seed: int, data_path: Path, dataset: str, truth: Truth, work: Path,
                epochs: int | None, device: str = "cpu") -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    settings = dict(RECBOLE_SETTINGS, data_path=str(data_path), benchmark_filename=["train", "valid", "test"],
                    seed=seed, checkpoint_dir=str(work / "saved"), load_col=None, use_gpu=device == "cuda")
    if name != "BPR":
        settings["train_neg_sample_args"] = None
    if protocol == "loo":
        settings["eval_args"] = {"order": "TO", "mode": "full", "group_by": "user"}
    if epochs is not None:
        settings["epochs"] = epochs
    config = Config(model=name, dataset=dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    start = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds = time.perf_counter() - start
    checkpoint = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    start = time.perf_counter()
    own = trainer.evaluate(test_data, load_best_model=False)
    eval_seconds = time.perf_counter() - start
    epochs_run = len(getattr(trainer, "train_loss_dict", {})) or None
    # All users' test scores, as the library's models get them: input = train + valid.
    uid, iid = data.uid_field, data.iid_field
    user_tokens = data.field2id_token[uid]
    item_tokens = data.field2id_token[iid]
    if protocol == "random":
        known = pd.concat([pd.read_csv(data_path / dataset / f"{dataset}.{p}.inter", sep="\t") for p in ("train", "valid")])
        rows = known["user_id:token"].astype(str).map(data.field2token_id[uid]).to_numpy()
        cols = known["item_id:token"].astype(str).map(data.field2token_id[iid]).to_numpy()
        import scipy.sparse as sp

        matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(data.user_num, data.item_num))
        _input_history(model, matrix, config["device"])
    scores_by_user = {}
    model.eval()
    with torch.no_grad():
        for batch in test_data:
            interaction = batch[0].to(config["device"])
            scores = model.full_sort_predict(interaction).view(len(interaction), -1).float().cpu().numpy()
            for u, row in zip(interaction[uid].cpu().numpy(), scores):
                scores_by_user[int(user_tokens[u])] = row
    aligned = np.full(truth.seen.shape, -np.inf)
    cols = np.array([truth.item_index.get(int(t), -1) if t != "[PAD]" else -1 for t in item_tokens])
    keep = cols >= 0
    for user, row in scores_by_user.items():
        aligned[truth.user_index[user], cols[keep]] = row[keep]
    return {"library": "RecBole 1.2.1", "fit_s": fit_seconds, "eval_s": eval_seconds,
            "own.ndcg@10": own["ndcg@10"], "own.convention": "unmasked" if protocol == "loo" else "masked",
            "epochs": epochs_run, **truth.metrics(aligned)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=list(GENERAL) + list(SEQUENTIAL))
    parser.add_argument("--libraries", nargs="*", default=["genrec_lib", "recbole"])
    parser.add_argument("--recbole-seq-epochs", type=int, default=None,
                        help="cap RecBole's epochs for the sequential models (default: RecBole's 300)")
    parser.add_argument("--work", default="/tmp/genrec-side-by-side")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both libraries train and score (the same for both)")
    parser.add_argument("--out", default=str(HERE.parent / "genrec_lib" / "records"),
                        help="folder for the CSV and Markdown tables (default: the library's package data, which chapters read)")
    parser.add_argument("--note", default="", help="free text for the table (e.g. machine load)")
    parser.add_argument("--merge-from", nargs="*", default=None, metavar="FOLDER",
                        help="only merge the tables in these folders (other runs' --out) into --out, by (protocol, "
                             "model, library), and rewrite the Markdown; trains nothing")
    args = parser.parse_args()
    if args.merge_from is not None:
        merge_folders(args.merge_from, Path(args.out).resolve())
        return
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/ and log_tensorboard/ into the working directory
    args.out = str(Path(args.out).resolve()) if Path(args.out).is_absolute() else str((HERE.parent / args.out).resolve())
    rows = []
    load = os.getloadavg()
    run = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    for protocol, names in (("random", GENERAL), ("loo", SEQUENTIAL)):
        chosen = [m for m in args.models if m in names]
        if not chosen:
            continue
        folder = export(protocol, args.seed, work)
        parts = ref.read_tsv_split(folder)
        truth = Truth(parts)
        data_path, dataset = write_atomic(protocol, parts, work)
        for name in chosen:
            for library in args.libraries:
                print(f"{protocol} {name} {library} ...", flush=True)
                if library == "genrec_lib":
                    row = run_genrec(name, protocol, args.seed, truth, args.device)
                else:
                    epochs = args.recbole_seq_epochs if name in SEQUENTIAL else None
                    row = run_recbole(names[name], protocol, args.seed, data_path, dataset, truth, work, epochs, args.device)
                    if epochs is not None:
                        row["notes"] = f"epochs capped at {epochs}"
                rows.append({"protocol": protocol, "model": name, "run": run, **row})
                print(json.dumps(rows[-1]), flush=True)
                write_tables(rows, args, run, load)  # after every row: a run cut short keeps what it measured


COLUMNS = ["protocol", "model", "library", "masked.ndcg@10", "masked.recall@10", "masked.hit@10",
           "unmasked.ndcg@10", "unmasked.recall@10", "unmasked.hit@10", "own.ndcg@10", "own.convention",
           "fit_s", "eval_s", "epochs", "run", "notes"]
KEY = ["protocol", "model", "library"]


def merge_rows(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The table after a run: ``new`` replaces the rows of ``old`` with the same
    (protocol, model, library) and keeps every other row; ordered by protocol, then the
    order of ``GENERAL``/``SEQUENTIAL``, then library."""
    frame = pd.concat([old.reindex(columns=COLUMNS), new.reindex(columns=COLUMNS)], ignore_index=True)
    frame = frame.drop_duplicates(subset=KEY, keep="last")
    # HR is not a sum over a user's several held-out items on the random protocol: left empty
    frame.loc[frame["protocol"] == "random", ["masked.hit@10", "unmasked.hit@10"]] = np.nan
    order = {name: i for i, name in enumerate(list(GENERAL) + list(SEQUENTIAL))}
    frame = frame.assign(_p=frame["protocol"].map({"random": 0, "loo": 1}).fillna(2),
                         _m=frame["model"].map(order).fillna(len(order)),
                         _l=(frame["library"] != "genrec_lib").astype(int))
    return frame.sort_values(["_p", "_m", "_l"], kind="stable").drop(columns=["_p", "_m", "_l"]).reset_index(drop=True)


def write_tables(rows: list[dict], args, run: str, load_before) -> None:
    """Merge this run's rows into ``side_by_side.csv`` (by protocol, model, library) and
    rewrite ``side_by_side.md`` with every run's provenance (``side_by_side_runs.json``)."""
    import recbole
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "side_by_side.csv"
    old = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS)
    frame = merge_rows(old, pd.DataFrame(rows))
    frame.to_csv(csv, index=False, float_format="%.4f")
    runs_file = out / "side_by_side_runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    load_after = os.getloadavg()
    runs[run] = {
        "seed": args.seed,
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
                    f"recbole {recbole.__version__}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s) visible, torch threads {args.threads}; "
                   + (f"both libraries on {torch.cuda.get_device_name(0)}; " if args.device == "cuda" else "")
                   + f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        "note": args.note,
    }
    runs = {key: value for key, value in runs.items() if key in set(frame["run"].dropna())}
    runs_file.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    render_markdown(out)


def merge_folders(folders: list[str], out: Path) -> None:
    """Merge the tables of other runs (each a folder with ``side_by_side.csv`` and
    ``side_by_side_runs.json``, e.g. runs made in parallel with ``--out``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    csv, runs_file = out / "side_by_side.csv", out / "side_by_side_runs.json"
    frame = merge_rows(pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=COLUMNS))
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    for folder in map(Path, folders):
        if not (folder / "side_by_side.csv").is_file():
            raise FileNotFoundError(f"{folder} holds no side_by_side.csv: pass folders written by --out")
        frame = merge_rows(frame, pd.read_csv(folder / "side_by_side.csv"))
        runs.update(json.loads((folder / "side_by_side_runs.json").read_text()))
    frame.to_csv(csv, index=False, float_format="%.4f")
    runs = {key: value for key, value in runs.items() if key in set(frame["run"].dropna())}
    runs_file.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    render_markdown(out)


def render_markdown(out: Path) -> None:
    """``side_by_side.md`` from the CSV and the runs' provenance."""
    frame = pd.read_csv(out / "side_by_side.csv")
    runs = json.loads((out / "side_by_side_runs.json").read_text())
    header = [
        "# genrec_lib and RecBole on the same split",
        "",
        "- data: ML-100K exported by `genrec data export` (random and loo protocols), seed in each run below",
        "- metrics: one evaluator for both libraries (benchmarks/reference_eval.py, exact expectation over random "
        "tie-breaking), test split, full catalogue; masked = items seen in train+valid removed from the ranking, "
        "unmasked = nothing removed; own = each library's own evaluator in its own convention",
        "- inputs at test time: train+valid for both libraries (RecBole's general models read only train by "
        "default; the script gives them train+valid); loo inputs hold only interactions strictly earlier than "
        "the target's timestamp",
        f"- RecBole settings beyond its defaults: {RECBOLE_SETTINGS['valid_metric']} for early stopping, "
        "no negative sampling except BPR; both libraries on the same device (CPU unless the run says GPU)",
        "- seconds are wall-clock (on CPU, a shared machine): compare them only between rows of the same run (a "
        "model's two libraries always run one after the other in the same process)",
        "",
        "Runs (the `run` column):",
        "",
    ]
    for key in sorted(runs):
        info = runs[key]
        line = f"- {key}: seed {info['seed']}; {info['versions']}; {info['machine']}"
        header.append(line + (f"; note: {info['note']}" if info.get("note") else ""))
    table = frame.copy()
    table["epochs"] = table["epochs"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else (f"{v:.1f}" if abs(v) >= 10 else f"{v:.4f}"))
    table = table.fillna("")
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in record) + " |" for record in table.itertuples(index=False)]
    (out / "side_by_side.md").write_text("\n".join(header + [""] + lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
