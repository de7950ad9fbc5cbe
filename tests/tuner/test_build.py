"""tuner/config/build.py: objects from a flat config through the registries, and what a new registry
entry takes (docs/architecture.md, "Adding a weighting with one parameter")."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor

from models.objective import TERMS
from models.schedules import DENSITIES, CosineDensity
from models.weighting import WEIGHTINGS, Normalized, Weighting
from tuner.config import build
from tuner.config.spec import (
    DEFAULTS,
    FACTS,
    REGISTRIES,
    SPEC,
    ConfigError,
    Spec,
    extended,
    load_config_file,
    markdown_table,
    resolve,
)
from tuner.data.presets import DATASETS


class CubicDecay(Weighting):
    """w = 1/(1 + c·SNR)^3: a weighting no test elsewhere knows."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)

    def __call__(self, logsnr: Tensor) -> Tensor:
        return (1.0 + self.c * logsnr.exp()) ** -3


def test_a_new_weighting_takes_its_class_its_spec_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(SPEC, "weighting.c", Spec("float", 1.0, "c of the cubic decay", low=0.0))
    with WEIGHTINGS.extended("cubic_decay", CubicDecay, params={"c": "weighting.c"}):
        config = resolve(
            {"weighting": "cubic_decay", "weighting.c": 2.0, "weighting.normalize": False}
        )
        w = build.build_weighting(config, CosineDensity())
        assert isinstance(w, CubicDecay) and w.c == 2.0
        # at λ = 0 (SNR 1): 1/(1 + 2)^3, worked out by hand
        assert float(w(torch.zeros(1))) == pytest.approx(1 / 27)
        assert "cubic_decay" in markdown_table() and "`weighting.c`" in markdown_table()
        with pytest.raises(ConfigError, match=r"weighting.c=-1 is not allowed"):
            resolve({"weighting": "cubic_decay", "weighting.c": -1})
    with pytest.raises(ConfigError, match='weighting="cubic_decay" is not allowed'):
        resolve({"weighting": "cubic_decay"})  # gone with its registry entry


def test_every_key_a_registry_reads_is_a_spec_key_and_every_choice_is_registered() -> None:
    for key, registry in REGISTRIES.items():
        assert registry.config_keys() <= set(SPEC), key
        assert set(registry) <= set(SPEC[key].choices), key
    weighting_keys = {k for k in SPEC if k.startswith("weighting.")}
    used = WEIGHTINGS.config_keys() | {"weighting.normalize", "weighting.learned"}
    assert weighting_keys == used, "a weighting.* key that no weighting reads"
    assert DENSITIES.config_keys() == {k for k in SPEC if k.startswith("noise.")}


def test_every_term_reads_spec_keys_and_declares_what_a_refusal_can_name() -> None:
    assert TERMS.config_keys() <= set(SPEC)
    facts = {f for n in DATASETS for f, v in DATASETS.entry(n).info.items() if v is True}
    for name in TERMS:
        entry = TERMS.entry(name)
        switch, term = entry.info.get("switch"), entry.info["term"]
        assert switch is None or switch in entry.params.values(), name  # its builder reads it
        for other in (*term.requires, *term.refuses):
            assert other in TERMS or other in FACTS and other in facts, (name, other)
    # the builders' order is the order of the draws: the denoising term, whatever replaces or
    # reweights it, then the added terms
    assert list(TERMS) == ["denoise", "ambient", "tiw", "consistency", "cdl"]


def test_an_added_spec_key_is_checked_and_gone_after_its_block() -> None:
    key = {"cdl.extra": Spec("int", 3, "an extra key", low=0, high=5)}
    with extended(key):
        assert resolve({})["cdl.extra"] == 3 and resolve({"cdl.extra": 5})["cdl.extra"] == 5
        with pytest.raises(ConfigError, match=r"cdl.extra=9 is not allowed"):
            resolve({"cdl.extra": 9})
        with pytest.raises(ValueError, match="already specified"), extended(key):
            pass
    assert "cdl.extra" not in resolve({}) and "cdl.extra" not in DEFAULTS


@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_weighting_builds_normalised_to_unit_mean(name: str) -> None:
    density = CosineDensity()
    w = build.build_weighting(resolve({"weighting": name}), density)
    assert isinstance(w, Normalized)
    lam = torch.linspace(density.logsnr_min, density.logsnr_max, 20001, dtype=torch.float64)
    mean = torch.trapezoid(w(lam).double() * density.log_prob(lam).exp(), lam)
    assert float(mean) == pytest.approx(1.0, rel=1e-3)


def test_p2_reads_the_parametric_exponent_and_min_snr_its_own_gamma() -> None:
    p2 = build.build_weighting(
        resolve(
            {
                "weighting": "p2",
                "weighting.p": 1.0,
                "weighting.k": 1.0,
                "weighting.normalize": False,
            }
        ),
        CosineDensity(),
    )
    assert float(p2(torch.zeros(1))) == pytest.approx(0.5)  # (1 + 1)^-1
    min_snr = build.build_weighting(
        resolve(
            {"weighting": "min_snr", "weighting.min_snr_gamma": 2.0, "weighting.normalize": False}
        ),
        CosineDensity(),
    )
    assert float(min_snr(torch.tensor([math.log(8.0)]))) == pytest.approx(0.25)  # min(8, 2)/8


def test_a_moved_key_is_named_in_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"^weighting.gamma was split: .*weighting.min_snr_gamma"):
        resolve({"weighting.gamma": 5.0})
    saved = resolve({"weighting": "min_snr"}) | {"weighting.gamma": 3.0}
    del saved["weighting.min_snr_gamma"]
    path = tmp_path / "best.json"
    path.write_text(json.dumps(saved))
    config = resolve(load_config_file(str(path)))  # an old best.json still loads
    assert config["weighting.min_snr_gamma"] == 3.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read as weighting.min_snr_gamma=3.0" in err


def test_unknown_registry_name_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown weighting 'snr'; known: constant, debiased"):
        WEIGHTINGS.entry("snr")
    with pytest.raises(ValueError, match="registered twice"):
        WEIGHTINGS.add("constant", CubicDecay)


def test_the_old_learned_weighting_is_edm_with_its_head(tmp_path, capsys) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=r'^weighting="learned" is now weighting="edm" with'):
        resolve({"weighting": "learned"})
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"weighting": "learned", "noise": "edm"}))
    config = resolve(load_config_file(str(path)))
    assert config["weighting"] == "edm" and config["weighting.learned"] is True
    assert "weighting.learned=true" in capsys.readouterr().err
    assert build.build_logvar_head(config) is not None
    assert build.build_logvar_head(resolve({"weighting": "edm"})) is None
