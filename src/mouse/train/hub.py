"""Hugging Face Hub push of a trained checkpoint, with a generated model card.

:func:`push_checkpoint` uploads ``config.json``, ``model.safetensors``, ``README.md`` (the model card
from :func:`model_card`), ``train_config.yaml`` and ``dataset_spec.json`` of one checkpoint folder in
a single commit (``create_repo`` + ``create_commit``). The token is resolved by huggingface_hub from
``HF_TOKEN`` / ``hf auth login``; MOUSE never reads, stores or prints it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["HUB_FILES", "model_card", "push_checkpoint"]

# The files of a checkpoint folder that are published (the trainer state stays local).
HUB_FILES = ("config.json", "model.safetensors", "README.md", "train_config.yaml", "dataset_spec.json")

_MODALITIES = (
    ("action", "include_action_token", "max_num_actions", "actions"),
    ("reward", "include_reward_token", None, "Fourier features of the scalar"),
    ("done", "include_done_token", None, "0 alive / 1 terminal / 2 truncated"),
    ("time", "include_time_token", "max_num_time_steps", "time steps"),
    ("obs_discrete", "include_obs_discrete", "max_num_obs_discrete", "observation ids"),
    ("obs_continuous", "include_obs_continuous", "max_num_obs_continuous", "dimensions"),
    ("obs_image", "include_obs_image", "max_num_obs_image", "pixels"),
)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def model_card(
    model_config: dict[str, Any],
    train_config: dict[str, Any],
    dataset_spec: dict[str, Any] | None = None,
    eval_metrics: dict[str, float] | None = None,
    *,
    num_parameters: int | None = None,
    step: int | None = None,
    model_class: str = "Model",
) -> str:
    """The ``README.md`` of a pushed model: architecture, modality table, heads, training config, eval.

    ``model_config`` is the model's ``config.json`` dict, ``train_config`` the resolved training config
    (plain dict), ``eval_metrics`` the final ``eval/`` metrics (flat, may be None).
    """
    backbone = model_config.get("backbone_kwargs") or {}
    emb = model_config.get("embedding_kwargs") or {}
    data = dataset_spec or {}
    lines = [
        "---",
        "library_name: mouse",
        "tags:",
        "- reinforcement-learning",
        "- in-context-reinforcement-learning",
        "- mouse",
        "---",
        "",
        f"# MOUSE in-context RL model ({model_class})",
        "",
        "A transformer that reads a reset-free stream of step records (observation, action, reward, done,",
        "time) and acts in unseen tasks from its context alone. Trained with `mouse-train`.",
        "",
        "```python",
        "from mouse.models import load_model",
        "",
        'model = load_model("<this repo id or folder>")',
        "```",
        "",
        "In-context evaluation on held-out tasks: `mouse-eval checkpoint=<this repo id or folder>`.",
        "",
        "## Architecture",
        "",
        _table(
            ("setting", "value"),
            [
                ("class", model_class),
                ("hidden_dim", model_config.get("hidden_dim")),
                ("backbone", "none (memoryless)" if not backbone else json.dumps(backbone, sort_keys=True)),
                ("tokens per step", "concat" if emb.get("concat_modalities") else "1 (sum mode)"),
                ("parameters", f"{num_parameters:,}" if num_parameters is not None else "?"),
            ],
        ),
        "",
        "## Modalities",
        "",
        _table(
            ("field", "embedded", "size"),
            [
                (name, "yes" if emb.get(flag) else "no", f"{emb.get(size)} {unit}" if size else unit)
                for name, flag, size, unit in _MODALITIES
            ],
        ),
        "",
        "## Heads",
        "",
        _table(
            ("head", "kwargs", "acts"),
            [
                (
                    head,
                    json.dumps(model_config.get(f"{head}_head_kwargs") or {}, sort_keys=True),
                    "yes" if model_config.get("action_head") == head else "",
                )  # fmt: skip
                for head in ("sp", "dqn", "sv", "vec_dqn", "value")
                if (model_config.get(f"{head}_head_kwargs") or {}).get("num_layers", 0)
            ],
        ),
        "",
        "## Training",
        "",
    ]
    losses = {k: v for k, v in (train_config.get("loss") or {}).items() if float(v.get("weight", 0)) > 0}
    trainer = train_config.get("trainer") or {}
    optim = train_config.get("optim") or {}
    rows = [
        ("data", f"{data.get('task_family', '?')} {json.dumps(data.get('task_params', {}), sort_keys=True)}"),
        (
            "behaviour policy",
            f"{data.get('policy', '?')} {json.dumps(data.get('policy_params', {}), sort_keys=True)}",
        ),
        ("streams / records", f"{data.get('num_streams', '?')} / {data.get('num_records', '?')}"),
        (
            "train / held-out tasks",
            f"{len(data.get('train_task_ids', []))} / {len(data.get('test_task_ids', []))}",
        ),
        ("steps", step if step is not None else trainer.get("steps")),
        ("batch x window", f"{trainer.get('batch_size')} x {trainer.get('seq_len')} steps"),
        (
            "optimizer",
            f"{optim.get('name')} lr={optim.get('lr')} wd={optim.get('weight_decay')} "
            f"warmup={optim.get('warmup_steps')} {optim.get('schedule')}",
        ),  # fmt: skip
        ("precision", trainer.get("precision")),
    ]
    rows += [
        (f"loss.{name}", ", ".join(f"{k}={_fmt(v)}" for k, v in cfg.items())) for name, cfg in losses.items()
    ]
    lines += [_table(("setting", "value"), rows), "", "The full resolved config is `train_config.yaml`.", ""]
    lines += ["## Evaluation (held-out tasks)", ""]
    if eval_metrics:
        lines.append(_table(("metric", "value"), [(k, _fmt(v)) for k, v in sorted(eval_metrics.items())]))
    else:
        lines.append("Not evaluated during training (`trainer.eval_num_tasks=0`); run `mouse-eval`.")
    lines.append("")
    return "\n".join(lines)


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    revision: str | None = None,
    commit_message: str = "Upload MOUSE model",
    endpoint: str | None = None,
) -> str:
    """Create ``repo_id`` (if needed) and commit the :data:`HUB_FILES` found in ``folder``; return the
    commit URL. ``endpoint`` overrides the Hub URL (default: ``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = [name for name in HUB_FILES if (folder / name).is_file()]
    for required in ("config.json", "model.safetensors"):
        if required not in files:
            raise FileNotFoundError(f"{folder} has no {required}: not a model checkpoint folder")
    api = HfApi(endpoint=endpoint)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    info = api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files
        ],
        commit_message=commit_message,
        revision=revision,
        repo_type="model",
    )
    return str(info.commit_url)
