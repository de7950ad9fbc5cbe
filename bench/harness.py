"""What every bench script shares: the common arguments, the arm × seed loop with its cache,
training a configuration to its last step, and writing (or re-summarising) a results file.

A script imports it before the project (`import harness`; bench/ is on sys.path when a script
runs), which puts the repository root on sys.path for `models` and `tuner`. Every results file
bench/results/<name>.json has one schema, which bench/report.py renders:

- `name`, `command` (what made it), `arms` (what each arm is) and `raw` (the measurements, per
  arm and seed) are written when the script measures;
- `title`, `summary` (derived numbers), `body` (paragraphs and tables {"head", "rows"} as the page
  prints them), `figures` ([file, caption]), `verdicts` ({"claim", "holds", "evidence"}, see
  claims.py) and `notes` (written by hand, dated) are what the script's `summarise(result)`
  computes from the rest; `--resummarise` recomputes them from the committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from claims import verdict_word  # noqa: E402

from models.objective import Objective, Term  # noqa: E402
from tuner.config.build import build_dataset, build_objective  # noqa: E402
from tuner.config.spec import resolve  # noqa: E402
from tuner.config.terms import discriminator_for  # noqa: E402
from tuner.training.trainer import Trainer  # noqa: E402

Result = dict[str, Any]
Summarise = Callable[[Result], Result]
CACHE = Path(tempfile.gettempdir()) / "diffsearch_bench"
KEYS = ("name", "title", "command", "arms", "summary", "body", "figures", "verdicts", "notes")


def parser(
    name: str, doc: str, *, seeds: list[int] | None = None, steps: int | None = None,
    cache: bool = False,
) -> argparse.ArgumentParser:  # fmt: skip
    """--smoke, --out and --resummarise; --seeds, --steps and --cache where a default is given."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.set_defaults(name=name)
    p.add_argument("--smoke", action="store_true", help="seconds; writes to a temporary folder")
    p.add_argument("--out", type=Path, help=f"results file (default bench/results/{name}.json)")
    p.add_argument("--resummarise", action="store_true",
                   help="recompute the summary and verdicts of the results file from its raw data")  # fmt: skip
    if seeds is not None:
        p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps, help="training steps per run")
    if cache:
        p.add_argument("--cache", type=Path, default=CACHE / name, help="finished runs, by key")
    return p


def out_path(args: argparse.Namespace) -> Path:
    """--out, else bench/results/<name>.json, or a temporary file for --smoke."""
    if args.out is not None:
        return Path(args.out)
    return (CACHE / "smoke" if args.smoke else RESULTS) / f"{args.name}.json"


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The run cache; none for --smoke, whose runs are not worth keeping."""
    return None if args.smoke else args.cache


def command(args: argparse.Namespace, env: str = "") -> str:
    """The command line that made a results file, as the page prints it."""
    argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return f"{env}.venv/bin/python bench/{argv}".strip()


def cache_key(config: dict[str, Any], extra: dict[str, Any]) -> str:
    text = json.dumps({"config": config, "extra": extra}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cached(
    cache: Path | None, config: dict[str, Any], extra: dict[str, Any], fn: Callable[[], Result]
) -> Result:
    """fn() once per (config, extra); the result is kept as JSON under `cache`."""
    file = None if cache is None else cache / f"{cache_key(config, extra)}.json"
    if file is not None and file.exists():
        return json.loads(file.read_text())
    result = fn()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(result))
    return result


def arm_seed_loop(
    arms: Iterable[str], seeds: Iterable[int], run: Callable[[str, int], Result]
) -> dict[str, list[Result]]:
    """run(arm, seed) for every seed and, within a seed, every arm: {arm: [result per seed]}."""
    runs: dict[str, list[Result]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm, rows in runs.items():
            rows.append(run(arm, seed))
    return runs


def seconds(fn: Callable[[], object], repeats: int = 1, clock: Callable[[], float] = time.perf_counter) -> list[float]:  # fmt: skip
    """The seconds each of `repeats` calls of fn takes (wall time, or another clock)."""
    out = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def train(config: dict[str, Any], **components: Any) -> tuple[Trainer, dict[str, float]]:
    """A Trainer of `config` with the injected components (model, objective, dataset) trained
    to train.steps; and its wall and CPU seconds (construction included) and the mean total loss
    over the last tenth of the steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config, **components)
    steps = range(trainer.step, trainer.config["train.steps"])
    tail = [trainer.train_step()["loss/total"] for _ in steps][-max(1, len(steps) // 10) :]
    return trainer, {
        "time/train_s": time.perf_counter() - t0,
        "time/train_cpu_s": time.process_time() - c0,
        "loss/total_last10pct": sum(tail) / len(tail),
    }


def components(
    config: dict[str, Any], *, disc: dict[str, Any] | None = None,
    term: Callable[[Any, dict[str, Any]], Term] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a benchmark injects into the Trainer: the dataset and objective of `config`, with a
    trained TIW discriminator's state `disc` in its TIW term (so that the arms of a seed share
    one and none pre-trains again), and with term(dataset, config) in place of the config's term
    of that name (or added)."""
    config = resolve(config)
    dataset = build_dataset(config)
    trained = None
    if disc is not None:
        trained = discriminator_for(dataset)
        trained.load_state_dict(disc)
    objective = build_objective(config, dataset, disc=trained)
    if term is not None:
        new = term(dataset, config)
        objective = Objective({**objective.terms, new.name: new}.values())
    return {"dataset": dataset, "objective": objective}


def discriminator(config: dict[str, Any]) -> tuple[Trainer, dict[str, Any], dict[str, float]]:
    """A TIW discriminator pre-trained as the trainer's prepare() does (TIW on at strength 1):
    the trainer that holds it (to check it), its state (to share) and its training metrics."""
    trainer = Trainer(config | {"tiw.strength": 1.0})
    metrics = trainer.prepare()
    return trainer, trainer.objective.tiw.disc.state_dict(), metrics


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only)."""
    import matplotlib  # the backend is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def errorbars(ax: Any, x: Iterable, s: dict[str, Any], key: str, at: list | None = None) -> None:
    """One line per arm of a summary: mean ± std of s[arm][key.format(i)] for each i in x."""
    for arm, v in s.items():
        m, e = ([v[key.format(i)][k] for i in x] for k in ("mean", "std"))
        ax.errorbar(
            list(x) if at is None else at, m, yerr=e, marker="o", ms=3, capsize=2, label=arm
        )


def bars(ax: Any, s: dict[str, Any], runs: dict[str, list[dict]], key: str) -> None:
    """One bar per arm of a summary: mean ± std of `key`, and each seed's value as a dot."""
    names = list(runs)
    ax.bar(range(len(names)), [s[n][key]["mean"] for n in names],
           yerr=[s[n][key]["std"] for n in names], capsize=4, color="0.75")  # fmt: skip
    for i, n in enumerate(names):
        ax.scatter([i] * len(runs[n]), [r[key] for r in runs[n]], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)


# -- results files ----------------------------------------------------------------------------
def new(args: argparse.Namespace, arms: dict[str, Any], raw: Result, env: str = "") -> Result:
    """A results file's measured part: its name, command, arms and raw measurements."""
    return {"name": args.name, "command": command(args, env), "arms": arms, "raw": raw}


def page(
    result: Result, title: str, body: list, verdicts: list[dict[str, Any]], *,
    figures: Iterable[tuple[str, str]] = (), notes: Iterable[dict[str, str]] = (),
    summary: Any = None,
) -> Result:  # fmt: skip
    """`result` with what the page shows of it, its keys in the schema's order (raw last)."""
    result |= {"title": title, "body": body, "figures": [list(f) for f in figures],
               "verdicts": verdicts, "notes": list(notes)}  # fmt: skip
    if summary is not None:
        result["summary"] = summary
    order = [k for k in KEYS if k in result] + [k for k in result if k not in KEYS]
    return {k: result[k] for k in order}


def write(path: Path, result: Result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def finish(
    args: argparse.Namespace, result: Result, summarise: Summarise,
    plot: Callable[[Result, Path], None] | None = None,
) -> Result:  # fmt: skip
    """summarise(result), written to the results file, and its figure beside it."""
    result = summarise(result)
    path = out_path(args)
    write(path, result)
    for v in result["verdicts"]:
        print(f"{verdict_word(v['holds'])}: {v['claim']}")
    if plot is not None:
        plot(result, path.with_suffix(".png"))
    print(f"wrote {path}")
    return result


def resummarise(args: argparse.Namespace, summarise: Summarise) -> int:
    """The same summarise on the raw data of the existing results file, written back."""
    path = out_path(args)
    old = json.loads(path.read_text())
    new = summarise(json.loads(path.read_text()))
    write(path, new)
    changed = [k for k in new if old.get(k) != new[k]]
    print(f"rewrote {path}; changed: {', '.join(changed) or 'nothing'}")
    return 0
