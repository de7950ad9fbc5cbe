"""What an export prints: the target's native setting, its distance to the found effective
weighting, and one line for each part of the found objective the target cannot express."""

from __future__ import annotations

from typing import Any

from tuner.data.presets import preset_entry
from tuner.export.curves import EXACT, Fit, nearest
from tuner.export.targets import TARGETS, Context


def inexpressible(config: dict[str, Any], target: str) -> list[str]:
    """One line per term of the found objective that a w(λ)·q(λ) cannot carry."""
    lines = []
    if config["tiw.strength"] > 0:
        lines.append(
            f"TIW-DSM (tiw.strength={config['tiw.strength']:.3g}; Kim et al. 2024): {target} has "
            "no time-dependent density-ratio weight or score correction"
        )
    if config["cdl.coef"] > 0:
        lines.append(
            f"CDL (cdl.coef={config['cdl.coef']:g}; Wu et al. 2024): {target} has no "
            "contrastive noise-classification term"
        )
    if preset_entry(config["data"]).info.get("noisy") and config["ambient.tweedie"]:
        lines.append(
            f"ambient Tweedie objective on noisy data (data={config['data']}; Daras et al. 2024): "
            f"{target} trains on its data as if clean"
        )
    if config["ambient.consistency"] > 0:
        lines.append(
            f"ambient consistency (ambient.consistency={config['ambient.consistency']:g}): "
            f"{target} has no consistency term"
        )
    learned = config["weighting.learned"]
    if target == "edm2" and not learned:
        lines.append(
            "edm2's EDM2Loss always learns the log-variance u(σ) (Karras et al. 2024, Eq. 21); "
            "the found loss has none (weighting.learned=false)"
        )
    elif target != "edm2" and learned:
        lines.append(
            f"EDM2's learned log-variance u(λ) (weighting.learned=true): {target} has no "
            "learned weighting"
        )
    return lines


def fit(config: dict[str, Any], target: str, ctx: Context) -> tuple[str, Fit]:
    """Where the target's setting goes (its scripts or config) and the nearest setting."""
    where, families = TARGETS[target](ctx, config)
    return where, nearest(families, config)


def describe(config: dict[str, Any], target: str, ctx: Context) -> str:
    """The export's lines for one trainer."""
    where, best = fit(config, target, ctx)
    lines = [f"{target}: {where}"]
    if target != "edm2":  # EDM2 has one parameterisation and no scheduler
        if ctx.prediction == "flow":
            lines.append("  model: rectified flow, velocity prediction (--prediction flow)")
        else:
            times = f"uniform timesteps of a {ctx.schedule} schedule"
            lines.append(f"  model: {ctx.prediction}, {times} (--prediction, --schedule)")
    lines.append(f"  {best.flags}")
    lo, hi = config["noise.logsnr_min"], config["noise.logsnr_max"]
    span = f"between the normalised w(λ)·q(λ) over λ in [{lo:g}, {hi:g}]"
    if best.distance < EXACT:
        lines.append(f"  exact: L1 distance 0 {span}")
    else:
        d = best.distance
        lines.append(f"  nearest: L1 distance {d:.3g} {span} (0 = the same, 2 = disjoint)")
    lines += [f"  cannot express: {line}" for line in inexpressible(config, target)]
    return "\n".join(lines)
