"""Hub push through the real huggingface_hub client against a loopback HTTP server.

The server answers the calls ``push_checkpoint`` makes (create repo, validate README metadata,
preupload → "regular", ndjson commit with base64 files) and records what arrives.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mouse.train.hub import HUB_FILES, model_card, push_checkpoint

SECRET = "hf_loopbackSecretToken0123456789"


class FakeHub:
    """A loopback Hub: ``files[repo_id][path] = bytes``; ``auth`` collects Authorization headers."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}
        self.created: list[dict] = []
        self.auth: list[str] = []
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
                parts = path.split("/")  # /api/models/<org>/<name>/<preupload|commit>/<rev>
                if len(parts) == 7 and parts[1:3] == ["api", "models"]:
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
                            200, {"commitUrl": f"{base}/{repo_id}/commit/abc", "commitOid": "a" * 40}
                        )
                return self._reply(404, {"error": f"unexpected {self.path}"})

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
