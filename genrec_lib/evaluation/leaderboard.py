"""The leaderboard: every registered model under one protocol, with intervals and beyond-accuracy columns.

Models are found through the registry (:data:`genrec_lib.models.MODELS`), never a list
written here, so a model that a later chapter registers appears without an edit. A model
class may declare the protocols it supports with a class attribute ``protocols``
(default: ``random`` and ``loo``, the two the full-ranking evaluator handles). The
``llmrank`` board (chapter 10's 20 candidates per user, drawn from the ``loo`` split) lists
the models that declare it and every model that runs on ``loo``: a full-ranking model
scores any candidate set, so the language models meet the classic ones on equal terms.

One *entry* is one model evaluated once on one split (dataset + protocol + seed): mean and per-user
accuracy on the test stage (full ranking), sampled NDCG@10, beyond-accuracy summaries of
its top-10 lists, fit and evaluation seconds, and where it came from. Entries live in
``results/leaderboard/<dataset>/<protocol>-seed<seed>/<model>.json`` next to the chapters' results
files, so a chapter that trains a model can :func:`save_entry` it and the leaderboard
(chapter 16, ``genrec leaderboard``) reads it instead of training it again; it trains only
what is missing.

An entry records what produced it (:func:`provenance`): the library version, a hash of the
source of the model's classes and of the training and evaluation code, and the settings it
was trained with. :func:`collect` reuses an entry only when these match the code that would
run now and the settings asked for; a stale entry is retrained, or refused with one line
when the model may not be trained here. An entry also keeps the validation NDCG@10, so a
reference model can be chosen without looking at test.

Entries can also *ship* with the library (package data, ``genrec_lib/records/leaderboard_entries.json``,
written by the repository's ``scripts/ship_leaderboard_entries.py`` from a recorded run of the
chapters): ``collect(..., shipped=True)`` falls back on them for a model that has no current
entry of this run and is not trained here. A shipped entry passes the same stale check, keeps
the commit and settings that produced it, is labelled ``shipped: <who trained it> @ <commit>``
in its ``source``, and is never written among this run's entries.

Used by chapter 16 and ``genrec leaderboard``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from genrec_lib.data import PROTOCOLS, Split
from genrec_lib.evaluation import metrics as M
from genrec_lib.evaluation.ranking import evaluate, recommend
from genrec_lib.evaluation.stats import bootstrap_ci
from genrec_lib.results import results_dir
from genrec_lib import __version__

#: the accuracy metrics an entry keeps (means, and per user for intervals and paired tests)
ACCURACY = ("ndcg@10", "recall@10", "hit@10", "mrr@10")
DEFAULT_PROTOCOLS = ("random", "loo")
#: protocols a leaderboard can be built for: the data splits, plus ``llmrank`` (on ``loo``)
BOARD_PROTOCOLS = PROTOCOLS + ("llmrank",)


def supported_protocols(model_class) -> tuple[str, ...]:
    """The protocols a registered model class declares (attribute ``protocols``), else random and loo."""
    return tuple(getattr(model_class, "protocols", DEFAULT_PROTOCOLS))


def registered_models(protocol: str) -> list[str]:
    """Names of every registered model that supports ``protocol``, sorted."""
    import genrec_lib.models  # noqa: F401  (importing registers every model)
    from genrec_lib.models import MODELS

    def runs_on(cls) -> bool:
        declared = supported_protocols(cls)
        return protocol in declared or (protocol == "llmrank" and "loo" in declared)

    return sorted(name for name, cls in MODELS.items() if runs_on(cls))


def entry_path(protocol: str, seed: int, model: str, dataset: str = "ml-100k") -> Path:
    """Where the entry of ``model`` on (``dataset``, ``protocol``, ``seed``) is kept.

    The dataset is part of the key: chapter 14's ``bpr`` on its image catalogue must not
    overwrite the MovieLens ``bpr`` that chapter 16 reads.
    """
    for what, name, example in (("model", model, "ease"), ("dataset", dataset, "ml-100k")):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{what} must be a plain name such as {example!r}, got {name!r}")
    return results_dir() / "leaderboard" / dataset / f"{protocol}-seed{int(seed)}" / f"{model}.json"


#: modules whose code shapes every entry besides the model's own classes
_SHARED_CODE = ("genrec_lib.training", "genrec_lib.data.splits", "genrec_lib.evaluation.ranking",
                "genrec_lib.evaluation.metrics", "genrec_lib.evaluation.llmrank")


class StaleEntryError(ValueError):
    """A recorded entry was produced by other code or other settings than those asked for."""


def code_hash(model_class) -> str:
    """A short SHA-256 of the source files of ``model_class``'s library classes, of the library
    modules those files import from (shared layers, a tokenizer), and of the shared training,
    split and evaluation code: it changes whenever code that shapes an entry changes."""
    import importlib
    import sys

    modules = {c.__module__ for c in inspect.getmro(model_class) if c.__module__.startswith("genrec_lib")}
    for name in list(modules):  # one level of imports: what the model's own files use from the library
        for value in vars(sys.modules[name]).values():
            used = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
            if isinstance(used, str) and used.startswith("genrec_lib"):
                modules.add(used)
    digest = hashlib.sha256()
    for name in sorted(modules | set(_SHARED_CODE)):
        module = sys.modules.get(name) or importlib.import_module(name)
        digest.update(name.encode() + b"\0" + Path(inspect.getsourcefile(module)).read_bytes())
    return digest.hexdigest()[:16]


def provenance(model_class, overrides: dict | None = None) -> dict:
    """What produces an entry of ``model_class`` now: library version, code hash and settings
    (as JSON stores them, so that a tuple and the list it is read back as compare equal)."""
    return {"library": __version__, "code": code_hash(model_class),
            "overrides": json.loads(json.dumps(dict(overrides or {}), default=str))}


def stale_reason(entry: dict, overrides: dict | None = None) -> str | None:
    """Why ``entry`` does not match what would produce it now with ``overrides``, or ``None``.

    ``overrides=None`` accepts whatever settings the entry was trained with (a chapter's own);
    a dict (``{}`` for library defaults) must equal the recorded settings.
    """
    import genrec_lib.models  # noqa: F401  (importing registers every model)
    from genrec_lib.models import MODELS

    recorded = entry.get("provenance")
    if recorded is None:
        return "it records no provenance (written by an older version of the library)"
    if entry.get("model") not in MODELS:
        return f"{entry.get('model')!r} is not a registered model"
    now = provenance(MODELS[entry["model"]], overrides)
    if recorded.get("library") != now["library"]:
        return f"it was written by genrec_lib {recorded.get('library')}, this is {now['library']}"
    if recorded.get("code") != now["code"]:
        return "the code of the model, training or evaluation changed since it was written"
    if overrides is not None and recorded.get("overrides", {}) != now["overrides"]:
        return f"it was trained with settings {recorded.get('overrides', {})}, asked for {now['overrides']}"
    return None


def item_features(split: Split) -> tuple[np.ndarray, torch.Tensor | None]:
    """Training popularity (n_items,) and the genre indicator matrix (n_items, n_genres).

    A catalogue without genres but with one ``category`` per item (chapter 14's stamps)
    uses the categories as its genres; one with neither gets ``None`` (no genre columns).
    """
    popularity = split.train.item_popularity()
    items = split.dataset.items
    if "genres" in items:
        genres, _ = M.genre_matrix(list(items["genres"]))
    elif "category" in items:
        genres, _ = M.genre_matrix([[c] for c in items["category"]])
    else:
        genres = None
    return popularity, genres


def evaluate_entry(model, split: Split, *, fit_seconds: float, source: str, overrides: dict | None = None,
                   k: int = 10, n_negatives: int = 100, text_embeddings=None) -> dict:
    """Evaluate a fitted model on ``split``'s test stage into one leaderboard entry (a JSON-able dict).

    Args:
        fit_seconds: wall-clock seconds its ``fit`` took.
        source: who trained it (a chapter name, or ``"leaderboard"``).
        text_embeddings: (n_items, d) item text embeddings for intra-list diversity over
            meaning (optional; chapter 16 passes all-MiniLM-L6-v2 vectors).
    """
    valid = evaluate(model, split, "valid", ks=(k,), seed=split.seed)
    full = evaluate(model, split, "test", ks=(k,), seed=split.seed)
    sampled = evaluate(model, split, "test", ks=(k,), n_negatives=n_negatives, seed=split.seed)
    start = time.perf_counter()
    recs = recommend(model, split, "test", k=k, seed=split.seed)
    rec_seconds = time.perf_counter() - start
    popularity, genres = item_features(split)
    beyond = M.beyond_accuracy(recs, split.n_items, popularity, split.n_users, history=split.history("test"),
                               item_genres=genres, text_embeddings=text_embeddings)
    names = [f"{m.split('@')[0]}@{k}" for m in ACCURACY]
    return {
        "model": model.name, "dataset": split.dataset.name, "protocol": split.protocol, "seed": int(split.seed),
        "source": source,
        "overrides": overrides or {}, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "provenance": provenance(type(model), overrides),
        "fit_seconds": round(float(fit_seconds), 3), "eval_seconds": round(full.seconds + rec_seconds, 3),
        "valid": {f"ndcg@{k}": valid.metrics[f"ndcg@{k}"]},
        "metrics": {n: full.metrics[n] for n in names},
        "sampled": {f"ndcg@{k}": sampled.metrics[f"ndcg@{k}"], "n_negatives": n_negatives},
        "beyond": beyond,
        "users": full.users.tolist(),
        "per_user": {n: np.round(full.per_user[n], 6).tolist() for n in names},
    }


def evaluate_llmrank_entry(model, split: Split, *, fit_seconds: float, source: str,
                           overrides: dict | None = None) -> dict:
    """Evaluate a model fitted on the ``loo`` split on the ``llmrank`` test candidates into an entry.

    The task is the one ``genrec bench --protocol llmrank`` evaluates (200 seeded users, 20
    candidates each, the split's seed), so the two agree; there are no beyond-accuracy
    columns, since a ranking of 20 candidates is not a recommendation list over the catalogue.
    """
    from genrec_lib.evaluation.llmrank import LLMRANK_METRICS, evaluate_llmrank, make_llmrank_task

    if split.protocol != "loo":
        raise ValueError(f"llmrank candidates are drawn from the loo split; got a {split.protocol!r} split")
    task = make_llmrank_task(split, "test", seed=split.seed)
    result = evaluate_llmrank(model, task)
    return {
        "model": model.name, "dataset": split.dataset.name, "protocol": "llmrank", "seed": int(split.seed),
        "source": source, "overrides": overrides or {}, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "provenance": provenance(type(model), overrides),
        "fit_seconds": round(float(fit_seconds), 3), "eval_seconds": round(result.seconds, 3),
        "n_candidates": task.n_candidates,
        "metrics": {m: result.metrics[m] for m in LLMRANK_METRICS},
        "users": np.asarray(result.users).tolist(),
        "per_user": {m: np.round(result.per_user[m], 6).tolist() for m in LLMRANK_METRICS},
    }


def save_entry(entry: dict) -> Path:
    """Write an entry where the leaderboard finds it; returns the path."""
    if "dataset" not in entry:
        raise ValueError("the entry has no 'dataset'; build it with evaluate_entry, which records the split's dataset")
    path = entry_path(entry["protocol"], entry["seed"], entry["model"], entry["dataset"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    return path


def load_entry(protocol: str, seed: int, model: str, dataset: str = "ml-100k") -> dict | None:
    """The recorded entry for ``model`` on (dataset, protocol, seed), or ``None``."""
    path = entry_path(protocol, seed, model, dataset)
    return json.loads(path.read_text()) if path.is_file() else None


SHIPPED_RECORD = "leaderboard_entries"
"""The shipped entries' record, ``genrec_lib/records/leaderboard_entries.json``."""


def shipped_entries(dataset: str = "ml-100k", path: str | Path | None = None) -> dict[tuple[str, int, str], dict]:
    """The entries that ship with the library for ``dataset``, keyed ``(protocol, seed, model)``.

    Each is returned as recorded, with ``shipped`` (the run that produced it: commit, date,
    machine) added and ``source`` relabelled ``"shipped: <who trained it> @ <commit>"``.
    Empty when the record is absent.
    """
    from genrec_lib.results import RECORDS

    file = Path(path) if path is not None else RECORDS / f"{SHIPPED_RECORD}.json"
    if not file.is_file():
        return {}
    data = json.loads(file.read_text())
    out = {}
    for entry in data["entries"]:
        if entry.get("dataset") != dataset:
            continue
        run = data["runs"][entry["run"]]
        entry = {k: v for k, v in entry.items() if k != "run"}
        entry["shipped"] = {"run": run, "trained_by": entry["source"]}
        entry["source"] = f"shipped: {entry['source']} @ {run['commit']}"
        out[(entry["protocol"], int(entry["seed"]), entry["model"])] = entry
    return out


def fit_and_evaluate(name: str, split: Split, *, overrides: dict | None = None, source: str = "leaderboard",
                     text_embeddings=None, protocol: str | None = None) -> tuple[dict, object]:
    """Train a registered model with its defaults (plus ``overrides``) and evaluate it into an entry.

    ``protocol="llmrank"`` evaluates on the llmrank candidates of ``split`` (a ``loo`` split).
    """
    from genrec_lib.models import get_model
    from genrec_lib.training import seed_everything

    seed_everything(split.seed)
    model = get_model(name, **(overrides or {}))
    if hasattr(model, "seed"):
        model.seed = split.seed
    start = time.perf_counter()
    model.fit(split)
    fit_seconds = time.perf_counter() - start
    if (protocol or split.protocol) == "llmrank":
        entry = evaluate_llmrank_entry(model, split, fit_seconds=fit_seconds, source=source, overrides=overrides)
    else:
        entry = evaluate_entry(model, split, fit_seconds=fit_seconds, source=source, overrides=overrides,
                               text_embeddings=text_embeddings)
    return entry, model


def collect(protocol: str, models: list[str] | None = None, seeds=(2020,), *, train: list[str] | bool = True,
            overrides: dict[str, dict] | None = None, reuse: bool = True, dataset: str = "ml-100k",
            text_embeddings=None, shipped: bool = False, log: Callable[[str], None] | None = print) -> list[dict]:
    """Entries for ``models`` (default: every registered model supporting ``protocol``) and ``seeds``.

    A recorded entry is reused (``reuse=True``) when it is current (:func:`stale_reason`): same
    library version and code, and, for a model named in ``overrides``, the same settings. A
    missing or stale one is trained when the model is in ``train`` (``True``: every model,
    ``False``: none) and saved; a stale one that may not be trained raises
    :class:`StaleEntryError` with one line. A model neither recorded nor trained gives an
    entry with ``source="missing"`` and no metrics, unless ``shipped=True`` and the library ships a
    current entry for it (:func:`shipped_entries`): that one is used as it is, labelled
    ``shipped: ...`` in its ``source``. A stale shipped entry is not used: the model is
    ``missing`` and the entry's ``why`` says what changed.

    Args:
        overrides: per-model hyper-parameters, e.g. ``{"bpr": {"epochs": 20}}``: used to train,
            and required of a recorded entry. A model not named here accepts any recorded settings.
    """
    from genrec_lib.data import load_split

    if protocol not in BOARD_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(BOARD_PROTOCOLS)}")
    available = registered_models(protocol)
    models = available if models is None else list(models)
    unknown = [m for m in models if m not in available]
    if unknown:
        raise ValueError(f"model(s) {unknown} are not registered for protocol {protocol!r}; "
                         f"choose from: {', '.join(available)}")
    overrides = overrides or {}
    entries, splits = [], {}
    ready = shipped_entries(dataset) if shipped else {}
    for seed in seeds:
        for name in models:
            entry = load_entry(protocol, seed, name, dataset) if reuse else None
            trainable = train is True or (train and name in train)
            stale = entry and stale_reason(entry, overrides.get(name))
            if stale and not trainable:
                raise StaleEntryError(
                    f"the recorded {protocol} entry of {name} (seed {seed}) is stale: {stale}; rerun "
                    f"{entry.get('source', 'its chapter')} or let the leaderboard retrain it "
                    f"(train=[{name!r}], or genrec leaderboard --retrain)")
            if stale:
                if log:
                    log(f"entry of {name} on {protocol} (seed {seed}) is stale ({stale}): retraining")
                entry = None
            if entry is None and trainable:
                if seed not in splits:
                    splits[seed] = load_split(dataset, "loo" if protocol == "llmrank" else protocol, seed)
                if log:
                    log(f"training {name} on {protocol} (seed {seed}) ...")
                entry, _ = fit_and_evaluate(name, splits[seed], overrides=overrides.get(name),
                                            text_embeddings=text_embeddings, protocol=protocol)
                save_entry(entry)
            why = None
            if entry is None and (protocol, int(seed), name) in ready:
                candidate = ready[(protocol, int(seed), name)]
                why = stale_reason(candidate, overrides.get(name))
                if why is None:
                    entry = candidate
                else:
                    why = f"its shipped entry ({candidate['source']}) is stale: {why}"
                    if log:
                        log(f"{name} on {protocol} (seed {seed}): {why}")
            if entry is None:
                entry = {"model": name, "dataset": dataset, "protocol": protocol, "seed": int(seed), "source": "missing"}
                if why:
                    entry["why"] = why
            entries.append(entry)
    return entries


def table(entries: list[dict], metric: str = "ndcg@10", n_boot: int = 1000, level: float = 0.95) -> pd.DataFrame:
    """One row per (model, seed): accuracy with a bootstrap interval over users, beyond-accuracy, times."""
    rows = []
    for e in entries:
        row = {"model": e["model"], "seed": e["seed"], "source": e["source"]}
        if "metrics" in e:
            mean, low, high = bootstrap_ci(e["per_user"][metric], n_boot=n_boot, level=level, seed=0)
            row.update({metric: mean, "low": low, "high": high})
            row.update({m: v for m, v in e["metrics"].items() if m != metric})
            if "sampled" in e:  # full-ranking protocols only
                row[f"sampled {metric}"] = e["sampled"].get(metric, np.nan)
            row.update(e.get("beyond", {}))
            row.update({"fit s": e["fit_seconds"], "eval s": e["eval_seconds"]})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if metric in frame:
        frame = frame.sort_values(metric, ascending=False, na_position="last")
    return frame.reset_index(drop=True)


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
