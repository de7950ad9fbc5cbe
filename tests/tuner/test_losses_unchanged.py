"""The first training steps of a few configurations (every objective term, the EDM2 head, TIW on
vectors and images) against the losses recorded on main before the objective became a registry
of terms (commit 0b2c0c9, as float.hex). On the machine that recorded them they are equal bit for
bit; the check allows 1e-6 relative so that another CPU's float32 kernels do not fail it."""

from __future__ import annotations

import pytest

from tuner.training.trainer import Trainer

SMALL = {"net.width": 32, "net.depth": 1, "train.batch": 64, "train.threads": 1}

RECORDED = {
    "ring8_learned": (
        {"data": "ring8", "weighting": "debiased", "weighting.learned": True},
        [
            {"loss/denoise": "0x1.94839a0000000p-5", "loss/total": "0x1.94839a0000000p-5"},
            {"loss/denoise": "0x1.10114e0000000p-4", "loss/total": "0x1.10114e0000000p-4"},
            {"loss/denoise": "0x1.1869d20000000p-4", "loss/total": "0x1.1869d20000000p-4"},
        ],
    ),
    "tiw_cdl": (
        {
            "data": "bimodal_biased",
            "weighting": "parametric",
            "weighting.p": 0.7,
            "weighting.k": 1.0,
            "tiw.strength": 1.0,
            "tiw.disc_steps": 30,
            "tiw.disc_batch": 64,
            "cdl.coef": 1.0,
            "cdl.mc_points": 4,
            "cdl.fraction": 0.25,
        },
        [
            {
                "loss/denoise": "0x1.ff57b60000000p-3",
                "loss/cdl": "0x1.246c920000000p-2",
                "loss/total": "0x1.120c380000000p-1",
            },
            {
                "loss/denoise": "0x1.d94ebc0000000p-3",
                "loss/cdl": "0x1.4d37b20000000p-2",
                "loss/total": "0x1.1cef860000000p-1",
            },
            {
                "loss/denoise": "0x1.5b12900000000p-2",
                "loss/cdl": "0x1.b5ae640000000p-3",
                "loss/total": "0x1.1af4e20000000p-1",
            },
        ],
    ),
    "tiw_corr_learned": (
        {
            "data": "bimodal_biased",
            "tiw.strength": 0.5,
            "tiw.mode": "correction",
            "tiw.disc_steps": 20,
            "tiw.disc_batch": 64,
            "weighting.learned": True,
            "noise": "logistic",
            "noise.loc": 1.0,
        },
        [
            {"loss/denoise": "0x1.3301b80000000p-1", "loss/total": "0x1.3301b80000000p-1"},
            {"loss/denoise": "0x1.bbfd460000000p-2", "loss/total": "0x1.bbfd460000000p-2"},
            {"loss/denoise": "0x1.42ffb80000000p-1", "loss/total": "0x1.42ffb80000000p-1"},
        ],
    ),
    "ambient_cons_gap": (
        {
            "data": "gaussian_noisy",
            "ambient.consistency": 0.1,
            "ambient.chain_steps": 2,
            "ambient.gap": 1.0,
        },
        [
            {
                "loss/denoise": "0x1.78f1600000000p+0",
                "loss/consistency": "0x1.f16e040000000p-5",
                "loss/total": "0x1.7a7f540000000p+0",
            },
            {
                "loss/denoise": "0x1.fb89800000000p-2",
                "loss/consistency": "-0x1.861f700000000p-4",
                "loss/total": "0x1.f1c8b80000000p-2",
            },
            {
                "loss/denoise": "0x1.069b0c0000000p-1",
                "loss/consistency": "-0x1.de14d00000000p-8",
                "loss/total": "0x1.063b6e0000000p-1",
            },
        ],
    ),
    "naive_cdl": (
        {
            "data": "mixture_noisy",
            "ambient.tweedie": False,
            "cdl.coef": 0.5,
            "cdl.mc_points": 3,
            "cdl.fraction": 0.1,
        },
        [
            {
                "loss/denoise": "0x1.2ff5680000000p-1",
                "loss/cdl": "0x1.86363e0000000p-2",
                "loss/total": "0x1.9182f80000000p-1",
            },
            {
                "loss/denoise": "0x1.abe7b00000000p-2",
                "loss/cdl": "0x1.956b400000000p-2",
                "loss/total": "0x1.3b4ea80000000p-1",
            },
            {
                "loss/denoise": "0x1.f35ce80000000p-2",
                "loss/cdl": "0x1.b7ce6a0000000p-2",
                "loss/total": "0x1.67a2100000000p-1",
            },
        ],
    ),
    "digits_tiw_cdl": (
        {
            "data": "digits_biased",
            "net.width": 8,
            "train.batch": 16,
            "tiw.strength": 1.0,
            "tiw.disc_steps": 4,
            "tiw.disc_batch": 16,
            "cdl.coef": 0.1,
            "cdl.mc_points": 2,
            "cdl.fraction": 0.25,
        },
        [
            {
                "loss/denoise": "0x1.d99bb40000000p-2",
                "loss/cdl": "0x1.8723960000000p-11",
                "loss/total": "0x1.d9af440000000p-2",
            },
            {
                "loss/denoise": "0x1.1418dc0000000p-1",
                "loss/cdl": "0x1.36035e0000000p-3",
                "loss/total": "0x1.1bd8f40000000p-1",
            },
            {
                "loss/denoise": "0x1.d666b00000000p-2",
                "loss/cdl": "0x1.6b03100000000p+2",
                "loss/total": "0x1.06ce180000000p+0",
            },
        ],
    ),
}


@pytest.mark.parametrize("name", list(RECORDED))
def test_the_first_steps_losses_are_the_recorded_ones(name: str) -> None:
    overrides, steps = RECORDED[name]
    trainer = Trainer(SMALL | overrides)
    trainer.prepare()
    for want in steps:
        got = trainer.train_step()
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(float.fromhex(value), rel=1e-6, abs=1e-12), key
