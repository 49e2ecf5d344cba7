"""Hub uploads and downloads through the real huggingface_hub client against a loopback HTTP server.

The server answers the calls ``mouse.hub`` makes: uploads (create repo, validate README metadata,
preupload → "regular", ndjson commit with base64 files) and downloads (repo info, file tree,
HEAD + GET of ``resolve/`` URLs), for model and dataset repos, and records what arrives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from mouse.hub import HUB_FILES, model_card, push_checkpoint

SECRET = "hf_loopbackSecretToken0123456789"
COMMIT = "a" * 40
REPO_TYPES = {"models": "model", "datasets": "dataset"}  # URL segment -> repo type


class FakeHub:
    """A loopback Hub: ``files[repo_id][path] = bytes``; ``auth`` collects Authorization headers.

    ``requests`` lists every ``METHOD path``; ``downloads`` the repo files served by GET. The
    unauthenticated registry fetch huggingface_hub makes for its user agent (``/api/agent-harnesses``)
    is answered with an empty registry and left out of ``auth``.
    """

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.created: list[dict] = []
        self.auth: list[str] = []
        self.requests: list[str] = []
        self.downloads: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, payload, headers: dict | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_found(self) -> None:
                self._reply(404, {"error": f"unexpected {self.path}"}, {"X-Error-Code": "RepoNotFound"})

            def do_POST(self):  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(f"POST {self.path}")
                hub.auth.append(self.headers.get("Authorization", ""))
                path = self.path.split("?")[0]
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.created.append(payload)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    hub.files.setdefault(repo_id, {})
                    return self._reply(200, {"url": f"{base}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/<models|datasets>/<org>/<name>/<preupload|commit>/<rev>
                if len(parts) == 7 and parts[1] == "api" and parts[2] in REPO_TYPES:
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(
                            200,
                            {
                                "files": [
                                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                    for f in files
                                ]
                            },
                        )
                    if action == "commit":
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                value = item["value"]
                                assert value["encoding"] == "base64"
                                hub.files.setdefault(repo_id, {})[value["path"]] = base64.b64decode(
                                    value["content"]
                                )
                        return self._reply(
                            200, {"commitUrl": f"{base}/{repo_id}/commit/abc", "commitOid": COMMIT}
                        )
                return self._not_found()

            def _repo_file(self, path: str) -> tuple[str, str] | None:
                """``(repo_id, file)`` of a ``[/datasets]/<org>/<name>/resolve/<rev>/<file>`` URL."""
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if parts and parts[0] == "datasets":
                    parts = parts[1:]
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo_id, file = f"{parts[0]}/{parts[1]}", "/".join(parts[4:])
                if file not in hub.files.get(repo_id, {}):
                    return None
                return repo_id, file

            def _file_headers(self, content: bytes) -> dict:
                return {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha1(content).hexdigest()}"',
                    "Content-Length": str(len(content)),
                }

            def do_HEAD(self):  # noqa: N802
                hub.requests.append(f"HEAD {self.path}")
                hub.auth.append(self.headers.get("Authorization", ""))
                found = self._repo_file(self.path.split("?")[0])
                if found is None:
                    return self._reply(404, {}, {"X-Error-Code": "EntryNotFound"})
                content = hub.files[found[0]][found[1]]
                self.send_response(200)
                for key, value in self._file_headers(content).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_GET(self):  # noqa: N802
                hub.requests.append(f"GET {self.path}")
                path = self.path.split("?")[0]
                if path == "/api/agent-harnesses":  # huggingface_hub's user-agent registry: no token, no repo
                    return self._reply(200, {"standardEnvVars": [], "harnesses": {}})
                hub.auth.append(self.headers.get("Authorization", ""))
                parts = path.split("/")  # /api/<models|datasets>/<org>/<name>/<revision|tree>/<rev>[/...]
                if len(parts) >= 7 and parts[1] == "api" and parts[2] in REPO_TYPES:
                    repo_id = f"{parts[3]}/{parts[4]}"
                    if repo_id not in hub.files:
                        return self._not_found()
                    files = hub.files[repo_id]
                    if parts[5] == "revision":
                        siblings = [{"rfilename": name} for name in sorted(files)]
                        return self._reply(200, {"id": repo_id, "sha": COMMIT, "siblings": siblings})
                    if parts[5] == "tree":
                        entries = [
                            {
                                "type": "file",
                                "path": name,
                                "size": len(content),
                                "oid": hashlib.sha1(content).hexdigest(),
                            }
                            for name, content in sorted(files.items())
                        ]
                        return self._reply(200, entries)
                    return self._not_found()
                found = self._repo_file(path)
                if found is None:
                    return self._reply(404, {}, {"X-Error-Code": "EntryNotFound"})
                content = hub.files[found[0]][found[1]]
                hub.downloads.append(f"{found[0]}/{found[1]}")
                self.send_response(200)
                for key, value in self._file_headers(content).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def online(monkeypatch):
    """Switch huggingface_hub's offline mode off for this test only (conftest turns it on)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent/token")


def _checkpoint_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "step-5"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_dim": 8}\n')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 3)
    (folder / "README.md").write_text(model_card({"hidden_dim": 8, "backbone_kwargs": {}}, {}, None, None))
    (folder / "train_config.yaml").write_text("trainer:\n  steps: 5\n")
    (folder / "dataset_spec.json").write_text("{}\n")
    (folder / "trainer_state.json").write_text("{}\n")  # must stay local
    return folder


def test_push_checkpoint_uploads_files_byte_for_byte(tmp_path, online):
    folder = _checkpoint_folder(tmp_path)
    with FakeHub() as hub:
        url = push_checkpoint(folder, "alice/mouse-test", private=True, endpoint=hub.url)
    assert url.endswith("/alice/mouse-test/commit/abc")
    assert hub.created == [
        {"name": "mouse-test", "organization": "alice", "visibility": "private", "type": "model"}
    ]
    arrived = hub.files["alice/mouse-test"]
    assert set(arrived) == set(HUB_FILES)
    for name, content in arrived.items():
        assert content == (folder / name).read_bytes(), name
    assert "trainer_state.json" not in arrived
    assert all(a == f"Bearer {SECRET}" for a in hub.auth), "the HF token is sent to the Hub"


def test_push_checkpoint_needs_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        (tmp_path / "config.json").write_text("{}")
        push_checkpoint(tmp_path, "alice/x")


def test_model_card_lists_architecture_heads_and_eval():
    card = model_card(
        {
            "hidden_dim": 16,
            "backbone_kwargs": {"num_hidden_layers": 2},
            "embedding_kwargs": {
                "include_action_token": True,
                "max_num_actions": 5,
                "include_obs_discrete": True,
            },
            "sp_head_kwargs": {"num_layers": 2},
            "dqn_head_kwargs": {},
            "action_head": "sp",
        },
        {
            "loss": {"sp": {"weight": 1.0, "target": "teacher"}, "dqn": {"weight": 0.0}},
            "trainer": {"steps": 7},
        },
        {"task_family": "darkroom", "train_task_ids": [1, 2], "test_task_ids": [3]},
        {"eval/score_mean": 0.5},
        num_parameters=1234,
    )
    assert card.startswith("---\nlibrary_name: mouse\n")
    assert "| hidden_dim | 16 |" in card and "1,234" in card
    assert "| action | yes | 5 actions |" in card and "| obs_image | no |" in card
    assert '| sp | {"num_layers": 2} | yes |' in card and "| dqn |" not in card
    assert "loss.sp" in card and "loss.dqn" not in card
    assert "| eval/score_mean | 0.5 |" in card
    assert "| train / held-out tasks | 2 / 1 |" in card


# ------------------------------------------------------------------------- downloads (loopback Hub)
@pytest.fixture
def hub(online, monkeypatch, tmp_path):
    """A running :class:`FakeHub` that huggingface_hub uses by default (endpoint, cache in tmp_path)."""
    import huggingface_hub.constants as constants

    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        yield fake


def test_model_push_to_hub_then_load_model_gives_the_same_outputs(tmp_path, hub):
    import torch

    from mouse.models import ModelLlama, load_model
    from test_model import make_model, make_stream

    model = make_model()
    url = model.push_to_hub("alice/tiny-mouse", private=True)
    assert url.endswith("/alice/tiny-mouse/commit/abc")
    assert hub.created[-1] == {
        "name": "tiny-mouse",
        "organization": "alice",
        "visibility": "private",
        "type": "model",
    }
    assert set(hub.files["alice/tiny-mouse"]) == {"config.json", "model.safetensors"}
    hub.files["alice/tiny-mouse"]["extra/big.bin"] = b"x" * 1000  # not a MOUSE file: never fetched

    loaded = load_model("alice/tiny-mouse", local_dir=tmp_path / "dl")
    assert type(loaded) is ModelLlama and loaded.config == model.config
    td = make_stream()
    ref, got = model(td)[0], loaded.eval()(td)[0]
    for key in ref.keys():
        assert torch.equal(ref[key], got[key]), key
    assert sorted(hub.downloads) == ["alice/tiny-mouse/config.json", "alice/tiny-mouse/model.safetensors"]
    assert all(a == f"Bearer {SECRET}" for a in hub.auth)


def test_checkpoint_from_the_hub_fetches_only_checkpoint_files(tmp_path, hub):
    from mouse.eval.checkpoint import resolve_checkpoint

    folder = _checkpoint_folder(tmp_path)
    push_checkpoint(folder, "alice/ckpt")
    assert "trainer_state.json" not in hub.files["alice/ckpt"]
    hub.files["alice/ckpt"]["trainer_state.json"] = b"{}"  # even if a repo holds it, eval does not fetch it
    local = resolve_checkpoint("alice/ckpt")
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == sorted(HUB_FILES)
    for name in HUB_FILES:
        assert (local / name).read_bytes() == (folder / name).read_bytes(), name
    assert "alice/ckpt/trainer_state.json" not in hub.downloads


def test_dataset_push_then_load_dataset_from_the_hub(tmp_path, hub):
    import numpy as np

    from mouse.data import load_dataset, push_dataset_to_hub, save_dataset, synthetic_columns

    cols, spec = synthetic_columns(num_streams=3, steps_per_stream=20, num_actions=4, horizon=6, seed=1)
    path = save_dataset(cols, spec, tmp_path / "ds")
    (path / "notes.txt").write_text("local only")  # not a MOUSE file: not uploaded
    url = push_dataset_to_hub(path, "alice/tiny-data", private=True)
    assert url == f"{hub.url}/datasets/alice/tiny-data"
    assert hub.created[-1]["type"] == "dataset"
    uploaded = hub.files["alice/tiny-data"]
    assert set(uploaded) == {"spec.json", "README.md", "data/train-00000-of-00001.arrow"}
    uploaded["other/huge.arrow"] = b"not fetched"

    loaded = load_dataset("alice/tiny-data")
    assert loaded.spec == load_dataset(path).spec
    for name, column in cols.items():
        np.testing.assert_array_equal(loaded.columns[name], column, err_msg=name)
    assert sorted(hub.downloads) == [
        "alice/tiny-data/README.md",
        "alice/tiny-data/data/train-00000-of-00001.arrow",
        "alice/tiny-data/spec.json",
    ]  # only what load_dataset reads


# ------------------------------------------------------------------------------ ids and cards
def test_is_hub_id_is_one_strict_rule(tmp_path, monkeypatch):
    from mouse.hub import is_hub_id

    for ok in ("alice/mouse", "org-1/name.v2", "a/b", "Org_x/model_", "no-such-org/no-such-dataset"):
        assert is_hub_id(ok), ok
    for bad in (
        "name",
        "a/b/c",
        "./a/b",
        "/abs/path",
        "~/x",
        "a/.b",
        "a/b.",
        "-a/b",
        "a--b/c",
        "a/b..c",
        "a b/c",
    ):
        assert not is_hub_id(bad), bad
    assert not is_hub_id("x/" + "n" * 97)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name")  # an existing local path always wins


def test_download_errors_are_one_line_naming_the_repo_and_the_fix(tmp_path):
    from mouse.hub import download_dataset, download_model

    with pytest.raises(FileNotFoundError) as err:
        download_model("mouse-test-org/none", local_dir=tmp_path / "dl")  # offline (tests/conftest.py)
    message = str(err.value)
    assert "\n" not in message and "'mouse-test-org/none'" in message and "HF_HUB_OFFLINE=0" in message
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a Hub model id ORG/NAME"):
        download_model("not an id")
    with pytest.raises(FileNotFoundError) as err:
        download_dataset("mouse-test-org/none")
    assert "\n" not in str(err.value) and "'mouse-test-org/none'" in str(err.value)


def test_model_card_metadata_through_huggingface_hub():
    from huggingface_hub import ModelCard

    text = model_card(
        {"hidden_dim": 8, "backbone_kwargs": {}, "sp_head_kwargs": {"num_layers": 1}, "action_head": "sp"},
        {"data": {"path": "alice/darkroom-data"}, "hub": {"repo_id": "alice/tiny-mouse"}},
        {"task_family": "darkroom", "test_task_ids": [3, 4]},
        {
            "eval/score_mean": 0.25,
            "eval/return_ep1": 1.0,
            "eval/return_ep3": 4.0,
            "eval/score_ep2": float("nan"),
        },
    )
    assert text == model_card(
        {"hidden_dim": 8, "backbone_kwargs": {}, "sp_head_kwargs": {"num_layers": 1}, "action_head": "sp"},
        {"data": {"path": "alice/darkroom-data"}, "hub": {"repo_id": "alice/tiny-mouse"}},
        {"task_family": "darkroom", "test_task_ids": [3, 4]},
        {
            "eval/score_mean": 0.25,
            "eval/return_ep1": 1.0,
            "eval/return_ep3": 4.0,
            "eval/score_ep2": float("nan"),
        },
    )  # same input, same text
    card = ModelCard(text)
    assert card.data.library_name == "mouse" and card.data.pipeline_tag == "reinforcement-learning"
    assert card.data.tags == [
        "reinforcement-learning",
        "in-context-reinforcement-learning",
        "mouse",
        "darkroom",
    ]
    assert card.data.datasets == ["alice/darkroom-data"]
    results = {(r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert results == {("normalized_score", 0.25), ("mean_reward", 1.0), ("mean_reward", 4.0)}
    for r in card.data.eval_results:
        assert (r.task_type, r.dataset_type, r.dataset_split) == (
            "reinforcement-learning",
            "darkroom",
            "test",
        )
    assert "| Hub dataset | alice/darkroom-data |" in text and "## Evaluation (held-out tasks)" in text
    # a local dataset path is not a Hub dataset; no eval metrics -> no model-index
    local = ModelCard(model_card({"hidden_dim": 8}, {"data": {"path": "/data/local"}}, None, None))
    assert local.data.datasets is None and not local.data.eval_results


def test_dataset_card_metadata_through_huggingface_hub():
    from huggingface_hub import DatasetCard

    from mouse.data import DatasetSpec
    from mouse.hub import dataset_card

    spec = DatasetSpec(num_actions=4, horizon=6, task_family="darkroom", policy="random", num_records=2000)
    card = DatasetCard(dataset_card(spec.to_dict()))
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.arrow"}]}
    ]
    assert card.data.task_categories == ["reinforcement-learning"] and card.data.size_categories == [
        "1K<n<10K"
    ]
    assert "darkroom" in card.data.tags and "mouse" in card.data.tags
    assert "| `num_actions` | `4` |" in card.text
