"""Every documented environment variable reaches the configuration."""
from pathlib import Path

import pytest

from ivr.config import Config

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
