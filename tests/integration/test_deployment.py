"""The deployment files, checked as far as this machine allows: the compose file's structure
and every file it mounts, the settings it ships, the systemd unit (systemd-analyze verify), and
the container entrypoint starting for real against the embedded database and a loopback AMI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from ruamel.yaml import YAML

from callcenter.settings import load_settings
from callcenter.sim.ami_server import FakeAmiServer

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def test_compose_services_mounts_and_secrets() -> None:
    compose = YAML(typ="safe").load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "callcenter", "asterisk", "freeswitch"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith((".", "/")):
                assert (DOCKER / src).resolve().exists(), f"{name} mounts a missing file: {src}"
    build = services["callcenter"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file()
    env_example = (DOCKER / "env.example").read_text()
    for var in set(re.findall(r"\$\{(\w+)", (DOCKER / "compose.yaml").read_text())):
        assert re.search(rf"^{var}=", env_example, re.M), f"{var} missing from env.example"


def test_the_shipped_settings_validate_and_name_secrets_the_env_example_provides(monkeypatch) -> None:
    monkeypatch.setenv("AMI_SECRET", "x")
    settings = load_settings(DOCKER / "callcenter.yaml")
    env_example = (DOCKER / "env.example").read_text()
    for pbx in settings.pbx:
        assert pbx.secret_env and re.search(rf"^{pbx.secret_env}=", env_example, re.M)
    manager = (DOCKER / "asterisk" / "manager.conf").read_text()
    assert "bindaddr = 127.0.0.1" in manager and f"[{settings.pbx[0].username}]" in manager


def test_dockerfile_copies_what_exists() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), src
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)


def test_systemd_unit_verifies(tmp_path) -> None:
    exe = Path(sys.executable).with_name("callcenter")
    unit = (DOCKER / "callcenter.service").read_text().replace("/opt/callcenter/venv/bin/callcenter", str(exe))
    path = tmp_path / "callcenter.service"
    path.write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    problems = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if ln.strip() and "callcenter.service" in ln and "User" not in ln and "Group" not in ln]
    assert proc.returncode == 0 and problems == [], proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_entrypoint_migrates_and_runs_against_the_embedded_database(tmp_path) -> None:
    ami = await FakeAmiServer(username="callcenter", secret="s3cret").start()
    port = _free_port()
    config = tmp_path / "callcenter.yaml"
    config.write_text(
        f"pbx:\n  - {{name: asterisk-1, type: asterisk, host: 127.0.0.1, port: {ami.port}, username: callcenter,"
        f" secret_env: AMI_SECRET}}\nhttp: {{host: 127.0.0.1, port: {port}}}\n"
        f"database: {{embedded_data_dir: {tmp_path / 'pgdata'}}}\njourney: {{spill_dir: {tmp_path / 'spill'}}}\n")
    env = {**os.environ, "CALLCENTER_CONFIG": str(config), "AMI_SECRET": "s3cret", "XDG_DATA_HOME": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec(str(DOCKER / "entrypoint.sh"), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, "the entrypoint exited early"
                await asyncio.sleep(0.2)
        assert ami.logins >= 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        await ami.close()
    assert proc.returncode == 0, out.decode()[-3000:]
