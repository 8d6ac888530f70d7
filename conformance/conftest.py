"""Starts the real room server binary on 127.0.0.1 port 0 for the conformance tests."""

import asyncio
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP_SIGN = "ab" * 32

# App 1: multi-room, no sign. App 2: a sign, one room at a time. Nothing else is admitted.
# Three forwarding workers whatever the machine: publishers and players land on different ones.
CONFIG = f"""
media_workers = 3

[[app]]
app_id = 1
multi_room = true
max_rooms_per_user = 3

[[app]]
app_id = 2
app_sign = "{APP_SIGN}"
[app.limits]
broadcast_per_user = 0.01
"""


def server_binary():
    if os.environ.get("ZROOMS_SERVER_BIN"):
        return os.environ["ZROOMS_SERVER_BIN"]
    path = ROOT / "target" / "release" / "zrooms-server"
    if not path.exists():
        pytest.fail("zrooms-server is not built: run scripts/setup.sh")
    return str(path)


class Server:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="zrooms-conformance-")
        config = pathlib.Path(self.dir.name) / "apps.toml"
        config.write_text(CONFIG)
        self.proc = subprocess.Popen(
            [server_binary(), "--host", "127.0.0.1", "--port", "0", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = []
        threading.Thread(target=self._drain, daemon=True).start()
        # The first stdout line names the address (docs/operations.md); the read ends when
        # the line comes or the process exits, whichever is first.
        watchdog = threading.Timer(10, self.proc.kill)
        watchdog.start()
        found = None
        for line in self.proc.stdout:
            found = re.search(r"listening on (ws://\S+)", line)
            if found:
                break
        watchdog.cancel()
        if not found:
            self.proc.wait()
            raise RuntimeError("server did not start: " + "".join(self.stderr))
        self.url = found.group(1)

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.dir.cleanup()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


def run(coro, deadline=90):
    """Runs one scenario on a fresh event loop, failing it past `deadline` seconds."""
    return asyncio.run(asyncio.wait_for(coro, deadline))
