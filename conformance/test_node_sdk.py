"""The stand-in driven with Pluggy's official Node SDK (npm pluggy-sdk, conformance/node): run.mjs
makes every call and checks each answer, and each webhook delivery, against the SDK's declared
types; it prints one line per call, and this test fails with the lines of those that failed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conformance.conftest import CLIENT_ID, CLIENT_SECRET

NODE_DIR = Path(__file__).resolve().parent / "node"
TIMEOUT = 90  # seconds: the run takes a few; an item that never finishes fails at 20 within it


def test_every_call_of_the_node_sdk(stand_in: str) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required (node not found on PATH)"
    assert (NODE_DIR / "node_modules" / "pluggy-sdk").is_dir(), (
        "run `npm ci` in conformance/node (`make conformance` does)"
    )
    command = [node, str(NODE_DIR / "run.mjs"), "--base-url", stand_in]
    command += ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=NODE_DIR)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    report = "\n".join(failed) if failed else f"{result.stdout}\n{result.stderr[-3000:]}"
    assert result.returncode == 0 and not failed, f"exit {result.returncode}:\n{report}"
