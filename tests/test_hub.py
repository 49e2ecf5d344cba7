"""Hub uploads and downloads through the real huggingface_hub client against a loopback HTTP server.

The server (:class:`FakeHub`) follows the Hub's protocol as ``huggingface_hub`` speaks it, with
Xet storage switched off (``HF_HUB_DISABLE_XET=1``; with ``hf_xet`` installed the client would send
LFS-mode files to Xet instead, a protocol this server does not speak):

* ``POST /api/repos/create``, ``POST /api/validate-yaml``;
* ``POST /api/<models|datasets>/<org>/<name>/preupload/<rev>``: ``"uploadMode": "lfs"`` for files the
  Hub's default ``.gitattributes`` tracks with LFS (``*.safetensors``, ``*.arrow``, ...) and files of
  ``lfs_threshold`` bytes or more, ``"regular"`` otherwise;
* ``POST /[datasets/]<org>/<name>.git/info/lfs/objects/batch``: the git-lfs batch API; each object
  not stored yet gets an ``upload`` action pointing at the storage server (single PUT, or the HF
  multipart transfer when ``multipart_chunk`` is set) and a ``verify`` action back at the Hub;
  objects already stored get no actions (the client then skips them);
* ``PUT <storage>/upload/<oid>`` (and ``/upload/<oid>/<part>`` + ``POST <storage>/complete/<oid>``):
  the storage side, no token; bytes are kept by oid until verified;
* ``POST /[datasets/]<org>/<name>.git/info/lfs/objects/verify``: sha256 and size of the stored bytes
  must match the oid, which then becomes an LFS object;
* ``POST /api/<models|datasets>/<org>/<name>/commit/<rev>``: NDJSON; ``file`` entries (base64) and
  ``lfsFile`` entries (``oid``, ``size``: must name a verified object, else 422 and no commit);
* downloads: ``GET /api/.../revision/<rev>`` (repo info), ``GET /api/.../tree/<rev>`` (with ``lfs``
  entries), ``HEAD``/``GET`` of ``resolve/`` URLs: regular files are served in place (``ETag`` = git
  blob sha1), LFS files answer ``302`` to the storage server (``/lfs/<sha256>``) with
  ``X-Repo-Commit``, ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``, like the Hub's CDN redirect.

Both servers listen on 127.0.0.1 only and record what arrives (``modes``, ``lfs_uploads``, ...).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from mouse.hub import HUB_FILES, model_card, push_checkpoint

SECRET = "hf_loopbackSecretToken0123456789"
COMMIT = "a" * 40
REPO_TYPES = {"models": "model", "datasets": "dataset"}  # URL segment -> repo type
# The LFS rules of the Hub's default .gitattributes (a subset) and its size rule for large files.
LFS_PATTERNS = ("*.safetensors", "*.arrow", "*.bin", "*.parquet", "*.pt", "*.pth", "*.ckpt", "*.npy", "*.npz")
LFS_THRESHOLD = 10 * 1024 * 1024
MAX_BODY = 256 * 1024 * 1024  # the server refuses bodies above this (bounded reads)


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as ``oid`` / ``ETag`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file the repo holds in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing of the Hub and storage handlers: bounded body reads, JSON replies."""

    hub: FakeHub

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _body(self) -> bytes:
        """The request body: ``Content-Length`` bytes, or a chunked body (``Transfer-Encoding``)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            for _ in range(MAX_BODY):  # one chunk per round; ends at the 0-size chunk
                size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline(64)
                    break
                data += self.rfile.read(size)
                self.rfile.readline(64)  # CRLF after the chunk
                assert len(data) <= MAX_BODY, "body too large"
            return bytes(data)
        length = int(self.headers.get("Content-Length", 0))
        assert length <= MAX_BODY, "body too large"
        return self.rfile.read(length)

    def _reply(
        self, status: int, payload, headers: dict | None = None, content_type: str = "application/json"
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class FakeHub:
    """A loopback Hub (see the module docstring) plus its storage/CDN server on another port.

    State: ``files[repo_id][path] = bytes`` (the content, also of LFS files), ``modes[repo_id][path]``
    (``"lfs"`` or ``"regular"``: how the last commit received it), ``lfs_objects[sha256] = bytes``
    (verified LFS storage), ``lfs_uploads`` (``(oid, size, sha256 of the bytes received)`` per PUT),
    ``lfs_batches`` (the oids asked for per batch call), ``verified`` (oids verified), ``auth``
    (Authorization headers sent to the Hub), ``storage_auth`` (those sent to storage), ``requests``
    (``METHOD path`` of both servers), ``downloads`` (``repo_id/path`` served, in place or by the CDN).
    The unauthenticated registry fetch huggingface_hub makes for its user agent
    (``/api/agent-harnesses``) is answered with an empty registry and left out of ``auth``.
    """

    def __init__(self, lfs_threshold: int = LFS_THRESHOLD, multipart_chunk: int | None = None) -> None:
        self.lfs_threshold = lfs_threshold
        self.multipart_chunk = multipart_chunk
        self.files: dict[str, dict[str, bytes]] = {}
        self.modes: dict[str, dict[str, str]] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.pending: dict[str, bytes] = {}  # PUT but not verified yet
        self.parts: dict[str, dict[int, bytes]] = {}  # multipart uploads in progress
        self.lfs_uploads: list[tuple[str, int, str]] = []
        self.lfs_batches: list[list[str]] = []
        self.verified: list[str] = []
        self.created: list[dict] = []
        self.auth: list[str] = []
        self.storage_auth: list[str] = []
        self.requests: list[str] = []
        self.downloads: list[str] = []
        self.lock = threading.Lock()
        hub = self

        class Storage(_Handler):
            """The storage/CDN origin: signed-URL style, no token needed."""

            def do_PUT(self):  # noqa: N802 - http.server naming
                body = self._body()
                hub.requests.append(f"STORAGE PUT {self.path}")
                hub.storage_auth.append(self.headers.get("Authorization", ""))
                parts = urlsplit(self.path).path.strip("/").split("/")  # upload/<oid>[/<part>]
                if len(parts) == 2 and parts[0] == "upload":
                    with hub.lock:
                        hub.pending[parts[1]] = body
                        hub.lfs_uploads.append((parts[1], len(body), hashlib.sha256(body).hexdigest()))
                    return self._reply(200, {})
                if len(parts) == 3 and parts[0] == "upload":
                    with hub.lock:
                        hub.parts.setdefault(parts[1], {})[int(parts[2])] = body
                    return self._reply(200, {}, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
                return self._reply(404, {"error": f"unexpected {self.path}"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                hub.requests.append(f"STORAGE POST {self.path}")
                hub.storage_auth.append(self.headers.get("Authorization", ""))
                parts = urlsplit(self.path).path.strip("/").split("/")  # complete/<oid>
                if len(parts) == 2 and parts[0] == "complete" and parts[1] in hub.parts:
                    payload = json.loads(body)
                    received = hub.parts.pop(parts[1])
                    numbers = [p["partNumber"] for p in payload["parts"]]
                    assert payload["oid"] == parts[1] and numbers == sorted(received), payload
                    for p in payload["parts"]:  # the client echoes each part's ETag
                        assert p["etag"].strip('"') == hashlib.md5(received[p["partNumber"]]).hexdigest()
                    data = b"".join(received[n] for n in numbers)
                    with hub.lock:
                        hub.pending[parts[1]] = data
                        hub.lfs_uploads.append((parts[1], len(data), hashlib.sha256(data).hexdigest()))
                    return self._reply(200, {})
                return self._reply(404, {"error": f"unexpected {self.path}"})

            def _lfs(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")  # lfs/<sha256>?repo=..&file=..
                content = hub.lfs_objects.get(parts[-1]) if len(parts) == 2 and parts[0] == "lfs" else None
                if content is None:
                    return self._reply(404, {"error": "NoSuchKey"})
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.send_header("ETag", f'"{parts[-1]}"')
                self.end_headers()
                if self.command == "GET":
                    query = parse_qs(url.query)
                    hub.downloads.append(f"{query['repo'][0]}/{query['file'][0]}")
                    self.wfile.write(content)

            def do_GET(self):  # noqa: N802
                hub.requests.append(f"STORAGE GET {self.path}")
                hub.storage_auth.append(self.headers.get("Authorization", ""))
                self._lfs()

            def do_HEAD(self):  # noqa: N802
                hub.requests.append(f"STORAGE HEAD {self.path}")
                self._lfs()

        class Hub(_Handler):
            def _not_found(self) -> None:
                self._reply(404, {"error": f"unexpected {self.path}"}, {"X-Error-Code": "RepoNotFound"})

            def _lfs_api(self, path: str) -> tuple[str, str] | None:
                """``(repo_id, batch|verify)`` of ``/[datasets/]<org>/<name>.git/info/lfs/objects/<op>``."""
                parts = path.strip("/").split("/")
                if parts and parts[0] == "datasets":
                    parts = parts[1:]
                if (
                    len(parts) != 6
                    or not parts[1].endswith(".git")
                    or parts[2:5] != ["info", "lfs", "objects"]
                ):
                    return None
                return f"{parts[0]}/{parts[1][: -len('.git')]}", parts[5]

            def _batch(self, repo_id: str, prefix: str, body: bytes) -> None:
                assert self.headers.get("Accept") == "application/vnd.git-lfs+json", self.headers
                request = json.loads(body)
                assert request["operation"] == "upload" and request.get("hash_algo") == "sha256", request
                assert "basic" in request["transfers"], request
                hub.lfs_batches.append([o["oid"] for o in request["objects"]])
                objects = []
                for obj in request["objects"]:
                    oid, size = obj["oid"], obj["size"]
                    entry = {"oid": oid, "size": size, "authenticated": True}
                    if oid not in hub.lfs_objects:  # already stored: no actions, the client skips it
                        upload = {"href": f"{hub.storage_url}/upload/{oid}"}
                        chunk = hub.multipart_chunk
                        if chunk is not None and size > chunk:
                            num = -(-size // chunk)
                            upload["header"] = {
                                "chunk_size": str(chunk),
                                **{str(i): f"{hub.storage_url}/upload/{oid}/{i}" for i in range(1, num + 1)},
                            }
                            upload["href"] = f"{hub.storage_url}/complete/{oid}"
                        verify = {
                            "href": f"{hub.url}/{prefix}{repo_id}.git/info/lfs/objects/verify",
                            "header": {"Authorization": self.headers.get("Authorization", "")},
                        }
                        entry["actions"] = {"upload": upload, "verify": verify}
                    objects.append(entry)
                transfer = "multipart" if hub.multipart_chunk is not None else "basic"
                self._reply(
                    200,
                    {"transfer": transfer, "objects": objects, "hash_algo": "sha256"},
                    content_type="application/vnd.git-lfs+json",
                )

            def _verify(self, body: bytes) -> None:
                request = json.loads(body)
                oid, size = request["oid"], request["size"]
                data = hub.pending.get(oid)
                if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != oid:
                    return self._reply(422, {"error": f"LFS object {oid} was not uploaded or does not match"})
                with hub.lock:
                    hub.lfs_objects[oid] = hub.pending.pop(oid)
                    hub.verified.append(oid)
                self._reply(200, {"success": True})

            def _commit(self, repo_id: str, body: bytes) -> None:
                regular: dict[str, bytes] = {}
                lfs: dict[str, bytes] = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "file":
                        assert value["encoding"] == "base64"
                        regular[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        assert value["algo"] == "sha256", value
                        content = hub.lfs_objects.get(value["oid"])
                        if content is None or len(content) != value["size"]:
                            return self._reply(
                                422,
                                {"error": f"LFS pointer of {value['path']} names no uploaded object"},
                                {"X-Error-Message": "Your push was rejected because an LFS pointer pointed to "
                                 "a file that does not exist"},
                            )  # fmt: skip
                        lfs[value["path"]] = content
                    else:
                        assert item["key"] == "header", item
                with hub.lock:
                    files, modes = hub.files.setdefault(repo_id, {}), hub.modes.setdefault(repo_id, {})
                    for name, content in regular.items():
                        files[name], modes[name] = content, "regular"
                    for name, content in lfs.items():
                        files[name], modes[name] = content, "lfs"
                base = hub.url
                self._reply(200, {"commitUrl": f"{base}/{repo_id}/commit/abc", "commitOid": COMMIT})

            def do_POST(self):  # noqa: N802 - http.server naming
                body = self._body()
                hub.requests.append(f"POST {self.path}")
                hub.auth.append(self.headers.get("Authorization", ""))
                path = urlsplit(self.path).path
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.created.append(payload)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    hub.files.setdefault(repo_id, {})
                    return self._reply(200, {"url": f"{hub.url}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                lfs_api = self._lfs_api(path)
                if lfs_api is not None:
                    prefix = "datasets/" if path.startswith("/datasets/") else ""
                    if lfs_api[1] == "batch":
                        return self._batch(lfs_api[0], prefix, body)
                    if lfs_api[1] == "verify":
                        return self._verify(body)
                parts = path.split("/")  # /api/<models|datasets>/<org>/<name>/<preupload|commit>/<rev>
                if len(parts) == 7 and parts[1] == "api" and parts[2] in REPO_TYPES:
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        for f in files:  # the client sends the size and the first 512 bytes
                            assert len(base64.b64decode(f["sample"])) == min(f["size"], 512), f
                        modes = [(f["path"], hub.upload_mode(f["path"], f["size"])) for f in files]
                        return self._reply(
                            200,
                            {
                                "files": [
                                    {"path": p, "uploadMode": m, "shouldIgnore": False} for p, m in modes
                                ]
                            },
                        )
                    if action == "commit":
                        return self._commit(repo_id, body)
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

            def _resolve(self, path: str) -> None:
                """HEAD/GET of a resolve URL: regular files in place, LFS files redirected to storage."""
                found = self._repo_file(path)
                if found is None:
                    return self._reply(404, {}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
                repo_id, file = found
                content = hub.files[repo_id][file]
                if hub.modes.get(repo_id, {}).get(file) == "lfs":
                    sha = hashlib.sha256(content).hexdigest()
                    location = f"{hub.storage_url}/lfs/{sha}?repo={quote(repo_id)}&file={quote(file)}"
                    self.send_response(302)
                    for key, value in {
                        "Location": location,
                        "X-Repo-Commit": COMMIT,
                        "ETag": f'"{git_blob_sha1(lfs_pointer(sha, len(content)))}"',
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(content)),
                        "Content-Length": "0",
                    }.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{git_blob_sha1(content)}"')
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command == "GET":
                    hub.downloads.append(f"{repo_id}/{file}")
                    self.wfile.write(content)

            def do_HEAD(self):  # noqa: N802
                hub.requests.append(f"HEAD {self.path}")
                hub.auth.append(self.headers.get("Authorization", ""))
                self._resolve(urlsplit(self.path).path)

            def _tree_entry(self, repo_id: str, name: str, content: bytes) -> dict:
                if hub.modes.get(repo_id, {}).get(name) != "lfs":
                    return {"type": "file", "path": name, "size": len(content), "oid": git_blob_sha1(content)}
                sha = hashlib.sha256(content).hexdigest()
                pointer = lfs_pointer(sha, len(content))
                return {
                    "type": "file",
                    "path": name,
                    "size": len(content),
                    "oid": git_blob_sha1(pointer),
                    "lfs": {"oid": sha, "size": len(content), "pointerSize": len(pointer)},
                }

            def _tree(self, repo_id: str, folder: str) -> None:
                """The entries under ``folder``: its children, or everything below with ``recursive``."""
                recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0] == "true"
                prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
                entries: dict[str, dict] = {}
                for name, content in sorted(hub.files[repo_id].items()):
                    if not name.startswith(prefix):
                        continue
                    rest = name[len(prefix) :].split("/")
                    depth = len(rest) if recursive else 1
                    for i in range(1, min(depth, len(rest) - 1) + 1):  # the folders on the way
                        sub = prefix + "/".join(rest[:i])
                        entries.setdefault(
                            sub, {"type": "directory", "path": sub, "size": 0, "oid": "0" * 40}
                        )
                    if recursive or len(rest) == 1:
                        entries[name] = self._tree_entry(repo_id, name, content)
                if prefix and not entries:
                    return self._reply(404, {"error": "not found"}, {"X-Error-Code": "EntryNotFound"})
                self._reply(200, [entries[k] for k in sorted(entries)])

            def do_GET(self):  # noqa: N802
                hub.requests.append(f"GET {self.path}")
                path = urlsplit(self.path).path
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
                    if parts[5] == "tree":  # /tree/<rev>[/<folder>]?recursive=..
                        return self._tree(repo_id, "/".join(unquote(p) for p in parts[7:]))
                    return self._not_found()
                self._resolve(path)

        for handler in (Hub, Storage):
            handler.hub = self
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
        self.storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.storage_url = f"http://127.0.0.1:{self.storage.server_address[1]}"
        self.threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self.server, self.storage)
        ]

    def upload_mode(self, path: str, size: int) -> str:
        """The Hub's answer for one file: LFS for tracked patterns and large files."""
        name = path.rsplit("/", 1)[-1]
        tracked = any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS)
        return "lfs" if tracked or size >= self.lfs_threshold else "regular"

    def __enter__(self) -> FakeHub:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (self.server, self.storage):
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def online(monkeypatch):
    """Switch huggingface_hub's offline mode off for this test only (conftest turns it on), and Xet off
    (uploads of LFS-mode files then take the git-lfs protocol the loopback server speaks)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
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
    # model.safetensors took the LFS path (batch, PUT to storage, verify, lfsFile), the rest regular
    assert hub.modes["alice/mouse-test"] == {
        name: "lfs" if name == "model.safetensors" else "regular" for name in HUB_FILES
    }
    local_sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert hub.lfs_batches == [[local_sha]] and hub.verified == [local_sha]
    assert hub.lfs_uploads == [(local_sha, 768, local_sha)]  # the bytes that arrived hash to the oid
    assert hub.lfs_objects[local_sha] == (folder / "model.safetensors").read_bytes()
    assert hub.storage_auth == [""], "the token never goes to the storage side"


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
    assert hub.modes["alice/tiny-mouse"] == {"config.json": "regular", "model.safetensors": "lfs"}
    weights = hub.files["alice/tiny-mouse"]["model.safetensors"]
    sha = hashlib.sha256(weights).hexdigest()
    assert hub.lfs_uploads == [(sha, len(weights), sha)] and hub.verified == [sha]
    hub.files["alice/tiny-mouse"]["extra/big.bin"] = b"x" * 1000  # not a MOUSE file: never fetched
    hub.modes["alice/tiny-mouse"]["extra/big.bin"] = "regular"

    loaded = load_model("alice/tiny-mouse", local_dir=tmp_path / "dl")
    assert type(loaded) is ModelLlama and loaded.config == model.config
    td = make_stream()
    ref, got = model(td)[0], loaded.eval()(td)[0]
    for key in ref.keys():
        assert torch.equal(ref[key], got[key]), key
    assert sorted(hub.downloads) == ["alice/tiny-mouse/config.json", "alice/tiny-mouse/model.safetensors"]
    assert all(a == f"Bearer {SECRET}" for a in hub.auth)
    cdn = [r for r in hub.requests if r.startswith("STORAGE GET /lfs/")]
    assert cdn == [f"STORAGE GET /lfs/{sha}?repo=alice/tiny-mouse&file=model.safetensors"]  # via the redirect
    assert hashlib.sha256((tmp_path / "dl" / "model.safetensors").read_bytes()).hexdigest() == sha

    push_checkpoint(tmp_path / "dl", "alice/tiny-mouse")  # the same bytes again: the batch answers
    assert hub.lfs_batches == [[sha], [sha]] and len(hub.lfs_uploads) == 1  # "stored": nothing is PUT
    assert hub.modes["alice/tiny-mouse"]["model.safetensors"] == "lfs" and hub.verified == [sha]


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
    assert hub.modes["alice/tiny-data"] == {
        "spec.json": "regular",
        "README.md": "regular",
        "data/train-00000-of-00001.arrow": "lfs",  # *.arrow is LFS-tracked on the Hub
    }
    assert hub.lfs_uploads[0][2] == hashlib.sha256(uploaded["data/train-00000-of-00001.arrow"]).hexdigest()
    uploaded["other/huge.arrow"] = b"not fetched"
    hub.modes["alice/tiny-data"]["other/huge.arrow"] = "regular"

    loaded = load_dataset("alice/tiny-data")
    assert loaded.spec == load_dataset(path).spec
    for name, column in cols.items():
        np.testing.assert_array_equal(loaded.columns[name], column, err_msg=name)
    assert sorted(hub.downloads) == [
        "alice/tiny-data/README.md",
        "alice/tiny-data/data/train-00000-of-00001.arrow",
        "alice/tiny-data/spec.json",
    ]  # only what load_dataset reads


def test_size_threshold_and_multipart_lfs_uploads(tmp_path, online):
    """Files at or above the size threshold go through LFS whatever their name; a large object takes
    the multipart transfer (one PUT per part, then the completion call) and still verifies."""
    folder = _checkpoint_folder(tmp_path)
    threshold = (folder / "README.md").stat().st_size + 1  # the card stays regular
    (folder / "train_config.yaml").write_text("trainer:\n  steps: 5\n" + "#" * threshold)  # above it
    with FakeHub(lfs_threshold=threshold, multipart_chunk=256) as hub:
        push_checkpoint(folder, "alice/multi", endpoint=hub.url)
    modes = hub.modes["alice/multi"]
    assert modes["model.safetensors"] == modes["train_config.yaml"] == "lfs"
    assert modes["config.json"] == modes["README.md"] == modes["dataset_spec.json"] == "regular"
    weights_sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    parts = [r for r in hub.requests if r.startswith(f"STORAGE PUT /upload/{weights_sha}/")]
    assert len(parts) == 3  # 768 bytes in 256-byte parts
    assert f"STORAGE POST /complete/{weights_sha}" in hub.requests
    for name in ("model.safetensors", "train_config.yaml"):
        content = (folder / name).read_bytes()
        sha = hashlib.sha256(content).hexdigest()
        assert (sha, len(content), sha) in hub.lfs_uploads and sha in hub.verified, name
        assert hub.files["alice/multi"][name] == content, name
    assert set(hub.storage_auth) == {""}


def test_a_commit_naming_an_unuploaded_lfs_object_is_rejected(tmp_path, online):
    """The commit's ``lfsFile`` oid must name a verified upload: a pointer to nothing fails, no commit."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    operation = CommitOperationAdd("model.safetensors", b"never uploaded")
    operation._upload_mode, operation._is_uploaded = "lfs", True  # as if preupload had run
    with FakeHub() as hub:
        api = HfApi(endpoint=hub.url)
        api.create_repo("alice/bad")
        with pytest.raises(HfHubHTTPError, match="422"):
            api.create_commit("alice/bad", operations=[operation], commit_message="x")
    assert hub.files["alice/bad"] == {} and not hub.lfs_uploads


def _hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """The environment of a console script talking to ``hub``: endpoint, token, online, own cache."""
    import os

    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": SECRET,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1",
        "OMP_NUM_THREADS": "1",
    }


def _script(name: str) -> str:
    import sys

    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.skip(f"the {name} console script is not installed next to this Python")
    return str(script)


def test_mouse_collect_pushes_then_both_loaders_read_it_from_the_hub(tmp_path, hub):
    """``mouse-collect ... hub.repo_id=`` (subprocess) uploads the arrow file through LFS; then
    ``mouse.data.load_dataset`` and ``datasets.load_dataset`` read the repo back from the loopback Hub."""
    import subprocess
    import sys

    import numpy as np

    from mouse.data import load_dataset

    env = _hub_env(hub, tmp_path)
    cmd = [_script("mouse-collect"), "task=darkroom", "task.size=3", "num_tasks=4", "steps_per_task=20"]
    cmd += [f"output={tmp_path / 'ds'}", "hub.repo_id=alice/collected", "show_progress=false"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{hub.url}/datasets/alice/collected" in done.stdout
    arrow = "data/train-00000-of-00001.arrow"
    assert hub.modes["alice/collected"] == {"README.md": "regular", "spec.json": "regular", arrow: "lfs"}
    local = (tmp_path / "ds" / arrow).read_bytes()
    sha = hashlib.sha256(local).hexdigest()
    assert hub.lfs_uploads == [(sha, len(local), sha)] and hub.verified == [sha]
    assert hub.auth and all(a == f"Bearer {SECRET}" for a in hub.auth)

    loaded, reference = load_dataset("alice/collected"), load_dataset(tmp_path / "ds")
    assert loaded.spec == reference.spec and loaded.spec.num_records == 80
    for name, column in reference.columns.items():
        np.testing.assert_array_equal(loaded.columns[name], column, err_msg=name)
    assert f"alice/collected/{arrow}" in hub.downloads

    code = (
        "import datasets, json; d = datasets.load_dataset('alice/collected')['train']; "
        "print(json.dumps({'n': d.num_rows, 'cols': sorted(d.column_names), 'reward': sum(d['reward'])}))"
    )
    env["HF_DATASETS_CACHE"] = str(tmp_path / "datasets_cache")
    read = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert got["n"] == 80 and {"action", "reward", "done", "time", "q_star"} <= set(got["cols"])
    assert got["reward"] == float(np.asarray(reference.columns["reward"], dtype=np.float64).sum())
    assert hub.downloads.count(f"alice/collected/{arrow}") == 2  # datasets fetched it through the CDN too


def test_mouse_eval_on_a_checkpoint_pushed_to_the_hub(tmp_path, hub):
    """``push_checkpoint`` of a tiny checkpoint, then ``mouse-eval checkpoint=ORG/NAME`` (subprocess)."""
    import subprocess

    from test_eval import _checkpoint

    step = _checkpoint(tmp_path / "src") / "checkpoints" / "step-3"
    push_checkpoint(step, "alice/eval-me")
    assert hub.modes["alice/eval-me"]["model.safetensors"] == "lfs"
    assert hub.files["alice/eval-me"]["model.safetensors"] == (step / "model.safetensors").read_bytes()

    out = tmp_path / "results"
    cmd = [_script("mouse-eval"), "checkpoint=alice/eval-me", "num_tasks=2", "episodes=2", "seeds=1"]
    cmd += [f"output={out}", "plot=false"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_hub_env(hub, tmp_path), capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert data["episodes"] == 2 and len(data["task"]["task_ids"]) == 2
    assert "alice/eval-me/model.safetensors" in hub.downloads  # served by the CDN after the redirect
    assert "alice/eval-me/trainer_state.json" not in hub.downloads


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

    inputs = (
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
    text = model_card(*inputs)
    assert text == model_card(*inputs)  # same input, same text
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
