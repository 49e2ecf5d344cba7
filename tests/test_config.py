"""The Hydra config tree: every YAML under conf/ composes; the train schema is strict; cross-field checks."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, ValidationError

from mouse.cli.common import to_config
from mouse.losses import LOSSES
from mouse.train import config as C

CONF = Path(__file__).resolve().parents[1] / "conf"


def _primary_configs() -> dict[str, set[str]]:
    """Top-level YAML name → the config groups its defaults list selects."""
    out = {}
    for path in sorted(CONF.glob("*.yaml")):
        defaults = yaml.safe_load(path.read_text()).get("defaults", [])
        out[path.stem] = {next(iter(d)) for d in defaults if isinstance(d, dict)}
    return out


def _group_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML below conf/, walking the tree recursively."""
    return sorted(
        (str(p.parent.relative_to(CONF).as_posix()), p.stem) for p in CONF.rglob("*.yaml") if p.parent != CONF
    )


def _compose(primary: str, overrides: list[str]):
    importlib.import_module(f"mouse.cli.{primary}")  # registers that command's schemas
    with initialize_config_module(config_module="mouse.conf", version_base=None):
        return compose(config_name=primary, overrides=overrides)


def _train(overrides: list[str]) -> C.TrainConfig:
    """The typed config mouse-train runs with: composed, then converted once."""
    return to_config(_compose("train", overrides), C.TrainConfig)


# Values a primary config leaves mandatory (???) for its user to give.
_REQUIRED = {"eval": ["checkpoint=some/run"], "collect": []}


@pytest.mark.parametrize("primary", sorted(_primary_configs()))
def test_every_primary_config_composes(primary):
    cfg = _compose(primary, _REQUIRED.get(primary, []))
    assert OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize(("group", "option"), _group_options())
def test_every_group_option_composes(group, option):
    users = [name for name, groups in _primary_configs().items() if group in groups]
    if not users:  # only reached through another group's defaults (e.g. task@data.collect.task)
        users = ["collect"] if group in ("task", "policy") else []
    assert users, f"conf/{group}/{option}.yaml is used by no primary config"
    extra = ["data.path=/some/dataset"] if (group, option) == ("data", "local") else []
    for primary in users:
        cfg = _compose(primary, [*_REQUIRED.get(primary, []), f"{group}={option}", *extra])
        OmegaConf.to_container(cfg, resolve=False)
        if primary == "train":  # the train options also pass the cross-field checks
            typed = to_config(cfg, C.TrainConfig)
            C.enable_loss_heads(typed)
            C.validate_config(typed)


def test_default_recipe():
    cfg = _train([])
    assert C.active_losses(cfg) == ["sp"]
    assert cfg.loss.sp.target == "teacher" and cfg.loss.sp.loss_type == "ce-soft-fwd"
    assert C.backbone_kwargs(cfg)["num_hidden_layers"] == 3 and "head_dim" not in C.backbone_kwargs(cfg)
    assert C.head_kwargs(cfg, "sp") == {"num_layers": 2} and C.head_kwargs(cfg, "dqn") == {}
    assert cfg.model.hidden_dim == 128 and C.embedding_overrides(cfg) == {
        "concat_modalities": False,
        "num_compute_tokens": 0,
    }
    assert cfg.data.collect.task.name == "darkroom" and cfg.data.collect.policy.name == "explorer"
    assert (cfg.trainer.batch_size, cfg.trainer.seq_len, cfg.data.episodes) == (32, None, 10)
    resolved = C.resolve_layout(cfg)  # the layout follows from the family: 10 episodes x (20 + 1)
    assert (resolved.trainer.seq_len, resolved.data.collect.steps_per_task) == (210, 210)
    assert resolved.trainer.eval_episodes == 10 and resolved.data.sampling == "start"
    assert cfg.logger.kind == "wandb" and cfg.logger.mode == "offline" and cfg.hub.repo_id is None
    assert C.backbone_kwargs(_train(["backbone=none"])) == {}


def test_loss_nodes_mirror_the_loss_configs():
    for name, spec in LOSSES.items():
        node = C.LOSS_NODES[name]
        assert [f.name for f in dataclasses.fields(node)] == [
            f.name for f in dataclasses.fields(spec.config_cls)
        ]
        assert dataclasses.fields(node)[0].name == "weight"
    cfg = _train(["loss.dqn.weight=0.5", "loss.dqn.gamma=0.9"])
    built = C.loss_configs(cfg)
    assert set(built) == {"sp", "dqn"} and built["dqn"].gamma == 0.9 and built["dqn"].weight == 0.5


def test_a_loss_enables_the_head_it_reads():
    cfg = _train(["loss.vtrace.weight=1", "loss.vec_dqn.weight=1"])
    notes = C.enable_loss_heads(cfg)
    assert cfg.heads.value.num_layers == 2 and cfg.heads.vec_dqn.num_layers == 2
    assert cfg.heads.sp.num_layers == 2  # already on: untouched, no note
    assert len(notes) == 2 and any("heads.value.num_layers=2" in n and "loss.vtrace" in n for n in notes)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.seq_len=1", "trainer.seq_len=1 must be >= 2"),
        ("trainer.device=tpu", "trainer.device='tpu'"),
        ("optim.lr=0", "optim.lr=0.0 must be > 0"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
        ("loss.dqn.weight=-1", "loss.dqn"),
        ("hub.repo_id=a/b/c", "hub.repo_id='a/b/c'"),
    ],
)
def test_cross_field_checks_name_the_key(override, message):
    cfg = _train([override])  # a well-typed value: the schema lets it through, the cross-field check not
    C.enable_loss_heads(cfg)
    with pytest.raises(ValueError) as err:
        C.validate_config(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("override", "cause"),
    [
        ("heads.action_head=foo", "Invalid value 'foo', expected one of [sp, dqn, sv, vec_dqn, value]"),
        ("data.collect.task.size=0.5", "Value '0.5' of type 'float' could not be converted to Integer"),
    ],
)
def test_wrong_types_are_refused_by_the_schema_naming_the_key(override, cause):
    with pytest.raises(
        ConfigCompositionException, match=re.escape(f"Error merging override {override}")
    ) as err:
        _train([override])
    assert isinstance(err.value.__cause__, ValidationError)
    assert cause in str(err.value.__cause__)
    assert f"full_key: {override.split('=')[0]}" in str(err.value.__cause__)


def test_enums_are_strict():
    for override in (
        "trainer.precision=fp16",
        "logger=none logger.kind=mlflow",
        "optim.schedule=linear",
        "data.sampling=foo",
        "heads.action_head=policy",
        "loss.sp.target=teachr",
    ):
        last = override.split()[-1]  # the override the schema refuses
        with pytest.raises(
            ConfigCompositionException, match=re.escape(f"Error merging override {last}")
        ) as err:
            _compose("train", override.split())
        assert isinstance(err.value.__cause__, ValidationError), override
        assert f"full_key: {last.split('=')[0]}" in str(err.value.__cause__), override


def test_run_dir_resolver_is_shared_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert C.run_dir_resolver("outputs/a/b") == "outputs/a/b"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job42")
    monkeypatch.delenv("MOUSE_RUN_DIR", raising=False)
    assert C.run_dir_resolver("outputs/a/b") == "outputs/torchrun/job42"
    monkeypatch.setenv("MOUSE_RUN_DIR", "/runs/x")
    assert C.run_dir_resolver("outputs/a/b") == "/runs/x"
    monkeypatch.delenv("MOUSE_RUN_DIR")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ValueError, match="hydra.run.dir"):
        C.run_dir_resolver("outputs/a/b")
    monkeypatch.setenv("RANK", "1")
    assert C.output_subdir_resolver(".hydra") is None
    monkeypatch.setenv("RANK", "0")
    assert C.output_subdir_resolver(".hydra") == ".hydra"
