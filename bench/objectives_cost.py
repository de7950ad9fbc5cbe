"""Per-step cost of each paper objective against plain ε-MSE on the same net and batch.

A step is objective + backward + AdamW step, timed in process CPU time with one torch thread
(wall time on a shared machine swings with other jobs), in interleaved rounds; the ratio is
median(arm)/median(plain) and [min, max] the spread of the per-round ratios.
Targets (issue 3): weighting alone ≤ 1.02×, TIW ≤ 1.6×, Tweedie ≤ 1.05×, consistency
≤ (2k+3)× for k chain steps, CDL ≤ 3×.
"""

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import harness
import torch
from claims import every, median_interval, table, target_holds, verdict
from harness import Args, Result

from models.ambient import AmbientLoss, ConsistencyLoss
from models.cdl import CDLLoss
from models.discriminator import ConvDiscriminator, MLPDiscriminator
from models.losses import DenoiseLoss
from models.nets import MLP, UNet
from models.objective import Objective
from models.param import EpsModel
from models.schedules import CosineDensity
from models.tiw import TIWCorrection, TIWLoss
from models.weighting import Constant, Debiased, Normalized
from tuner.data.presets import load_dataset

NAME = "objectives_cost"
TITLE = "Cost of each objective per step"
NETS = ("mlp", "unet")
TARGETS = {"weighting": 1.02, "tiw_full": 1.6, "tiw_weight": 1.6, "tiw_correction": 1.6, "tweedie": 1.05,
           "consistency_k1": 5.0, "consistency_k2": 7.0, "consistency_k4": 11.0, "cdl_default": 3.0, "cdl_m2": 3.0}  # fmt: skip


def arms(setting: str) -> tuple[torch.nn.Module, torch.Tensor, dict[str, Objective]]:
    """The net, one batch and every objective for a setting ("mlp" or "unet")."""
    q, mlp = CosineDensity(), setting == "mlp"
    data = load_dataset("bimodal_biased" if mlp else "digits", seed=0).train
    net = EpsModel(MLP(2, width=256, depth=3) if mlp else UNet(1, width=32, levels=2))
    disc = (lambda: MLPDiscriminator(2)) if mlp else (lambda: ConvDiscriminator(1))
    flat, plain, ambient = data.flatten(1), DenoiseLoss(Constant(), q), AmbientLoss(0.5 if mlp else 0.2, Constant(), q)  # fmt: skip
    mean, cov = flat.mean(0), torch.cov(flat.T)
    objectives = {"plain": Objective([plain]), "weighting": Objective([DenoiseLoss(Normalized(Debiased(), q), q)])}  # fmt: skip
    objectives |= {f"tiw_{m}": Objective([TIWLoss(plain, TIWCorrection(disc(), 1.0, m))]) for m in ("full", "weight", "correction")}  # fmt: skip
    objectives["tweedie"] = Objective([ambient])
    objectives |= {f"consistency_k{k}": Objective([ambient, ConsistencyLoss(ambient.sigma_n, chain_steps=k, coef=0.015)]) for k in (1, 2, 4)}  # fmt: skip
    objectives |= {"cdl_default": Objective([plain, CDLLoss(mean, cov)]), "cdl_m2": Objective([plain, CDLLoss(mean, cov, mc_points=2)])}  # fmt: skip
    return net, data[:256] if mlp else data[:64], objectives


def make_step(net: torch.nn.Module, objective: Objective, x0: torch.Tensor) -> Callable[[int], None]:  # fmt: skip
    """One training step of a copy of `net` on x0 with `objective`, seeded by its index."""
    model = copy.deepcopy(net)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        terms = objective(model, x0, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        terms["loss"].mean().backward()
        opt.step()

    return step


def measure_net(setting: str, rounds: int, steps: int, warmup: int) -> dict[str, dict[str, float]]:
    """Each objective's step in CPU time (robust to other jobs on a shared machine), in rounds
    that interleave the objectives; the ratios to the plain step of the same round."""
    net, x0, objectives = arms(setting)
    fns = {name: make_step(net, obj, x0) for name, obj in objectives.items()}
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            run = lambda fn=fn, r=r: [fn(r * steps + i) for i in range(steps)]  # noqa: E731
            times[name] += [t / steps for t in harness.seconds(run, clock=time.process_time)]
    base, out = statistics.median(times["plain"]), {}
    for name, ts in times.items():
        per_round = [t / p for t, p in zip(ts, times["plain"], strict=True)]
        out[name] = {"step_ms": 1e3 * statistics.median(ts), "ratio": statistics.median(ts) / base,
                     "ratio_min": min(per_round), "ratio_max": max(per_round), "ratio_per_round": per_round,
                     "target": TARGETS.get(name, float("nan"))}  # fmt: skip
    return out


def plot(result: Result, path: Path) -> None:
    with harness.figure(path, 1, len(NETS), figsize=(6 * len(NETS), 4)) as (_, axes):
        for ax, setting in zip(axes, NETS, strict=True):
            res = result["raw"][setting]
            names = [n for n in res if n != "plain"]
            ax.bar(range(len(names)), [res[n]["ratio"] for n in names], color="tab:blue", label="measured")  # fmt: skip
            ax.scatter(range(len(names)), [res[n]["target"] for n in names], color="tab:red", marker="_", s=400, label="target")  # fmt: skip
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
            ax.axhline(1.0, color="k", lw=0.5)
            ax.set(ylabel="step time / plain ε-MSE step", title=f"{setting}: plain step {res['plain']['step_ms']:.1f} ms")  # fmt: skip
            ax.legend(fontsize=8)


def summarise(result: Result) -> Result:
    """The table; a verdict per objective on its target, on both nets, by its median's bootstrap
    interval over the rounds; and on consistency's growth in k."""
    raw, verdicts = result["raw"], []
    names = [n for n in raw[NETS[0]] if n != "plain"]
    ci = {(net, n): median_interval(raw[net][n]["ratio_per_round"]) for net in NETS for n in names}
    for name in names:
        target, parts = raw[NETS[0]][name]["target"], []
        for net in NETS:
            (low, high), ratio = ci[net, name], raw[net][name]["ratio"]
            parts.append(f"{net} {ratio:.2f}× (median's 95 % bootstrap interval [{low:.2f}, {high:.2f}])")  # fmt: skip
        holds = every(target_holds(*ci[net, name], target, at_least=False) for net in NETS)
        claim = f"One {name} step costs at most {target:g}× a plain ε-MSE step ({', '.join(NETS)})"
        verdicts.append(verdict(claim, holds, "; ".join(parts)))
    grows = all(ci[n, "consistency_k4"][0] > ci[n, "consistency_k1"][1] for n in NETS)
    by_k = "; ".join(f"{n} " + ", ".join(f"k={k} {raw[n][f'consistency_k{k}']['ratio']:.2f}×" for k in (1, 2, 4)) for n in NETS)  # fmt: skip
    claim = "Consistency's cost grows with its chain length: k = 4 costs more than k = 1 (their intervals apart)"  # fmt: skip
    verdicts.append(verdict(claim, grows, by_k))
    meta, net_name = raw["meta"], {"mlp": "MLP", "unet": "UNet"}
    head = ["objective", "target"] + [f"{net_name[n]} ({meta[n]})" for n in NETS]
    rows = [[n, f"≤ {raw[NETS[0]][n]['target']:g}×"]
            + [f"{raw[net][n]['ratio']:.2f}× [{raw[net][n]['ratio_min']:.2f}, {raw[net][n]['ratio_max']:.2f}]" for net in NETS]
            for n in names]  # fmt: skip
    plain = ", ".join(f"{raw[n]['plain']['step_ms']:.1f} ms {net_name[n]}" for n in NETS)
    body = [
        f"`{result['command']}` — one step (objective, backward, AdamW) in process CPU time on "
        f"{meta['threads']} thread, median of {meta['rounds']} interleaved rounds of "
        f"{meta['steps_per_round']} steps, over the plain ε-MSE step on the same net and batch "
        f"(plain: {plain}); brackets: the spread of the per-round ratios. consistency_kK has K "
        "chain steps; cdl_m2 uses 2 Monte-Carlo points.",
        table(head, rows),
    ]
    return harness.page(result, TITLE, body, verdicts, figures=[("objectives_cost.png", "per-step cost")])  # fmt: skip


def measure(args: Args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    raw: dict = {"meta": {"threads": args.threads, "rounds": args.rounds, "steps_per_round": args.steps, "torch": torch.__version__,
                          "mlp": "MLP(2, 256, 3), batch 256", "unet": "UNet(1, 32, 2 levels), digits 8x8, batch 64"}}  # fmt: skip
    for setting in NETS:
        raw[setting] = measure_net(setting, args.rounds, args.steps, args.warmup)
        for name, r in raw[setting].items():
            print(f"{setting} {name:16s} {r['step_ms']:8.2f} ms  {r['ratio']:5.2f}x  target {r['target']:.2f}")  # fmt: skip
    harness.finish(args, harness.new(args, TARGETS, raw), summarise, plot)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__)
    p.set_defaults(threads=1, rounds=9, steps=6, warmup=5)  # steps per round
    raise SystemExit(harness.cli(p, summarise, measure, {"rounds": 2, "steps": 2, "warmup": 1}))
