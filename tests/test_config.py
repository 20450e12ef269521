"""Every documented environment variable reaches the configuration, and a value that cannot be used
stops every `ivr` command with one line naming the variable, the value and what is allowed."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.config import NUMBERS, ROOT, Config, ConfigError

CASES = [
    ("TWILIO_AUTH_TOKEN", "abc123", "twilio_auth_token", "abc123"),
    ("PUBLIC_URL", "https://h.example/", "public_url", "https://h.example"),
    ("HUMAN_LINE", "+15551230000", "human_line", "+15551230000"),
    ("REDIS_URL", "redis://r:6379/2", "redis_url", "redis://r:6379/2"),
    ("IVR_DATA_DIR", "/tmp/d", "data_dir", Path("/tmp/d")),
    ("IVR_FLOWS_DIR", "/tmp/f", "flows_dir", Path("/tmp/f")),
    ("IVR_AUDIO_DIR", "/tmp/a", "audio_dir", Path("/tmp/a")),
    ("IVR_DEFAULT_FLOW", "hotline_ko", "default_flow", "hotline_ko"),
    ("IVR_RETENTION_DAYS", "3", "retention_seconds", 3 * 86400),
    ("IVR_GATHER_TIMEOUT", "9", "gather_timeout", 9),
    ("IVR_DIAL_TIMEOUT", "11", "dial_timeout", 11),
    ("IVR_FEEDBACK", "off", "feedback", False),
    ("IVR_FEEDBACK_AFTER_AGENT", "off", "feedback_after_agent", False),
    ("IVR_HANDOFF_MODE", "dial", "handoff_mode", "dial"),
    ("IVR_CALLBACK_AFTER", "90", "callback_after", 90),
    ("IVR_ANNOUNCE_EVERY", "30", "announce_every", 30),
    ("IVR_QUEUE_PREFIX", "acme-", "queue_prefix", "acme-"),
    ("IVR_DIAL_OVERFLOW", "callback", "dial_overflow", "callback"),
    ("IVR_SECRET_KEY", "s3", "secret_key", "s3"),
    ("IVR_SERVICE_LEVEL_SECONDS", "30", "service_level_seconds", 30),
    ("IVR_MODELS_DIR", "/tmp/m", "models_dir", Path("/tmp/m")),
    ("IVR_SPEECH", "off", "speech", False),
    ("IVR_RECORD_CALLS", "on", "record_calls", True),
    ("IVR_RECORDING_RETENTION_DAYS", "2", "recording_retention_seconds", 2 * 86400),
    ("IVR_ENDPOINT_SILENCE_MS", "300", "endpoint_silence_ms", 300),
    ("IVR_HEADER_TIMEOUT", "4", "header_timeout", 4),
    ("IVR_BODY_TIMEOUT", "6", "body_timeout", 6),
    ("IVR_CLIENT_CONNECTIONS", "8", "client_connections", 8),
    ("IVR_WORKER_CONNECTIONS", "4000", "worker_connections", 4000),
    ("IVR_METRICS_CACHE_SECONDS", "0", "metrics_cache_seconds", 0),
    ("IVR_RECORDING_ORIGINS", "https://a.example, https://b.example", "recording_origins",
     ("https://a.example", "https://b.example")),
    ("TWILIO_ACCOUNT_SID", "AC" + "1" * 32, "twilio_account_sid", "AC" + "1" * 32),
    ("TWILIO_API_KEY", "SK" + "2" * 32, "twilio_api_key", "SK" + "2" * 32),
    ("TWILIO_API_SECRET", "key-secret", "twilio_api_secret", "key-secret"),
    ("TWILIO_API_URL", "http://127.0.0.1:9/", "twilio_api_url", "http://127.0.0.1:9"),
    ("IVR_CALLBACK_MAX_ATTEMPTS", "5", "callback_max_attempts", 5),
    ("IVR_CALLBACK_RETRY_SECONDS", "60", "callback_retry_seconds", 60),
    ("IVR_CALLBACK_FROM", "+15551230009", "callback_from", "+15551230009"),
    ("IVR_VOICEMAIL_DELETE_REMOTE", "on", "voicemail_delete_remote", True),
    ("IVR_HOURS", "closed", "hours", "closed"),
    ("REDIS_SENTINELS", "s1:26379, [::1]:26380", "redis_sentinels", (("s1", 26379), ("::1", 26380))),
    ("REDIS_SENTINEL_SERVICE", "hotline", "redis_sentinel_service", "hotline"),
    ("REDIS_PASSWORD", "pw", "redis_password", "pw"),
    ("REDIS_SENTINEL_PASSWORD", "spw", "redis_sentinel_password", "spw"),
    ("REDIS_WAIT_REPLICAS", "2", "redis_wait_replicas", 2),
    ("REDIS_WAIT_MS", "20", "redis_wait_ms", 20),
]


@pytest.mark.parametrize("var,raw,field,expected", CASES)
def test_environment_variable_is_read(var, raw, field, expected):
    assert getattr(Config.from_env({var: raw}), field) == expected
    assert getattr(Config.from_env({}), field) != expected


def test_missing_token_is_generated_never_off():
    cfg = Config.from_env({})
    assert cfg.token_generated and len(cfg.twilio_auth_token) >= 32


@pytest.mark.parametrize("var,raw", [("IVR_HANDOFF_MODE", "carrier-pigeon"), ("IVR_DIAL_TIMEOUT", "soon"),
                                     ("IVR_SPEECH", "maybe"), ("IVR_HOURS", "sometimes"), ("REDIS_SENTINELS", "s1"),
                                     ("REDIS_SENTINELS", "s1:port")])
def test_bad_values_are_refused_by_name(var, raw):
    with pytest.raises(ValueError, match=var):
        Config.from_env({var: raw})


def test_twilio_credentials_prefer_an_api_key():
    sid = "AC" + "1" * 32
    assert Config.from_env({"TWILIO_AUTH_TOKEN": "tok"}).twilio_credentials is None      # no account: no REST
    assert Config.from_env({"TWILIO_AUTH_TOKEN": "tok", "TWILIO_ACCOUNT_SID": sid}).twilio_credentials == (sid, "tok")
    assert Config.from_env({"TWILIO_AUTH_TOKEN": "tok", "TWILIO_ACCOUNT_SID": sid, "TWILIO_API_KEY": "SK1",
                            "TWILIO_API_SECRET": "s"}).twilio_credentials == ("SK1", "s")


def test_sentinels_and_a_redis_url_are_not_both_taken():
    with pytest.raises(ValueError, match="REDIS_SENTINELS or REDIS_URL"):
        Config.from_env({"REDIS_SENTINELS": "s1:26379", "REDIS_URL": "redis://r:6379/0"})


def test_wait_for_a_replica_only_where_there_is_one():
    assert Config.from_env({}).wait_replicas == 0
    assert Config.from_env({"REDIS_SENTINELS": "s1:26379"}).wait_replicas == 1
    assert Config.from_env({"REDIS_SENTINELS": "s1:26379", "REDIS_WAIT_REPLICAS": "0"}).wait_replicas == 0


def test_ivr_home_holds_everything_the_server_writes(tmp_path):
    (tmp_path / "flows").mkdir()
    cfg = Config.from_env({"IVR_HOME": str(tmp_path)})
    assert cfg.flows_dir == tmp_path / "flows"
    for written in (cfg.data_dir, cfg.models_dir):
        assert written.is_relative_to(tmp_path / "var"), written
    assert cfg.audio_dir == tmp_path / "audio"


def test_home_defaults_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.from_env({})
    assert cfg.data_dir == tmp_path / "var" and cfg.audio_dir == tmp_path / "audio"


def test_a_home_without_flows_serves_the_packaged_examples(tmp_path):
    from ivr import defaults
    from ivr.flows.loader import load_flows

    cfg = Config.from_env({"IVR_HOME": str(tmp_path)})
    assert cfg.flows_dir == defaults.FLOWS and cfg.data_dir == tmp_path / "var"
    assert {"hotline", "hotline_ko"} <= set(load_flows(cfg.flows_dir))


def test_env_example_names_every_setting():
    """`ivr init` hands out ivr.env.example: every variable the configuration reads is in it,
    commented out (nothing takes effect until the deployer chooses), and no secret has a value."""
    import re

    from ivr import config, defaults

    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z_]+)"', Path(config.__file__).read_text()))
    read |= {"IVR_HOME", config.METRICS_DIR_ENV}
    text = defaults.ENV_EXAMPLE.read_text()
    assert not [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    listed = set(re.findall(r"^#([A-Z_]+)=", text, re.M))
    assert read - listed == set()
    for secret in ("TWILIO_AUTH_TOKEN", "TWILIO_API_SECRET", "IVR_SECRET_KEY", "REDIS_PASSWORD",
                   "REDIS_SENTINEL_PASSWORD", "IVR_METRICS_TOKEN"):
        assert re.search(rf"^#{secret}=$", text, re.M), secret


def test_every_line_of_the_env_example_can_be_uncommented(tmp_path):
    """Each setting's line, uncommented, is one the shell loads (`set -a; . ./ivr.env`, as the file
    says) and ivr accepts: comments are never on a setting's line, example values are in range."""
    from ivr import defaults

    settings = re.findall(r"^#([A-Z_]+=.*)$", defaults.ENV_EXAMPLE.read_text(), re.M)
    env_file = tmp_path / "ivr.env"
    env_file.write_text("\n".join(settings) + "\n")
    proc = subprocess.run(["sh", "-c", 'set -a; . "$1"; set +a; env -0', "sh", str(env_file)],
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = dict(item.split("=", 1) for item in proc.stdout.split("\0") if "=" in item)
    assert loaded["IVR_FLOWS_DIR"] == "/srv/hotline/flows"
    for name in (line.split("=", 1)[0] for line in settings):
        Config.from_env({name: loaded[name]})                     # each on its own: no ConfigError


def test_readme_gives_every_numbers_range():
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    for var, (lo, hi, _unit) in NUMBERS.items():
        row = next(r for r in rows if f"`{var}`" in r)
        assert f"{lo}-{hi}" in row, (var, row)


def test_log_settings():
    cfg = Config.from_env({})
    assert (cfg.log_level, cfg.log_format, cfg.access_log) == ("INFO", "text", True)
    cfg = Config.from_env({"IVR_LOG_LEVEL": "Warning", "IVR_LOG_FORMAT": "json", "IVR_ACCESS_LOG": "off"})
    assert (cfg.log_level, cfg.log_format, cfg.access_log) == ("WARNING", "json", False)
    for name, bad in (("IVR_LOG_LEVEL", "loud"), ("IVR_LOG_FORMAT", "xml"), ("IVR_ACCESS_LOG", "maybe")):
        with pytest.raises(ValueError, match=name):
            Config.from_env({name: bad})


def test_serve_raises_the_open_files_limit_for_its_connections():
    """Every connection is an open file: a worker allowed 1000 under a soft limit of 1024 (Debian's) failed
    in accept() first. The soft limit goes up as far as the hard one allows; above it, fewer connections."""
    import subprocess
    import sys
    script = ("import resource; from ivr.server import open_files_for as f\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (512, 2048))\n"
              "print(f(1000, 64), resource.getrlimit(resource.RLIMIT_NOFILE)[0], f(4000, 64))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1000", str(1000 + 64 + 128), str(2048 - 64 - 128)]


# -- values that cannot be used are refused, by name, before anything runs on them ---------------------

@pytest.mark.parametrize("var,raw", [
    ("IVR_RETENTION_DAYS", "0"), ("IVR_RETENTION_DAYS", "-1"),      # every call: "no record for call"
    ("IVR_GATHER_TIMEOUT", "-5"), ("IVR_GATHER_TIMEOUT", "0"),        # <Gather timeout="-5">
    ("IVR_DIAL_TIMEOUT", "0"), ("IVR_DIAL_TIMEOUT", "4"), ("IVR_DIAL_TIMEOUT", "601"),   # Twilio: 5-600
    ("IVR_RECORDING_RETENTION_DAYS", "0"), ("REDIS_WAIT_MS", "0"),    # WAIT 0 blocks for ever
    ("IVR_ANNOUNCE_EVERY", "0"), ("IVR_SESSION_HOURS", "0"), ("IVR_CLIENT_CONNECTIONS", "0"),
    ("IVR_TRUSTED_PROXIES", "-1"), ("IVR_HEADER_TIMEOUT", "0"), ("IVR_CALLBACK_MAX_ATTEMPTS", "0"),
])
def test_numbers_callers_would_suffer_from_are_refused(var, raw):
    with pytest.raises(ConfigError, match=f"^{var} .*got '{raw}'$"):
        Config.from_env({var: raw})


NUMBER_FIELDS = {"IVR_RETENTION_DAYS": ("retention_seconds", 86400),
                 "IVR_RECORDING_RETENTION_DAYS": ("recording_retention_seconds", 86400),
                 "REDIS_WAIT_REPLICAS": ("redis_wait_replicas", 1), "REDIS_WAIT_MS": ("redis_wait_ms", 1)}


@pytest.mark.parametrize("var", sorted(NUMBERS))
def test_every_number_is_kept_within_its_range(var):
    lo, hi, _unit = NUMBERS[var]
    field, scale = NUMBER_FIELDS.get(var, (var.removeprefix("IVR_").lower(), 1))
    for raw, value in ((str(lo), lo), (str(hi), hi), (f" {hi}\r", hi)):      # \r: an env file saved with CRLF
        assert getattr(Config.from_env({var: raw}), field) == value * scale
    for bad in (str(lo - 1), str(hi + 1), "abc", "1.5"):
        with pytest.raises(ConfigError) as exc:
            Config.from_env({var: bad})
        message = str(exc.value)
        assert message.startswith(f"{var} must be a whole number") and f"from {lo} to {hi}, got {bad!r}" in message
        assert "\n" not in message


def test_every_number_read_has_a_range():
    from ivr import config

    read = set(re.findall(r'_int\(env, "([A-Z_]+)"', Path(config.__file__).read_text()))
    assert read == set(NUMBERS)


def test_time_zone_is_one_zoneinfo_knows():
    assert Config.from_env({"IVR_TIMEZONE": "Europe/Berlin"}).timezone == "Europe/Berlin"
    assert Config.from_env({"IVR_TIMEZONE": ""}).timezone == ""
    for bad in ("Mars/Base", "../../etc/passwd", "/etc/localtime", "Europe/", "Europe"):
        with pytest.raises(ConfigError, match=rf"^IVR_TIMEZONE must be an IANA time zone name .*got {bad!r}$"):
            Config.from_env({"IVR_TIMEZONE": bad})


def test_choices_take_any_case_and_surrounding_blanks():
    cfg = Config.from_env({"IVR_HANDOFF_MODE": "Dial", "IVR_DIAL_OVERFLOW": " Callback\r", "IVR_HOURS": "OPEN",
                           "IVR_LOG_FORMAT": "JSON", "IVR_LOG_LEVEL": "Debug"})
    assert (cfg.handoff_mode, cfg.dial_overflow, cfg.hours, cfg.log_format, cfg.log_level) == \
        ("dial", "callback", "open", "json", "DEBUG")
    with pytest.raises(ConfigError, match=r"^IVR_HANDOFF_MODE must be one of queue, dial, got 'Dail'$"):
        Config.from_env({"IVR_HANDOFF_MODE": "Dail"})


def test_feedback_switches_read_like_every_other_switch():
    """IVR_FEEDBACK took only on/off while IVR_SPEECH also took true/false: now both take the same."""
    for raw, expected in (("off", False), ("Off", False), ("false", False), ("0", False), ("yes", True), ("ON", True)):
        cfg = Config.from_env({"IVR_FEEDBACK": raw, "IVR_FEEDBACK_AFTER_AGENT": raw})
        assert (cfg.feedback, cfg.feedback_after_agent) == (expected, expected)
    with pytest.raises(ConfigError, match="^IVR_FEEDBACK must be on or off"):
        Config.from_env({"IVR_FEEDBACK": "maybe"})


def test_sentinel_ports_are_ports():
    with pytest.raises(ConfigError, match="REDIS_SENTINELS .*got 's1:99999'"):
        Config.from_env({"REDIS_SENTINELS": "s1:99999"})


# -- the default flow is one of the flows served ----------------------------------------------------

def test_a_default_flow_that_is_not_there_stops_the_server(make_config):
    from ivr import create_app

    with pytest.raises(ConfigError) as exc:
        create_app(make_config(default_flow="hotline_kr"))
    assert str(exc.value) == (f"IVR_DEFAULT_FLOW must be the id of a flow in {ROOT / 'flows'}: one of hotline, "
                              "hotline_ko; got 'hotline_kr'")


def test_a_reload_without_the_default_flow_is_refused(tmp_path):
    from ivr.flow_versions import build
    from ivr.flows.loader import FlowError

    with pytest.raises(FlowError, match="IVR_DEFAULT_FLOW must be the id of a flow .* got 'hotline_kr'"):
        build(ROOT / "flows", tmp_path, "hotline_kr")


# -- the `ivr` command: one line, exit 2, whichever command reads the settings -------------------------

def ivr(*args, env):
    """The real `ivr` command, in its own process, in an environment of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "REDIS_", "TWILIO_", "PYTEST_"))}
    base.update(PYTHONPATH=str(ROOT), IVR_DATA_DIR=os.environ["IVR_DATA_DIR"],
                IVR_AUDIO_DIR=os.environ["IVR_AUDIO_DIR"], IVR_MODELS_DIR=os.environ["IVR_MODELS_DIR"])
    return subprocess.run([sys.executable, "-m", "ivr.cli", *args], env=dict(base, **env), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def assert_one_line(proc, command, start):
    # (An admin command first names the hotline data it uses, on a line of its own: ivr/cli/common.py.)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("ivr: hotline data: ")]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert lines[0].startswith(f"ivr {command}: {start}"), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("var,raw,allowed", [
    ("IVR_GATHER_TIMEOUT", "abc", "from 1 to 60"),
    ("IVR_RETENTION_DAYS", "0", "from 1 to 3650"),
    ("IVR_DIAL_TIMEOUT", "0", "from 5 to 600"),
    ("IVR_TIMEZONE", "Mars/Base", "IANA time zone name"),
    ("IVR_HANDOFF_MODE", "carrier-pigeon", "one of queue, dial"),
])
def test_serve_refuses_a_bad_setting_in_one_line(var, raw, allowed):
    proc = ivr("serve", "--host", "127.0.0.1", "--port", "5599", env={var: raw})
    assert_one_line(proc, "serve", f"{var} must be")
    assert repr(raw) in proc.stderr and allowed in proc.stderr and "Traceback" not in proc.stderr


# Every command that reads the settings, with what it needs to get that far; `ivr init` reads none.
COMMANDS = {
    "check-flows": [], "serve": ["--port", "5599"], "simulate": ["--press", "1"], "unanswered": [],
    "eval": ["--limit", "1"], "render-audio": [], "reload": ["--wait", "0"], "backup": ["never-written.rdb"],
    "restore": ["README.md"], "operators add": ["--password-stdin", "sam"], "operators list": [],
    "operators remove": ["sam"], "agents add": ["sam", "+15551230000"], "agents list": [],
    "agents remove": ["sam"], "agents unlock": ["sam"], "models list": [], "models download": ["en"],
    "models path": ["en"],
}


def test_every_command_is_listed():
    import click

    from ivr.cli import main

    def leaves(group, prefix=""):
        for name, cmd in group.commands.items():
            yield from leaves(cmd, f"{prefix}{name} ") if isinstance(cmd, click.Group) else [f"{prefix}{name}"]
    assert set(leaves(main)) - {"init"} == set(COMMANDS)


@pytest.mark.slow       # 19 `ivr` processes
def test_every_command_refuses_a_bad_setting_in_one_line(tmp_path):
    """All at once (each is a Python process starting): every one stops at the setting, nothing done."""
    env = {"IVR_GATHER_TIMEOUT": "abc"}
    (tmp_path / "README.md").write_text("not a backup")
    procs = {name: subprocess.Popen([sys.executable, "-m", "ivr.cli", *name.split(), *args], cwd=tmp_path,
                                    env=dict(os.environ, **env, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in COMMANDS.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert_one_line(done, name.split()[0], "IVR_GATHER_TIMEOUT must be a whole number of seconds from 1 to 60, "
                                               "got 'abc'")
    assert not (tmp_path / "never-written.rdb").exists()


@pytest.mark.slow       # four `ivr` processes that load the flows
def test_a_flow_name_that_is_not_there_is_refused_by_name():
    known = "one of hotline, hotline_ko"
    proc = ivr("simulate", "--press", "9", env={"IVR_DEFAULT_FLOW": "hotline_kr"})
    assert_one_line(proc, "simulate", "IVR_DEFAULT_FLOW must be the id of a flow in ")
    assert known in proc.stderr and "'hotline_kr'" in proc.stderr
    proc = ivr("unanswered", "--flow", "nope", env={})
    assert_one_line(proc, "unanswered", "--flow must be the id of a flow in ")
    assert known in proc.stderr and "'nope'" in proc.stderr
    proc = ivr("unanswered", "--lang", "kr", env={})                     # the English flow speaks en
    assert_one_line(proc, "unanswered", "--lang must be a language of flow hotline: one of en; got 'kr'")
    proc = ivr("check-flows", env={"IVR_DEFAULT_FLOW": "hotline_kr"})
    assert proc.returncode == 1 and "IVR_DEFAULT_FLOW must be the id of a flow" in proc.stderr
    assert "hotline_kr" in proc.stderr and "1 problem(s) found" in proc.stderr
    assert ivr("check-flows", env={"IVR_DEFAULT_FLOW": "hotline_ko"}).returncode == 0
