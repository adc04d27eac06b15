"""What is shipped runs: the wheel, built from the source tree and installed into a fresh
virtual environment, migrates a database and serves the API, the activation page and the
console (templates, styles and scripts included) with no file of the source tree in reach.
The Dockerfile installs the same wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import httpx
import pytest

from passflow.serving import free_port
from tests.support import TOKEN, child_env, device_json, new_device, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(into: Path) -> Path:
    """The wheel, built from a copy of the tree as a clean clone holds it (no build/ left over
    from an earlier build can slip into it)."""
    source = into / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    # As `pip install .` and the Dockerfile build it: the build backend pyproject.toml names,
    # in an isolated build environment.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                            "-w", str(into / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (into / "dist").glob("passflow-*.whl")
    return wheel


def _fresh_environment(at: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel; its dependencies are read from this
    test run's environment (a path, not an install: nothing of the source tree comes with it,
    the editable install's finder included)."""
    venv.create(at, with_pip=True)
    python = at / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                                "--quiet", str(wheel)], capture_output=True, text=True,
                               timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return at / "bin"


@pytest.mark.slow  # builds a wheel and starts a process
def test_the_installed_wheel_migrates_and_serves_the_console(tmp_path: Path):
    wheel = _build_wheel(tmp_path)
    bin_dir = _fresh_environment(tmp_path / "env", wheel)
    elsewhere = tmp_path / "run"  # not the source tree: nothing is imported from it
    elsewhere.mkdir()
    env = child_env({"PASSFLOW_DATABASE_URL": f"sqlite:///{elsewhere / 'passflow.db'}",
                     "PASSFLOW_API_TOKEN": TOKEN, "PYTHONPATH": None})
    where = subprocess.run([str(bin_dir / "python"), "-c", "import api, passflow; "
                            "print(api.__file__, passflow.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(tmp_path / "env") in where, where
    migrated = subprocess.run([str(bin_dir / "passflow"), "db", "upgrade"], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    log = (elsewhere / "api.log").open("wb")
    api = subprocess.Popen([str(bin_dir / "passflow"), "api", "--port", str(port)],
                           cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/livez", timeout=1).status_code == 200
        except httpx.TransportError:
            assert api.poll() is None, (elsewhere / "api.log").read_text()[-3000:]
            return False

    try:
        wait_for(up, timeout=30)
        with httpx.Client(base_url=base, timeout=10) as browser:
            assert "<form" in browser.get("/console").text  # the sign-in page's template
            signed_in = browser.post("/console/sign-in", data={"token": TOKEN})
            assert signed_in.status_code == 303, signed_in.text[:500]
            overview = browser.get("/console/overview")
            assert overview.status_code == 200 and "Overview" in overview.text
            for asset in ("console.css", "console.js"):
                assert browser.get(f"/console/static/{asset}").status_code == 200
            page = browser.get("/activate", headers={"User-Agent": "Mozilla/5.0 (X11; Linux "
                               "x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"})
            assert page.status_code == 200 and "<form" in page.text, page.text[:500]
            accepted = browser.post("/v1/events", headers={"Authorization": f"Bearer {TOKEN}"},
                                    json={"event_id": "evt-wheel-1", "type": "profiles.requested",
                                          "device": device_json(new_device())})
            assert accepted.status_code == 202, accepted.text
    finally:
        api.terminate()
        api.wait(timeout=10)
        log.close()
