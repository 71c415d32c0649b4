"""configs/train_demo/shipped.yaml is the recipe of the shipped demo model: it loads strictly, and every
train-demo option the shipped folder's training log records has the value that file gives it."""

import dataclasses
import json
from pathlib import Path

from emu3.commands import default_model_folder
from emu3.configuration import load
from emu3.recipes.train_demo import DemoConfig

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "train_demo" / "shipped.yaml"
# Where and on what a run went, not how it trained (vq_config: checked below, as a path in the checkout).
PLACE = {"out", "vq_from", "device", "export", "vq_config"}


def test_shipped_recipe_is_the_shipped_models_training_log():
    cfg = load(DemoConfig, RECIPE)
    logged = json.loads((default_model_folder() / "training_log.json").read_text())["config"]
    # options added after the model was trained are not in its log (it ran as their defaults do)
    fields = [f.name for f in dataclasses.fields(DemoConfig) if f.name not in PLACE and f.name in logged]
    assert len(fields) > 50
    differ = {k: (str(getattr(cfg, k)), logged[k]) for k in fields if str(getattr(cfg, k)) != logged[k]}
    assert not differ, f"recipe vs shipped log: {differ}"
    assert cfg != DemoConfig(), "the recipe is not the defaults (the one-hour CPU recipe)"
    assert Path(logged["vq_config"]).parts[-3:] == Path(cfg.vq_config).parts[-3:]  # configs/train_vq/demo.yaml
