"""Web servers started the way users start them, on free loopback ports, and a
plain HTTP client (``http.client``). Every server is stopped by its own pid."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import WAIT

APPS = Path(__file__).parent / "web_apps"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``args`` run with this interpreter from the apps' folder; its output goes to a log file."""

    def __init__(
        self,
        args: list[str],
        port: int,
        log: Path,
        stop_signal: int = signal.SIGTERM,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.stop_signal = stop_signal
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=APPS,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()  # the caller never gets this server to stop it
            raise

    def _wait_until_listening(self) -> None:
        end = time.monotonic() + WAIT * 3
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the server did not listen on port {self.port}:\n{self.log()}")

    def get(self, path: str, timeout: float = WAIT * 3) -> tuple[int, bytes, float]:
        """GET ``path`` on a connection of its own: (status, body, seconds it took)."""
        start = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            return response.status, body, time.monotonic() - start
        finally:
            connection.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str) -> str:
        end = time.monotonic() + WAIT
        while text not in (log := self.log()) and time.monotonic() < end:
            time.sleep(0.05)
        assert text in log, f"{text!r} not in the server's log:\n{log}"
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self._log.close()
        for pid in self.worker_pids:  # a worker its master left behind, stopped by its own pid
            if self._is_ours(pid):
                os.kill(pid, signal.SIGKILL)

    def _is_ours(self, pid: int) -> bool:
        """Still this server's worker (forked from it, so with its command line), not a reused pid."""
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False  # gone (or no /proc: not Linux)
        return f"127.0.0.1:{self.port}".encode() in command

    @property
    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes, from its log."""
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.log())]


def gunicorn(tmp_path: Path, *options: str, app: str = "wsgi_app:app") -> Server:
    port = free_port()
    # Stopped with SIGTERM: the arbiter waits --graceful-timeout for its workers, then
    # kills them (a worker told SIGQUIT, the quick way, hung in its exit now and then).
    args = ["-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--no-control-socket", "--graceful-timeout", "2"]
    return Server([*args, "--access-logfile", "-", *options, app], port, tmp_path / "gunicorn.log")


def waitress(tmp_path: Path, *options: str, app: str = "wsgi_app:limited") -> Server:
    port = free_port()
    return Server(["-m", "waitress", f"--listen=127.0.0.1:{port}", *options, app], port, tmp_path / "waitress.log")


def asgi(tmp_path: Path, server: str, env: dict[str, str] | None = None) -> Server:
    """``asgi_app:app`` under uvicorn (asyncio) or ``hypercorn -k trio``."""
    port = free_port()
    if server == "uvicorn":
        args = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "asgi_app:app"]
    else:
        args = ["-m", "hypercorn", "-k", "trio", "-b", f"127.0.0.1:{port}", "asgi_app:app"]
    return Server(args, port, tmp_path / f"{server}.log", env=env)
