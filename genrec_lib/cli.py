"""The ``genrec`` command line: benchmark a model, export a split.

    genrec bench --dataset ml-100k --protocol random --model ease [--seed 2020] [--json PATH] [--unmasked]
    genrec bench --protocol llmrank --model llm-zeroshot   # 200 users x 20 candidates
    genrec bench --protocol bundle --model bgn             # held-out last bundle per user (chapter 09)
    genrec data export --dataset ml-100k --protocol loo --seed 2020 --out DIR
    genrec leaderboard --protocol random [--models ease,bpr] [--seeds 2020 2021] [--no-train] --out DIR
    genrec leaderboard --protocol llmrank --models pop,ease,llm-zeroshot --out DIR   # the same 20 candidates
    genrec chat --user 42 [--max-turns 5] [--k 5] < utterances.txt

Bad arguments exit with status 2 and one line that lists the valid choices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from genrec_lib.data import DATASETS, PROTOCOLS

REPORT_KS = (5, 10, 20)
#: ``genrec bench`` protocols: the data splits, plus ``llmrank`` (20 candidates per user on ``loo``).
BENCH_PROTOCOLS = PROTOCOLS + ("llmrank",)


class UsageError(Exception):
    """A bad command-line argument; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def _model_names() -> list[str]:
    from genrec_lib.models import MODELS

    return sorted(MODELS)


def get_model_class(name: str):
    from genrec_lib.models import MODELS

    return MODELS[name]


def _choice(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise UsageError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


def _writable_file(path: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--json {path} is a folder; give a file path such as {target / 'result.json'}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} does not exist or is not writable")
    return target


def _writable_dir(path: str) -> Path:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {path} exists and is not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create folder {path}: {error.strerror}") from error
    if not os.access(target, os.W_OK):
        raise UsageError(f"cannot write into folder {path}")
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genrec", description="Companion CLI for 'Recommendation with Generative Models'.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    bench = commands.add_parser("bench", help="train, evaluate and report one model")
    bench.add_argument("--dataset", default="ml-100k")
    bench.add_argument("--protocol", default="random")
    bench.add_argument("--model")
    bench.add_argument("--seed", type=int, default=2020)
    bench.add_argument("--json", help="also write the result as JSON to this file")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model hyper-parameter, e.g. --set epochs=50 (repeatable)")
    bench.add_argument("--unmasked", action="store_true",
                       help="also report metrics with seen items left in the ranking (the convention of "
                            "RecBole's sequential models and of some papers)")

    data = commands.add_parser("data", help="dataset utilities")
    data_commands = data.add_subparsers(dest="data_command", parser_class=_Parser)
    export = data_commands.add_parser("export", help="write train/valid/test TSV files of a split")
    export.add_argument("--dataset", default="ml-100k")
    export.add_argument("--protocol", default="random")
    export.add_argument("--seed", type=int, default=2020)
    export.add_argument("--out", required=True)

    board = commands.add_parser("leaderboard", help="every registered model on one protocol, with intervals")
    board.add_argument("--dataset", default="ml-100k")
    board.add_argument("--protocol", default="random")
    board.add_argument("--models", nargs="+", default=None,
                       help="model names (space- or comma-separated; default: every registered model)")
    board.add_argument("--seeds", nargs="+", type=int, default=[2020])
    board.add_argument("--no-train", action="store_true",
                       help="only read recorded results; list models without one as missing")
    board.add_argument("--retrain", action="store_true", help="ignore recorded results and train every model")
    board.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                       help="override a model hyper-parameter, e.g. --set bpr.epochs=20 (repeatable)")
    board.add_argument("--out", required=True)
    chat = commands.add_parser("chat", help="hold a recommendation dialogue on standard input (chapter 13)")
    chat.add_argument("--dataset", default="ml-100k")
    chat.add_argument("--user", type=int, required=True, help="the MovieLens user id whose history the recommender knows")
    chat.add_argument("--max-turns", type=int, default=5)
    chat.add_argument("--k", type=int, default=5, help="items shown per turn")
    chat.add_argument("--seed", type=int, default=2020)
    return parser


def run_chat(dataset: str, user_id: int, max_turns: int, k: int, seed: int, lines, write) -> None:
    """``genrec chat``: the chapter-13 recommender over the user's known history (``loo`` split)."""
    from genrec_lib.data import load_split
    from genrec_lib.models.llm.conversational import chat, minilm_recommender

    split = load_split(dataset, "loo", seed)
    ids = list(split.dataset.user_ids)
    if user_id not in ids:
        raise UsageError(f"unknown user {user_id}; {dataset} user ids run from {min(ids)} to {max(ids)}")
    user = ids.index(user_id)
    history = [int(i) for i in split.known("test").sequences()[user]]  # everything known: no target to hide here
    rec = minilm_recommender(split)
    titles = rec.titles
    write(f"genrec chat: user {user_id} ({len(history)} known items, last: {titles[history[-1]] if history else 'none'}). "
          "Say what you would like; 'yes' when a list holds it; end with Ctrl-D.")
    chat(rec, history, lines, write, max_turns=max_turns, k=k, seed=seed)


def parse_overrides(pairs: list[str]) -> dict:
    """``["epochs=50", "dropout=0.2"]`` -> ``{"epochs": 50, "dropout": 0.2}`` (strings stay strings)."""
    import ast

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--set expects KEY=VALUE with a parameter name as KEY, got {pair!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def _check_overrides(model_name: str, overrides: dict) -> None:
    """Build the model once with the overrides so that typos and bad values fail up front."""
    from genrec_lib.models import MODELS

    try:
        MODELS[model_name](**overrides)
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad --set for {model_name}: {error}") from error


def bench(dataset: str, protocol: str, model_name: str, seed: int = 2020, overrides: dict | None = None,
          unmasked: bool = False) -> dict:
    """Train ``model_name`` on a split, evaluate on valid and test, return the JSON record.

    With ``unmasked`` the record also holds ``metrics_unmasked``: the same evaluation with
    the items each user has seen left in the ranking.
    """
    from genrec_lib.data import load_split
    from genrec_lib.evaluation import evaluate
    from genrec_lib.models import MODELS
    from genrec_lib.training import seed_everything

    split = load_split(dataset, "loo" if protocol == "llmrank" else protocol, seed)
    seed_everything(seed)
    model = MODELS[model_name](**(overrides or {}))
    if hasattr(model, "seed"):
        model.seed = seed
    start = time.perf_counter()
    model.fit(split)
    fit_seconds = time.perf_counter() - start
    extra = {}
    if protocol == "llmrank":
        from genrec_lib.evaluation.llmrank import evaluate_llmrank, intervals, make_llmrank_task

        valid = evaluate_llmrank(model, make_llmrank_task(split, "valid", seed=seed))
        test = evaluate_llmrank(model, make_llmrank_task(split, "test", seed=seed))
        extra = {"n_users": len(test.users), "n_candidates": 20,
                 "ci95": {m: [round(low, 4), round(high, 4)] for m, (_, low, high) in intervals(test).items()}}
        if hasattr(model, "model_name"):
            extra["llm"] = model.model_name
    else:
        valid = evaluate(model, split, "valid", ks=REPORT_KS)
        test = evaluate(model, split, "test", ks=REPORT_KS)
    record = {
        "model": model_name,
        "dataset": dataset,
        "protocol": protocol,
        "seed": seed,
        "overrides": overrides or {},
        "metrics": {"valid": valid.metrics, "test": test.metrics},
        "fit_seconds": round(fit_seconds, 3),
        "eval_seconds": round(test.seconds, 3),
        "device": str(model.device),
        **extra,
    }
    if unmasked:
        record["metrics_unmasked"] = {stage: evaluate(model, split, stage, ks=REPORT_KS, mask_seen=False).metrics
                                      for stage in ("valid", "test")}
    history = getattr(model, "history_", None)
    if history is not None:
        record["epochs"] = len(history.epochs)
        record["best_epoch"] = history.best_epoch
        record["seconds_per_epoch"] = round(history.seconds_per_epoch, 4)
    return record


def format_table(record: dict) -> str:
    if record["protocol"] == "llmrank":
        from genrec_lib.evaluation.llmrank import LLMRANK_METRICS as names
    else:
        names = [f"{m}@{k}" for m in ("recall", "ndcg", "hit", "mrr", "precision") for k in REPORT_KS]
    lines = [f"{record['model']} on {record['dataset']} ({record['protocol']}, seed {record['seed']}): "
             f"fit {record['fit_seconds']:.2f} s, test evaluation {record['eval_seconds']:.3f} s, device {record['device']}"]
    if "llm" in record:
        lines.append(f"language model: {record['llm']}")
    if "ci95" in record:
        lines.append(f"{record['n_users']} users x {record['n_candidates']} candidates; 95% bootstrap intervals (test): "
                     + ", ".join(f"{m} [{lo:.3f}, {hi:.3f}]" for m, (lo, hi) in record["ci95"].items()))
    if "epochs" in record:
        lines.append(f"epochs {record['epochs']} (best {record['best_epoch']}), {record['seconds_per_epoch']:.3f} s/epoch")
    unmasked = record.get("metrics_unmasked")
    header = f"{'metric':<14}{'valid':>9}{'test':>9}"
    if unmasked:
        lines.append(f"{'':<14}{'seen items masked':>18}    {'unmasked (seen items ranked)':>20}")
        header += f"    {'valid':>9}{'test':>9}"
    lines.append(header)
    for name in names:
        line = f"{name:<14}{record['metrics']['valid'][name]:>9.4f}{record['metrics']['test'][name]:>9.4f}"
        if unmasked:
            line += f"    {unmasked['valid'][name]:>9.4f}{unmasked['test'][name]:>9.4f}"
        lines.append(line)
    return "\n".join(lines)


def parse_model_overrides(pairs: list[str], models: list[str]) -> dict[str, dict]:
    """``["bpr.epochs=20"]`` -> ``{"bpr": {"epochs": 20}}``, each checked by building the model."""
    out: dict[str, dict] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or name not in models:
            raise UsageError(f"--set expects MODEL.KEY=VALUE with MODEL one of {', '.join(models)}, got {pair!r}")
        out.setdefault(name, {}).update(parse_overrides([rest]))
    for name, values in out.items():
        _check_overrides(name, values)
    return out


def leaderboard(dataset: str, protocol: str, models: list[str] | None, seeds: list[int], train: bool,
                retrain: bool, overrides: dict, out: Path) -> str:
    """Collect (read or train) the entries, write CSV and Markdown into ``out``, return the printed table."""
    from genrec_lib.evaluation import leaderboard as lb

    entries = lb.collect(protocol, models, seeds, train=train, overrides=overrides, reuse=not retrain,
                         dataset=dataset, log=lambda line: print(line, file=sys.stderr))
    frame = lb.table(entries)
    stem = f"leaderboard_{dataset}_{protocol}"
    frame.to_csv(out / f"{stem}.csv", index=False)
    ranking = "20 candidates per user" if protocol == "llmrank" else "full ranking"
    (out / f"{stem}.md").write_text(f"# Leaderboard: {dataset}, {protocol} protocol, test stage, {ranking}\n\n"
                                    "NDCG@10 with a 95% bootstrap interval over users (low, high).\n\n"
                                    + lb.to_markdown(frame) + "\n")
    shown = [c for c in ("model", "seed", "source", "ndcg@10", "low", "high", "recall@10", "coverage", "gini",
                         "arp", "ild_genre", "fit s") if c in frame]
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        return frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}")


def export(dataset: str, protocol: str, seed: int, out: Path) -> list[Path]:
    from genrec_lib.data import load_split

    split = load_split(dataset, protocol, seed)
    written = []
    for part in ("train", "valid", "test"):
        path = out / f"{part}.tsv"
        # Rows in each user's time order (ties as the protocol broke them), so that any tool
        # that sorts stably by timestamp rebuilds the same sequences.
        getattr(split, part).to_frame(temporal=True).to_csv(path, sep="\t", index=False)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    overrides = json_path = out = board_overrides = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; choose one of: bench, chat, data, leaderboard")
        _choice("dataset", args.dataset, DATASETS)
        if args.command != "chat":
            _choice("protocol", args.protocol, BENCH_PROTOCOLS if args.command in ("bench", "leaderboard") else PROTOCOLS)
        if args.command == "chat":
            if args.max_turns <= 0 or args.k <= 0:
                raise UsageError(f"--max-turns and --k must be > 0, got {args.max_turns} and {args.k}")
        elif args.command == "bench":
            if args.model is None:
                raise UsageError(f"missing --model; choose one of: {', '.join(_model_names())}")
            _choice("model", args.model, _model_names())
            json_path = _writable_file(args.json) if args.json else None
            overrides = parse_overrides(args.set)
            _check_overrides(args.model, overrides)
            if args.protocol != "llmrank" and hasattr(get_model_class(args.model), "score_candidates"):
                raise UsageError(f"model {args.model!r} ranks candidate texts only; use --protocol llmrank")
            declared = getattr(get_model_class(args.model), "protocols", None)
            if declared is not None and args.protocol not in declared:
                raise UsageError(f"model {args.model!r} is built for protocol {', '.join(declared)}; "
                                 f"use --protocol {declared[0]}")
            if args.protocol == "llmrank" and args.unmasked:
                raise UsageError("--unmasked applies to full ranking (random, loo); llmrank candidates are never seen items")
        elif args.command == "leaderboard":
            from genrec_lib.evaluation.leaderboard import registered_models

            available = registered_models(args.protocol)
            if args.models is not None:
                args.models = [m for part in args.models for m in part.split(",") if m]
                for name in args.models:
                    _choice(f"model for protocol {args.protocol}", name, available)
            board_overrides = parse_model_overrides(args.set, args.models or available)
            if args.no_train and args.retrain:
                raise UsageError("--no-train and --retrain contradict each other; give one of them")
            out = _writable_dir(args.out)
        elif args.data_command != "export":
            raise UsageError("missing data command; choose one of: export")
        else:
            out = _writable_dir(args.out)
    except UsageError as error:
        print(f"genrec: error: {error}", file=sys.stderr)
        return 2
    if args.command == "chat":
        try:
            run_chat(args.dataset, args.user, args.max_turns, args.k, args.seed, sys.stdin, print)
        except UsageError as error:
            print(f"genrec: error: {error}", file=sys.stderr)
            return 2
        return 0
    # The first use of a downloadable dataset fetches it; without network (or with a bad
    # archive) the reader gets the one line that says what to do, not a traceback.
    from genrec_lib.assets import AssetMissingError, ChecksumError
    from genrec_lib.data import DataFormatError

    try:
        return _run(args, overrides, json_path, out, board_overrides)
    except (AssetMissingError, ChecksumError, ConnectionError, DataFormatError) as error:
        print(f"genrec: error: {error}", file=sys.stderr)
        return 2


def _run(args, overrides, json_path, out, board_overrides) -> int:
    """Run a parsed and checked bench, leaderboard or data command."""
    if args.command == "bench":
        record = bench(args.dataset, args.protocol, args.model, args.seed, overrides, unmasked=args.unmasked)
        print(format_table(record))
        if json_path:
            json_path.write_text(json.dumps(record, indent=2))
    elif args.command == "leaderboard":
        from genrec_lib.evaluation.leaderboard import StaleEntryError

        try:
            print(leaderboard(args.dataset, args.protocol, args.models, args.seeds, not args.no_train, args.retrain,
                              board_overrides, out))
        except StaleEntryError as error:
            print(f"genrec: error: {error}", file=sys.stderr)
            return 2
    else:
        for path in export(args.dataset, args.protocol, args.seed, out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
