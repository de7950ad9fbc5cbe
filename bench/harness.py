"""What every bench script shares: its command line, the arm × seed loop with its cache, training
to the last step with injected components, figures, and the results file.

A script imports it before the project (`import harness`), which puts the repository root on
sys.path, and runs as `bench/NAME.py` (measures: bench/results/<name>.json and .png), `--smoke`
(to a temporary folder) or `--resummarise` (the derived parts again, from the raw data). Every
results file has one schema, which bench/report.py renders: `name`, `command`, `arms` and `raw`
are written when measuring; `title`, `summary`, `body` (paragraphs and tables {"head", "rows"}),
`figures` ([file, caption]), `verdicts` (claims.py) and `notes` (by hand, dated) are what the
script's `summarise(result)` derives from them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from claims import verdict_word  # noqa: E402

from models.objective import Objective, Term  # noqa: E402
from tuner.config.build import build_dataset, build_objective  # noqa: E402
from tuner.config.spec import resolve  # noqa: E402
from tuner.config.terms import discriminator_for  # noqa: E402
from tuner.training.trainer import Trainer  # noqa: E402

Result = dict[str, Any]
Args = argparse.Namespace
Summarise = Callable[[Result], Result]
CACHE = Path(tempfile.gettempdir()) / "diffsearch_bench"
KEYS = ("name", "title", "command", "arms", "summary", "body", "figures", "verdicts", "notes")


def parser(name: str, doc: str, *, seeds: list[int] | None = None, steps: int | None = None, cache: bool = False) -> argparse.ArgumentParser:  # fmt: skip
    """--smoke, --out and --resummarise; --seeds, --steps and --cache where a default is given."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.set_defaults(name=name)
    p.add_argument("--smoke", action="store_true", help="seconds; writes to a temporary folder")
    p.add_argument("--out", type=Path, help=f"results file (default bench/results/{name}.json)")
    p.add_argument("--resummarise", action="store_true", help="recompute the summary and verdicts of the results file from its raw data")  # fmt: skip
    if seeds is not None:
        p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps, help="training steps per run")
    if cache:
        p.add_argument("--cache", type=Path, default=CACHE / name, help="finished runs, by key")
    return p


def cli(p: argparse.ArgumentParser, summarise: Summarise, measure: Callable[[Args], int | str | None], smoke: dict[str, Any] | None = None) -> int | str:  # fmt: skip
    """A script's main: --resummarise re-derives its results file from the raw data; else
    measure(args) (which writes it through `finish`), with `smoke`'s values for --smoke."""
    args = p.parse_args()
    if args.resummarise:
        return resummarise(args, summarise)
    vars(args).update((smoke or {}) if args.smoke else {})
    return measure(args) or 0


def main(name: str, doc: str, summarise: Summarise, measure: Callable[[Args], int | str | None], smoke: dict[str, Any] | None = None, *,
         arms: Iterable[str] = (), threads: int | None = None, seeds: list[int] | None = None, steps: int | None = None,
         cache: bool = False, **defaults: Any) -> NoReturn:  # fmt: skip
    """A script's entry point: its `parser`, with --arms where `arms` are named and the other
    settings' `defaults`, run by `cli` on `threads` torch threads where given."""
    p = parser(name, doc, seeds=seeds, steps=steps, cache=cache)
    if arms:
        p.add_argument("--arms", nargs="+", default=list(arms), choices=list(arms))
    p.set_defaults(**defaults)
    if threads is not None:
        torch.set_num_threads(threads)
    raise SystemExit(cli(p, summarise, measure, smoke))


def out_path(args: Args) -> Path:
    """--out, else bench/results/<name>.json, or a temporary file for --smoke."""
    return Path(args.out or (CACHE / "smoke" if args.smoke else RESULTS) / f"{args.name}.json")


def cache_dir(args: Args) -> Path | None:
    """The run cache; none for --smoke, whose runs are not worth keeping."""
    return None if args.smoke else getattr(args, "cache", None)


def cached(cache: Path | None, config: dict[str, Any], extra: dict[str, Any], fn: Callable[[], Result], name: str = "{}.json") -> Result:  # fmt: skip
    """fn() once per (config, extra), kept under `cache` as the file `name` of their key: JSON,
    or a torch file (tensors) for a .pt name."""
    if cache is None:
        return fn()
    key = hashlib.sha1(json.dumps({"config": config, "extra": extra}, sort_keys=True).encode())
    file, tensors = cache / name.format(key.hexdigest()[:16]), name.endswith(".pt")
    if file.exists():
        return torch.load(file, weights_only=True) if tensors else json.loads(file.read_text())
    result = fn()
    if tensors:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result, file)
    else:
        write(file, result, indent=None)
    return result


def arm_seed_loop(arms: Iterable[str], seeds: Iterable[int], run: Callable[[str, int], Result],
                  show: Callable[[Result], str] | None = None) -> dict[str, list[Result]]:  # fmt: skip
    """run(arm, seed) for every seed and, within a seed, every arm: {arm: [result per seed]};
    each shown in one line by `show` as it ends."""
    runs: dict[str, list[Result]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm, rows in runs.items():
            rows.append(r := run(arm, seed))
            if show is not None:
                print(f"seed {seed} {arm:22s} {show(r)}", flush=True)
    return runs


def cached_runs(args: Args, base: dict[str, Any], arms: dict[str, dict[str, Any]], extra: dict[str, Any],
                fn: Callable[[dict[str, Any]], Result], show: Callable[[Result], str]) -> dict[str, list[Result]]:  # fmt: skip
    """fn(base | arms[arm] | {"seed": seed}) for args.seeds × args.arms (default: every arm),
    each cached by its config and `extra` under --cache and shown in one line as it ends."""

    def run(arm: str, seed: int) -> Result:
        config = base | arms[arm] | {"seed": seed}
        return cached(cache_dir(args), config, extra, lambda: fn(config))

    return arm_seed_loop(getattr(args, "arms", None) or arms, args.seeds, run, show)


def first_samples(runs: dict[str, list[Result]]) -> dict[str, Any]:
    """Each arm's first-seed "samples" (for a figure), taken out of every run."""
    return {arm: [r.pop("samples") for r in rows][0] for arm, rows in runs.items()}


def seconds(fn: Callable[[], object], repeats: int = 1, clock: Callable[[], float] = time.perf_counter) -> list[float]:  # fmt: skip
    """The seconds each of `repeats` calls of fn takes (wall time, or another clock)."""
    out = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def loadavg() -> list[float]:
    """The machine's load averages (1, 5, 15 minutes), as results files record them."""
    return [round(x, 2) for x in os.getloadavg()]


# -- training with injected components --------------------------------------------------------
def train(config: dict[str, Any], **components: Any) -> tuple[Trainer, dict[str, float]]:
    """A Trainer of `config` with the injected components (model, objective, dataset) trained
    to train.steps; and its wall and CPU seconds (construction included) and the mean total loss
    over the last tenth of the steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = Trainer(config, **components)
    steps = range(trainer.step, trainer.config["train.steps"])
    tail = [trainer.train_step()["loss/total"] for _ in steps][-max(1, len(steps) // 10) :]
    return trainer, {"time/train_s": time.perf_counter() - t0, "time/train_cpu_s": time.process_time() - c0,
                     "loss/total_last10pct": sum(tail) / len(tail)}  # fmt: skip


def components(config: dict[str, Any], *, disc: dict[str, Any] | None = None,
               term: Callable[[Any, dict[str, Any]], Term] | None = None) -> dict[str, Any]:  # fmt: skip
    """What a benchmark injects into the Trainer: the dataset and objective of `config`, with a
    trained TIW discriminator's state `disc` in its TIW term (the arms of a seed share one and
    none pre-trains again), and term(dataset, config) in place of the config's term of its name."""
    config = resolve(config)
    dataset, trained = build_dataset(config), None
    if disc is not None:
        (trained := discriminator_for(dataset)).load_state_dict(disc)
    objective = build_objective(config, dataset, disc=trained)
    if term is not None:
        new = term(dataset, config)
        objective = Objective({**objective.terms, new.name: new}.values())
    return {"dataset": dataset, "objective": objective}


def discriminator(config: dict[str, Any]) -> tuple[Trainer, dict[str, Any], dict[str, float]]:
    """A TIW discriminator pre-trained as the trainer's prepare() does (TIW on at strength 1):
    the trainer that holds it (to check it), its state (to share) and its training metrics."""
    metrics = (trainer := Trainer(config | {"tiw.strength": 1.0})).prepare()
    return trainer, trainer.objective.tiw.disc.state_dict(), metrics


def shared_discriminator(config: dict[str, Any], check: Callable[[Trainer], dict[str, float]],
                         cache: Path | None = None) -> tuple[dict[str, Any], dict[str, float]]:  # fmt: skip
    """A seed's discriminator for its arms to share (see `discriminator`): its state, and its
    training metrics with time/prepare_s and check(trainer); kept under `cache`."""
    config = config | {"tiw.strength": 1.0}

    def fit() -> Result:
        t0 = time.perf_counter()
        trainer, state, metrics = discriminator(config)
        metrics |= {"time/prepare_s": time.perf_counter() - t0} | check(trainer)
        return {"state": state, "metrics": json.dumps(metrics)}

    saved = cached(cache, config, {"what": "disc"}, fit, "disc-{}.pt")
    return saved["state"], json.loads(saved["metrics"])


# -- figures ------------------------------------------------------------------------------------
def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only)."""
    import matplotlib  # the backend is chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: Path, *shape: int, **kw: Any) -> Iterator[tuple[Any, Any]]:
    """(figure, axes) of pyplot's subplots(*shape, **kw), laid out and saved to `path`."""
    fig, axes = pyplot().subplots(*shape, **kw)
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def steps_axis(ax: Any, steps: Iterable[int], **labels: Any) -> None:
    """A log x axis ticked at the sampler steps `steps`."""
    ax.set(xscale="log", **labels)
    ax.set_xticks(list(steps), [str(k) for k in steps])
    ax.minorticks_off()


def errorbars(ax: Any, x: Iterable, s: dict[str, Any], key: str, at: list | None = None) -> None:
    """One line per arm of a summary: mean ± std of s[arm][key.format(i)] for each i in x."""
    for arm, v in s.items():
        m, e = ([v[key.format(i)][k] for i in x] for k in ("mean", "std"))
        ax.errorbar(list(x) if at is None else at, m, yerr=e, marker="o", ms=3, capsize=2, label=arm)  # fmt: skip


def bars(ax: Any, s: dict[str, Any], runs: dict[str, list[dict]], key: str) -> None:
    """One bar per arm of a summary: mean ± std of `key`, and each seed's value as a dot."""
    names = list(runs)
    ax.bar(range(len(names)), [s[n][key]["mean"] for n in names],
           yerr=[s[n][key]["std"] for n in names], capsize=4, color="0.75")  # fmt: skip
    for i, n in enumerate(names):
        ax.scatter([i] * len(runs[n]), [r[key] for r in runs[n]], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)


# -- results files ----------------------------------------------------------------------------
def new(args: Args, arms: dict[str, Any], raw: Result, env: str = "") -> Result:
    """A results file's measured part: its name, command line, arms and raw measurements."""
    argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return {"name": args.name, "command": f"{env}.venv/bin/python bench/{argv}".strip(), "arms": arms, "raw": raw}  # fmt: skip


def page(result: Result, title: str, body: list, verdicts: list[dict[str, Any]], *, figures: Iterable[tuple[str, str]] = (),
         notes: Iterable[dict[str, str]] = (), summary: Any = None) -> Result:  # fmt: skip
    """`result` with what the page shows of it, its keys in the schema's order (raw last)."""
    result |= {"title": title, "body": body, "figures": [list(f) for f in figures], "verdicts": verdicts, "notes": list(notes)}  # fmt: skip
    if summary is not None:
        result["summary"] = summary
    return {k: result[k] for k in [k for k in KEYS if k in result] + [k for k in result if k not in KEYS]}  # fmt: skip


def write(path: Path, result: Result, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + ("\n" if indent else ""))


def finish(args: Args, result: Result, summarise: Summarise, plot: Callable[[Result, Path], None] | None = None) -> Result:  # fmt: skip
    """summarise(result), written to the results file, and its figure beside it."""
    result, path = summarise(result), out_path(args)
    write(path, result)
    for v in result["verdicts"]:
        print(f"{verdict_word(v['holds'])}: {v['claim']}")
    if plot is not None:
        plot(result, path.with_suffix(".png"))
    print(f"wrote {path}")
    return result


def resummarise(args: Args, summarise: Summarise) -> int:
    """The same summarise on the raw data of the existing results file, written back."""
    path = out_path(args)
    old, new = json.loads(path.read_text()), summarise(json.loads(path.read_text()))
    write(path, new)
    print(f"rewrote {path}; changed: {', '.join(k for k in new if old.get(k) != new[k]) or 'nothing'}")  # fmt: skip
    return 0
