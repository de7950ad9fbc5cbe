"""bench/harness.py, the benchmarks' shared library: components injected into the Trainer (a
shared discriminator that is not trained again, a term in place of the config's), training to
the last step, and the results schema written and re-summarised from its raw data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import harness  # noqa: E402

from models.cdl import CDLLoss  # noqa: E402
from tuner.training.trainer import Trainer  # noqa: E402

TIW = {"data": "bimodal_biased", "tiw.strength": 1.0, "tiw.disc_steps": 20, "tiw.disc_batch": 32,
       "train.steps": 3, "train.batch": 32, "net.width": 16, "net.depth": 1, "eval.samples": 50}  # fmt: skip


def test_a_shared_discriminator_is_injected_trained_and_stays_as_it_was() -> None:
    _, state, metrics = harness.discriminator(TIW)
    assert metrics  # it was pre-trained, once
    # made unlike anything pre-training gives, so that a discriminator trained again would show
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()}
    config = TIW | {"tiw.strength": 0.5, "tiw.mode": "correction"}
    trainer, info = harness.train(config, **harness.components(config, disc=state))
    assert trainer.prepared and trainer.step == 3 and info["time/train_s"] > 0
    assert trainer.prepare() == {}  # nothing left to pre-train
    for key, value in trainer.objective.tiw.disc.state_dict().items():
        assert torch.equal(value, state[key]), key  # the shared discriminator, frozen


def test_a_term_of_the_benchmark_replaces_the_configs() -> None:
    config = {
        "data": "ring8",
        "cdl.coef": 0.1,
        "train.steps": 2,
        "train.batch": 16,
        "net.width": 16,
    }

    def cdl(data: object, c: dict) -> CDLLoss:
        flat = data.train.flatten(1)
        return CDLLoss(flat.mean(0), torch.cov(flat.T), mc_points=2, coef=c["cdl.coef"])

    parts = harness.components(config, term=cdl)
    term = parts["objective"].terms["cdl"]
    assert isinstance(term, CDLLoss) and term.mc_points == 2 and term.coef == 0.1
    trainer = Trainer(config, **parts)
    assert trainer.objective is parts["objective"] and trainer.dataset is parts["dataset"]
    assert "loss/cdl" in trainer.train_step()


def _summarise(result: dict) -> dict:
    values = result["raw"]["values"]
    body = [f"`{result['command']}` — {len(values)} values", {"head": ["n"], "rows": [[str(len(values))]]}]  # fmt: skip
    return harness.page(result, "A test", body, [], summary={"total": sum(values)})


def test_a_results_file_holds_its_command_and_raw_data_and_resummarises(tmp_path: Path) -> None:
    args = argparse.Namespace(name="example", out=tmp_path / "example.json", smoke=False)
    harness.finish(args, harness.new(args, {"a": {"seed": 0}}, {"values": [1, 2, 3]}), _summarise)
    written = json.loads(args.out.read_text())
    assert list(written) == ["name", "title", "command", "arms", "summary", "body", "figures",
                             "verdicts", "notes", "raw"]  # fmt: skip
    assert written["command"].startswith(".venv/bin/python bench/") and written["summary"] == {"total": 6}  # fmt: skip
    written["raw"]["values"].append(4)  # new raw data: --resummarise derives the rest again
    args.out.write_text(json.dumps({k: written[k] for k in ("name", "command", "arms", "raw")}))
    harness.resummarise(args, _summarise)
    again = json.loads(args.out.read_text())
    assert again["summary"] == {"total": 10} and again["body"][1]["rows"] == [["4"]]
