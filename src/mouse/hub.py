"""Every Hugging Face Hub upload and download of MOUSE, and the model and dataset cards.

A leaf module: it imports ``huggingface_hub``, the standard library and :mod:`mouse.checkpoint_io`
(file names), never ``mouse.models`` / ``data`` / ``train`` / ``eval``, which call into it:

* :func:`is_hub_id` is the one rule for "is this reference a Hub repo id": not an existing local
  path, and ``ORG/NAME`` as the Hub spells repo ids.
* :func:`download_model` / :func:`download_dataset` fetch only the files MOUSE reads
  (``allow_patterns``); failures are one ``FileNotFoundError`` line naming the repo, the cause and
  the fix.
* :func:`push_checkpoint` (models, checkpoints) and :func:`push_dataset_to_hub` create the repo if
  needed and upload the MOUSE files of a folder in one commit.
* :func:`model_card` / :func:`dataset_card` render ``README.md`` through ``huggingface_hub``'s
  ``ModelCard`` / ``DatasetCard`` with real metadata (library, tags, datasets, eval results).

The token is resolved by huggingface_hub (``token=`` argument, else ``HF_TOKEN`` / ``hf auth login``);
MOUSE never reads, stores or prints it. ``endpoint`` arguments override the Hub URL (default:
``HF_ENDPOINT`` or huggingface.co). Calls go through the ``huggingface_hub`` module attributes at call
time (``huggingface_hub.HfApi``, ``huggingface_hub.snapshot_download``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import constants as hf_constants

from mouse.checkpoint_io import CHECKPOINT_FILES, CONFIG_FILE, MODEL_FILES, WEIGHTS_FILE

__all__ = [
    "check_push_target",
    "DATASET_CARD_FILE",
    "DATASET_DATA_DIR",
    "DATASET_SPEC_FILE",
    "HUB_FILES",
    "MOUSE_TAGS",
    "dataset_allow_patterns",
    "dataset_card",
    "download_dataset",
    "download_model",
    "is_hub_id",
    "model_card",
    "push_checkpoint",
    "push_dataset_to_hub",
]

# The files of a checkpoint folder that are published and fetched (the trainer state stays local).
HUB_FILES = CHECKPOINT_FILES
# The layout of a MOUSE dataset folder, locally and in a Hub dataset repo (mouse.data.storage writes it).
DATASET_SPEC_FILE = "spec.json"
DATASET_DATA_DIR = "data"
DATASET_CARD_FILE = "README.md"
MOUSE_TAGS = ("reinforcement-learning", "in-context-reinforcement-learning", "mouse")

# ORG/NAME: each part starts with a letter or digit and ends with a letter, digit or "_"; "-", "."
# and "_" inside (the Hub's own rule, plus no "--" / ".." and at most 96 characters per name).
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")


# ------------------------------------------------------------------------------------------------ ids
def is_hub_id(ref: str | os.PathLike) -> bool:
    """Whether ``ref`` names a Hub repo: no local path of that name exists and it reads ``ORG/NAME``.

    ``ORG`` and ``NAME`` are ASCII letters, digits, ``_``, ``-`` and ``.``, start with a letter or
    digit, end with a letter, digit or ``_``, hold no ``--`` or ``..`` and have at most 96 characters.
    So ``./x/y``, ``/abs/path``, ``~/x``, ``a/b/c`` and anything with spaces are never Hub ids.
    """
    text = os.fspath(ref)
    if not isinstance(text, str) or Path(text).expanduser().exists():
        return False
    if not _HUB_ID.fullmatch(text) or "--" in text or ".." in text:
        return False
    return all(len(part) <= 96 for part in text.split("/"))


def check_push_target(repo_id: str, key: str = "hub.repo_id") -> None:
    """Before any work: ``repo_id`` must look like ``ORG/NAME`` and the Hub must be reachable in
    principle (``HF_HUB_OFFLINE`` unset); ValueError naming ``key`` and the fix otherwise."""
    if not _HUB_ID.fullmatch(str(repo_id)):
        raise ValueError(f"{key}={repo_id!r} must look like 'ORG/NAME' (letters, digits, '-', '_', '.')")
    if hf_constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"{key}={repo_id!r} asks for a Hub push but HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE "
            f"to push, or drop {key}"
        )


def _one_line(err: BaseException) -> str:
    """``Type: message`` of ``err`` on one line (huggingface_hub messages span several)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


# ------------------------------------------------------------------------------------------- download
def download_model(
    repo_id: str,
    *,
    files: Sequence[str] = MODEL_FILES,
    revision: str | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    local_dir: str | os.PathLike | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download ``files`` (default ``config.json`` + ``model.safetensors``) of Hub model repo ``repo_id``.

    Returns the local snapshot folder (``local_dir`` when given, else the huggingface_hub cache).
    Files the repo lacks are simply absent from it: the caller checks what it requires. Pass
    ``files=HUB_FILES`` for a checkpoint (adds the card, ``train_config.yaml``, ``dataset_spec.json``).
    Raises ``FileNotFoundError`` (one line: the repo, the cause, the fix) when ``repo_id`` is not a
    Hub id or the download fails (offline, unknown repo, no access, bad revision).
    """
    if not is_hub_id(repo_id):
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local directory nor a Hub model id ORG/NAME; pass a folder holding "
            f"{CONFIG_FILE} + {WEIGHTS_FILE} or a Hub model id"
        )
    kwargs: dict[str, Any] = {"revision": revision, "token": token, "force_download": force_download}
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id=repo_id, repo_type="model", allow_patterns=list(files), **kwargs
        )
    except Exception as err:  # huggingface_hub raises many error types; keep the cause attached
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local directory nor a loadable Hub model repo: it could not be fetched "
            f"from the Hub (revision {revision or 'main'}; {_one_line(err)}); check the id and revision, "
            "set HF_TOKEN for a private repo, and HF_HUB_OFFLINE=0 to download"
        ) from err
    return Path(folder)


def dataset_allow_patterns(split: str | None = None) -> list[str]:
    """The files of a Hub dataset repo that ``mouse.data.load_dataset`` reads.

    ``spec.json``, the card and ``data/*.arrow`` at the top level, plus the same under ``<split>/``
    when ``split`` is given (a repo may hold one sub-folder per split).
    """
    top = [DATASET_SPEC_FILE, DATASET_CARD_FILE, f"{DATASET_DATA_DIR}/*.arrow"]
    return top + ([f"{split}/{pattern}" for pattern in top] if split else [])


def download_dataset(
    repo_id: str,
    *,
    split: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download the MOUSE files (:func:`dataset_allow_patterns`) of Hub dataset repo ``repo_id``.

    Returns the local snapshot folder. Raises ``FileNotFoundError`` (one line: the repo, the cause,
    the fix) when the download fails.
    """
    kwargs: dict[str, Any] = {}
    if token is not None:
        kwargs["token"] = token
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=dataset_allow_patterns(split),
            **kwargs,
        )
    except Exception as exc:  # offline, missing repo, bad revision: say what was tried
        raise FileNotFoundError(
            f"dataset {repo_id!r} is not a local directory, and downloading it from the Hub "
            f"(repo_type='dataset', revision={revision!r}) failed: {_one_line(exc)}; check the id and "
            "revision, set HF_TOKEN for a private repo, and HF_HUB_OFFLINE=0 to download"
        ) from exc
    return Path(folder)


# --------------------------------------------------------------------------------------------- upload
def _api(token: str | None, endpoint: str | None) -> Any:
    kwargs: dict[str, Any] = {"token": token}
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    return huggingface_hub.HfApi(**kwargs)


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = True,
    revision: str | None = None,
    commit_message: str = "Upload MOUSE model",
    token: str | None = None,
    endpoint: str | None = None,
    **upload_kwargs: Any,
) -> str:
    """Create model repo ``repo_id`` (if needed) and commit the :data:`HUB_FILES` found in ``folder``.

    ``folder`` must hold ``config.json`` and ``model.safetensors`` (``FileNotFoundError`` otherwise);
    the card, ``train_config.yaml`` and ``dataset_spec.json`` go along when present, nothing else
    (the trainer state stays local). ``private=None`` keeps the Hub's default visibility; a
    ``revision`` branch is created if missing. ``upload_kwargs`` go to ``HfApi.upload_folder``
    (e.g. ``commit_description``, ``create_pr``). Returns the commit URL.
    """
    folder = Path(folder)
    for required in MODEL_FILES:
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} has no {required}: not a model checkpoint folder")
    api = _api(token, endpoint)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        allow_patterns=list(HUB_FILES),
        **upload_kwargs,
    )
    return str(info.commit_url)


def push_dataset_to_hub(
    path: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    *,
    endpoint: str | None = None,
) -> str:
    """Upload a MOUSE dataset folder to Hub dataset repo ``repo_id`` (created if needed); return its URL.

    Uploads what ``mouse.data.load_dataset`` reads (``spec.json``, ``README.md``, ``data/*.arrow``, also
    inside per-split sub-folders). ``FileNotFoundError`` when ``path`` has no ``spec.json``.
    """
    path = Path(path)
    if not (path / DATASET_SPEC_FILE).exists():
        raise FileNotFoundError(f"{path} has no {DATASET_SPEC_FILE}: not a MOUSE dataset directory")
    api = _api(token, endpoint)
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    top = dataset_allow_patterns()
    api.upload_folder(
        folder_path=str(path),
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Upload MOUSE step-record dataset",
        allow_patterns=top + [f"*/{pattern}" for pattern in top],
    )
    from huggingface_hub import constants

    base = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"{base}/datasets/{repo_id}"


# ---------------------------------------------------------------------------------------------- cards
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


def _tags(task_family: str | None) -> list[str]:
    return [*MOUSE_TAGS, *([task_family] if task_family else [])]


def _eval_results(eval_metrics: Mapping[str, float], task_family: str) -> list[Any]:
    """``EvalResult`` entries of the held-out evaluation: mean normalised score, first/last-episode return."""
    episodes = sorted(
        int(m.group(1)) for key in eval_metrics if (m := re.fullmatch(r"eval/return_ep(\d+)", key))
    )
    wanted = [("eval/score_mean", "normalized_score", "normalised score (mean over episodes)")]
    for k in dict.fromkeys(episodes[:1] + episodes[-1:]):
        wanted.append((f"eval/return_ep{k}", "mean_reward", f"return in episode {k} (in context)"))
    results = []
    for key, metric_type, metric_name in wanted:
        value = eval_metrics.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        results.append(
            huggingface_hub.EvalResult(
                task_type="reinforcement-learning",
                task_name="In-context reinforcement learning",
                dataset_type=task_family,
                dataset_name=f"{task_family} (held-out tasks)",
                dataset_split="test",
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=float(value),
            )
        )
    return results


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
    """The ``README.md`` of a pushed model, rendered through ``huggingface_hub.ModelCard``.

    Metadata: ``library_name: mouse``, ``pipeline_tag: reinforcement-learning``, tags (MOUSE tags and
    the task family), ``datasets`` (the training data's Hub dataset id, when ``train_config``'s
    ``data.path`` is one) and ``model-index`` eval results on the task family's held-out split
    (normalised score, first/last-episode return). Body: architecture, modality, heads, training and
    evaluation tables. ``model_config`` is the model's ``config.json`` dict, ``train_config`` the
    resolved training config (plain dict), ``dataset_spec`` the training DatasetSpec dict,
    ``eval_metrics`` the final flat ``eval/`` metrics (may be None). Same input, same text.
    """
    backbone = model_config.get("backbone_kwargs") or {}
    emb = model_config.get("embedding_kwargs") or {}
    data = dataset_spec or {}
    family = str(data.get("task_family") or "") or None
    data_path = (train_config.get("data") or {}).get("path")
    hub_dataset = str(data_path) if data_path is not None and is_hub_id(str(data_path)) else None
    repo_id = (train_config.get("hub") or {}).get("repo_id")
    results = _eval_results(eval_metrics or {}, family or "unknown")
    card_data = huggingface_hub.ModelCardData(
        library_name="mouse",
        pipeline_tag="reinforcement-learning",
        tags=_tags(family),
        datasets=[hub_dataset] if hub_dataset else None,
        model_name=str(repo_id).split("/")[-1] if repo_id else f"mouse-{model_class}",
        eval_results=results or None,
    )
    order = ["library_name", "pipeline_tag", "tags", "datasets"]
    lines = [
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
    if hub_dataset:
        rows.insert(0, ("Hub dataset", hub_dataset))
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
    content = f"---\n{card_data.to_yaml(original_order=order)}\n---\n\n" + "\n".join(lines)
    return str(huggingface_hub.ModelCard(content))


_SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")
_SIZE_CATEGORIES += ("1B<n<10B", "10B<n<100B", "100B<n<1T")


def _size_category(num_records: int) -> str:
    """The Hub's ``size_categories`` bucket for ``num_records`` rows (``n<1K`` ... ``n>1T``)."""
    for power, label in enumerate(_SIZE_CATEGORIES, start=3):
        if num_records < 10**power:
            return label
    return "n>1T"


def dataset_card(spec: Mapping[str, Any]) -> str:
    """The ``README.md`` of a dataset folder, rendered through ``huggingface_hub.DatasetCard``.

    ``spec`` is the ``DatasetSpec`` dict. Its YAML front-matter has the ``configs`` entry that points
    ``datasets.load_dataset(<folder or repo>)`` at ``data/<split>-*.arrow``, plus ``pretty_name``,
    ``task_categories: [reinforcement-learning]``, ``size_categories`` and tags (MOUSE tags and the
    task family); the body describes the step-record contract and tabulates the spec. No timestamps:
    the same spec gives the same bytes.
    """
    split = str(spec.get("split", "train"))
    family = str(spec.get("task_family") or "")
    policy = str(spec.get("policy") or "")
    card_data = huggingface_hub.DatasetCardData(
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{DATASET_DATA_DIR}/{split}-*.arrow"}],
            }
        ],
        pretty_name=f"MOUSE step records: {family or 'unknown task'} / {policy or 'unknown policy'}",
        task_categories=["reinforcement-learning"],
        size_categories=[_size_category(int(spec.get("num_records") or 0))],
        tags=_tags(family or None),
    )
    order = ["configs", "pretty_name", "task_categories", "size_categories", "tags"]
    rows = "\n".join(
        f"| `{k}` | `{v}` |" for k, v in spec.items() if k not in ("train_task_ids", "test_task_ids")
    )
    body = f"""# MOUSE step-record dataset: {family or "unknown task"} / {policy or "unknown policy"}

Reset-free streams of step records (one row per record, `stream_id` groups a stream) following the
MOUSE step-record contract: record `t` holds the observation at `t` and the action, reward and done
of the transition that arrived at `t`; reset records (`time == 0`, action and reward 0) follow
terminal (`done == 1`) and truncated (`done == 2`) records. `q_star` is the exact optimal action value
(`-inf`: invalid action, or no action taken). The full spec is in `spec.json`.

Load with `mouse.data.load_dataset(path_or_repo_id)` (memory-mapped) or `datasets.load_dataset(...)`.

| field | value |
|---|---|
{rows}
| `train_task_ids` | {len(spec.get("train_task_ids") or ())} tasks |
| `test_task_ids` | {len(spec.get("test_task_ids") or ())} tasks |
"""
    content = f"---\n{card_data.to_yaml(original_order=order)}\n---\n{body}"
    return str(huggingface_hub.DatasetCard(content))
