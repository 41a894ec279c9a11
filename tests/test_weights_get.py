"""`hoi weights get` against a local HTTP server on 127.0.0.1 (never the internet).

The server serves files from a dict, honours HTTP Range, and can drop a connection after a
given number of bytes (once), so a right file, a wrong checksum, a dropped connection then a
resume, and a 404 are all exercised for real.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from hoi_cli.cli import app
from hoi_cli.errors import ExitCode, MissingWeightsError
from hoi_cli.model_files import MODEL_FILES
from hoi_cli.download import DownloadError, download_file, fetch

runner = CliRunner()
PAYLOAD = bytes(range(256)) * 12000  # 3 MB: several 1 MiB read chunks


class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the connection is cut (once)
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_after.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _entry(server, name="model.bin", data=PAYLOAD, **checks):
    server.files[f"/{name}"] = data
    return replace(MODEL_FILES["dino_vitb16"], key="test_model", filename=name, url=f"{server.base}/{name}", **checks)


def test_right_file_is_downloaded_checked_and_found_again(server, tmp_path):
    entry = _entry(server, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    seen = []
    path, action = fetch(entry, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert (path, action) == (tmp_path / "model.bin", "downloaded")
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "model.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) > 2  # the progress bar moved
    # found again: no second request
    n = len(server.requests)
    assert fetch(entry, tmp_path) == (path, "present")
    assert len(server.requests) == n


def test_wrong_checksum_never_lands_under_the_final_name(server, tmp_path):
    entry = _entry(server, sha256=hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(DownloadError) as exc:
        fetch(entry, tmp_path)
    assert "sha256" in exc.value.message and entry.url in exc.value.message
    assert exc.value.exit_code == ExitCode.MISSING_WEIGHTS
    assert not (tmp_path / "model.bin").exists()
    assert not (tmp_path / "model.bin.part").exists()  # bad bytes are not kept for a resume


def test_sha256_prefix_from_a_torch_hub_file_name(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    ok = _entry(server, name="ok.bin", sha256_prefix=digest[:8])
    assert fetch(ok, tmp_path)[0].read_bytes() == PAYLOAD
    bad = _entry(server, name="bad.bin", sha256_prefix="0" * 8 if not digest.startswith("0" * 8) else "f" * 8)
    with pytest.raises(DownloadError):
        fetch(bad, tmp_path)
    assert not (tmp_path / "bad.bin").exists()


def test_dropped_connection_keeps_a_part_file_then_resumes(server, tmp_path):
    entry = _entry(server, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    cut = 1_300_000
    server.drop_after["/model.bin"] = cut
    with pytest.raises(DownloadError) as exc:
        fetch(entry, tmp_path)
    assert f"stopped at {cut} of {len(PAYLOAD)} bytes" in exc.value.message
    assert "resume" in exc.value.hint
    assert not (tmp_path / "model.bin").exists()  # a torn download never looks complete
    assert (tmp_path / "model.bin.part").stat().st_size == cut

    path, action = fetch(entry, tmp_path)
    assert action == "downloaded" and path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/model.bin", f"bytes={cut}-")  # only the rest was asked for


def test_a_complete_part_file_is_checked_and_moved_without_refetching(server, tmp_path):
    entry = _entry(server, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD)
    path, action = fetch(entry, tmp_path)
    assert action == "downloaded" and path.read_bytes() == PAYLOAD
    assert server.requests[-1][1] == f"bytes={len(PAYLOAD)}-"  # answered 416: nothing re-sent


def test_a_download_in_progress_elsewhere_is_not_interleaved(server, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    entry = _entry(server)
    (tmp_path / "model.bin.part").write_bytes(PAYLOAD[:1000])
    with open(tmp_path / "model.bin.part", "rb+") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process is writing it
        with pytest.raises(DownloadError, match="being downloaded by another process"):
            fetch(entry, tmp_path)
    assert server.requests == [] and (tmp_path / "model.bin.part").read_bytes() == PAYLOAD[:1000]
    assert fetch(entry, tmp_path)[0].read_bytes() == PAYLOAD  # and once it is free, resumed


def test_not_found_and_unreachable_fail_in_one_line_naming_the_url(server, tmp_path):
    entry = replace(MODEL_FILES["dino_vitb16"], filename="gone.bin", url=f"{server.base}/gone.bin")
    with pytest.raises(DownloadError) as exc:
        fetch(entry, tmp_path)
    assert exc.value.message == f"{server.base}/gone.bin answered HTTP 404 Not Found"
    assert "by hand" in exc.value.hint and str(tmp_path / "gone.bin") in exc.value.hint
    assert not list(tmp_path.iterdir())

    port = server.httpd.server_address[1]
    server.close()  # nothing listens there any more: refused
    with pytest.raises(DownloadError) as exc:
        download_file(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", timeout=5)
    assert exc.value.message.startswith(f"cannot reach http://127.0.0.1:{port}/x.bin")
    assert "\n" not in exc.value.message


def test_hugging_face_repo_unreachable_fails_in_one_line(tmp_path):
    pytest.importorskip("huggingface_hub")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    entry = MODEL_FILES["wan2.1_vace_1.3b"]
    with pytest.raises(DownloadError) as exc:
        fetch(entry, tmp_path, hf_endpoint=endpoint)
    assert exc.value.message.startswith(f"cannot download {endpoint}/{entry.hf_repo} (")
    assert "\n" not in exc.value.message and f"hf download {entry.hf_repo}" in exc.value.hint
    assert not (tmp_path / entry.expected_name).exists()  # only ever the .part folder


def test_cli_get_through_a_mirror_json_and_exit_codes(server, tmp_path, monkeypatch):
    """The real registry entries, served by the local server through HOI_WEIGHTS_MIRROR."""
    monkeypatch.setenv("HOI_WEIGHTS_MIRROR", server.base)
    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path / "w"))
    server.files["/dino_vitbase16_pretrain.pth"] = PAYLOAD  # size-only check: accepted
    server.files["/alexnet-owt-7be5be79.pth"] = PAYLOAD  # its file name's sha256 prefix does not match
    r = runner.invoke(app, ["weights", "get", "dino_vitb16", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ok"] and out["files"][0]["action"] == "downloaded"
    assert (tmp_path / "w" / "dino_vitbase16_pretrain.pth").read_bytes() == PAYLOAD

    r = runner.invoke(app, ["weights", "get", "dino_vitb16", "alexnet_lpips", "--format", "json"])
    assert r.exit_code == int(ExitCode.MISSING_WEIGHTS), r.output
    files = json.loads(r.stdout)["files"]
    assert files[0]["action"] == "present"
    assert not files[1]["ok"] and "7be5be79" in files[1]["error"]
    assert not (tmp_path / "w" / "alexnet-owt-7be5be79.pth").exists()

    listed = json.loads(runner.invoke(app, ["weights", "list", "--format", "json"]).stdout)
    by_name = {f["name"]: f for f in listed["files"]}
    assert by_name["dino_vitb16"]["found"] == str(tmp_path / "w" / "dino_vitbase16_pretrain.pth")
    assert by_name["alexnet_lpips"]["found"] is None and by_name["alexnet_lpips"]["sha256_prefix"] == "7be5be79"
    assert listed["download_dir"] == str(tmp_path / "w")

    r = runner.invoke(app, ["weights", "get", "no_such_model"])
    assert r.exit_code == int(ExitCode.BAD_INPUT)


def test_manual_files_explain_how_and_download_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOI_WEIGHTS_MIRROR", server.base)
    with pytest.raises(MissingWeightsError) as exc:
        fetch(MODEL_FILES["mano_right"], tmp_path)
    assert "https://mano.is.tue.mpg.de" in exc.value.hint and "licence" in exc.value.hint
    assert server.requests == [] and not list(tmp_path.iterdir())
    # found where it is used from (HOI_MANO_DIR), then nothing to do
    mano = tmp_path / "mano"
    mano.mkdir()
    (mano / "MANO_RIGHT.pkl").write_bytes(b"x")
    monkeypatch.setenv("HOI_MANO_DIR", str(mano))
    assert fetch(MODEL_FILES["mano_right"], tmp_path / "w") == (mano / "MANO_RIGHT.pkl", "present")


def test_registry_is_complete_and_honest():
    """Every entry has a purpose, licence and source; digests only where they are real hex."""
    expected = {"sam_vit_b", "sam_vit_h", "mano_right", "mano_left", "fid_inception", "i3d_kinetics400",
                "alexnet_lpips", "dino_vitb16", "amt_s", "sam2.1_hiera_tiny", "sam2.1_hiera_small",
                "sam2.1_hiera_base_plus", "sam2.1_hiera_large", "wan2.1_vace_1.3b", "wan2.1_t2v_1.3b"}
    assert expected <= set(MODEL_FILES)
    for m in MODEL_FILES.values():
        assert m.purpose and m.licence and m.source.startswith("https://"), m.key
        assert sum(bool(x) for x in (m.url, m.hf_repo, m.manual)) == 1, m.key
        if m.sha256_prefix:  # torch.hub convention: the prefix is in the file name
            assert f"-{m.sha256_prefix}." in m.expected_name
        assert not m.sha256 or len(m.sha256) == 64


def test_missing_weights_hint_names_the_get_command():
    exc = MissingWeightsError("FVD", "i3d_torchscript.pt", ["/nowhere"])
    assert "hoi weights get i3d_kinetics400" in exc.hint
    assert "hoi weights get" not in MissingWeightsError("x", "unknown.bin", []).hint
