"""The wheel carries everything the app serves: installed into a fresh venv outside the
checkout, with the runtime dependencies only, it migrates, seeds and serves pages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

from tests.support import ROOT, free_port

# What an sdist would carry: the packages and the files setuptools reads.
SOURCES = ("pyproject.toml", "README.md", "chat", "bench")


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, (command, completed.stdout[-2000:], completed.stderr[-3000:])
    return completed.stdout


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own server)
        return response.status, response.read()


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` of a copy of the sources, so the build leaves nothing in the checkout.
    No build isolation: the test extra installs setuptools, and pyproject.toml's
    [build-system] asks for nothing more."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, source / name)
    run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", tmp_path / "dist", source,
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("chat-*.whl")
    return wheel


def test_the_wheel_installed_in_a_fresh_venv_migrates_seeds_and_serves_pages(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path)
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    # A venv without pip of its own (quicker); this pip installs into it, from its cache.
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel, cwd=work)
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("CHAT_")},
        "CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'chat.db'}",
        "CHAT_LOG_LEVEL": "WARNING",
    }
    env.pop("PYTHONPATH", None)

    code = "import bench.cli, chat.cli; print(chat.cli.__file__, bench.cli.__file__)"
    where = run(python, "-c", code, cwd=work)
    assert all(Path(path).is_relative_to(venv.resolve()) for path in where.split()), where
    chat = venv / "bin" / "chat"
    run(chat, "db", "upgrade", cwd=work, env=env)
    # Seeding needs the runtime only: the venv has no test or bench extras.
    run(chat, "seed", "--rooms", "2", "--users", "3", "--messages", "20", cwd=work, env=env)

    port = free_port()
    server = subprocess.Popen(
        [chat, "serve", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                status, _ = get(f"{base}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "chat serve did not answer /healthz"
                time.sleep(0.1)
        assert status == 200
        status, page = get(f"{base}/login")  # a template
        assert status == 200
        assert b"<form" in page
        stylesheet = re.search(rb'<link rel="stylesheet" href="([^"]+)"', page)[1].decode()
        status, css = get(urljoin(f"{base}/login", stylesheet))  # a static file
        assert status == 200
        assert css == (ROOT / "chat" / "static" / "app.css").read_bytes()
    finally:
        server.terminate()
        server.wait(10)
