"""bench/gpu_trial.py, checked on the CPU: one line without CUDA, and its whole code path with
--smoke (tiny sizes), so a GPU session runs a script that is known to work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_trial.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [
        "gpu_trial: no CUDA device is visible; nothing measured (run it on a GPU machine)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_smoke_runs_every_measurement(tmp_path: Path) -> None:
    path = tmp_path / "gpu_trial.json"
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(path.read_text())  # bench/harness.py's schema
    raw, summary = result["raw"], result["summary"]
    for precision in ("float32", "bf16"):
        assert raw[precision]["steps_per_s"] > 0 and raw[precision]["step_flops"] > 0
        assert summary[precision]["share_of_matmul_peak"] > 0
    assert summary["terms_bf16"]["cdl"]["cost_vs_plain"] > 1  # the contrastive term costs
    assert raw["evaluation"]["eval_s_per_10k"] > 0
    assert [c["trials"] for c in raw["concurrent"]] == [1, 2, 4]
    assert all(len(c["steps_per_s_each"]) == c["trials"] for c in raw["concurrent"])
    assert 0 < summary["budget_trial"]["eval_share"] < 1
    assert result["command"].startswith(".venv/bin/python bench/gpu_trial.py --smoke")
    rows = [row[0] for row in result["body"][1]["rows"]]  # the table the results page would show
    assert rows[:3] == ["training at float32", "training at bf16", "cdl term at bf16"]
