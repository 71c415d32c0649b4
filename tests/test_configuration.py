"""The strict YAML / key=value config loader."""

from dataclasses import dataclass, field

import pytest

from emu3.configuration import ConfigError, load, to_yaml


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.95)


@dataclass(frozen=True)
class Recipe:
    steps: int = 10
    name: str = "run"
    bf16: bool = False
    resume: str | None = None
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError("steps must be positive")


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.01\n")
    cfg = load(Recipe, path, ["optim.lr=1e-4", "bf16=true", "name=123"])
    assert cfg == Recipe(steps=20, name="123", bf16=True, optim=Optim(lr=1e-4))
    assert load(Recipe, None, ["optim.betas=[0.8, 0.9]"]).optim.betas == (0.8, 0.9)
    assert load(Recipe, None, ["resume=null"]).resume is None


def test_yaml_round_trip(tmp_path):
    cfg = load(Recipe, None, ["steps=3", "optim.lr=0.5"])
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    assert load(Recipe, path) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["stepz=3"], "unknown config key.*stepz"),
        (["optim.lrr=1"], "unknown config key.*optim.lrr"),
        (["steps=1.5"], "steps: expected an integer"),
        (["bf16=maybe"], "bf16: expected true/false"),
        (["steps=-1"], "steps must be positive"),
        (["steps"], "key=value"),
        (["optim=3"], "optim: expected a mapping"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(Recipe, None, overrides)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(Recipe, tmp_path / "nope.yaml")
