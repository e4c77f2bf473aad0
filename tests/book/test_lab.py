"""`make lab`: JupyterLab on the project's environment serves a chapter as a notebook."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crowdlens-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


@pytest.fixture
def lab():
    if shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "jupyter").exists():
        pytest.skip("make lab needs the project's .venv (run make setup)")
    port = free_port()
    args = f"--no-browser --IdentityProvider.token={TOKEN}"
    process = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}", f"LAB_ARGS={args}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get(f"{base}/api/status")
                break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError("make lab exited: " + process.stderr.read().decode()[-2000:])
                if time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not answer within 120 s")
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_lab_serves_a_chapter_as_a_notebook_with_its_parameters_cell(lab):
    status, page = get(f"{lab}/lab")
    assert status == 200 and b"JupyterLab" in page
    # double-clicking a chapter opens the notebook view (book/lab/overrides.json)
    status, body = get(f"{lab}/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    viewers = json.loads(body)["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers.get("markdown") == "Jupytext Notebook"
    status, body = get(f"{lab}/api/contents/chapters/training.md?type=notebook&content=1")
    model = json.loads(body)
    assert model["type"] == "notebook" and model["format"] == "json"
    cells = model["content"]["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in code)
    assert model["content"]["metadata"]["kernelspec"]["name"] == "python3"
    # the kernel is the project's environment: ipykernel's own spec says "python", which
    # jupyter_client runs as the server's interpreter, and make lab runs .venv's server
    status, body = get(f"{lab}/api/kernelspecs")
    spec = json.loads(body)["kernelspecs"]["python3"]["spec"]
    assert spec["argv"][0] in {"python", str(ROOT / ".venv" / "bin" / "python")}
