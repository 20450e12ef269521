"""The long-lived objects one server process shares between requests, and the one way to reach them.

`create_app` builds a Services and keeps it in `app.extensions["ivr"]`; code that
runs in a request asks `services()`. Everything is built here, in one place and
order, so no module depends on another having registered something first.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from flask import current_app

from .agents import Agents
from .callbacks import Dialer
from .calls import CallStore
from .config import Config
from .flow_versions import FlowVersions
from .keyring import Keyring
from .metrics import ScrapeCache
from .queues import Queues
from .recordings import Recordings
from .slots import ThreadShares
from .speech.services import SpeechServices
from .speech.transcribe import RecordingWorker
from .twilio_api import TwilioApi
from .twiml import TwimlRenderer


@dataclass
class Services:
    config: Config
    redis: object
    initial_flows: dict       # what the process starts with; reloads replace them (ivr.flow_versions)
    clock: object = time.time
    keyring: Keyring = field(init=False)       # the server secret and the keys derived from it
    store: CallStore = field(init=False)
    queues: Queues = field(init=False)
    initial_engines: dict | None = None    # flow id -> Engine; None: built from the flows (see create_app)
    library: FlowVersions = field(init=False)   # the flow versions served; `flows`/`engines`: the current
    twiml: TwimlRenderer = field(init=False)
    speech: SpeechServices = field(init=False)
    # Recordings (comments, voicemail): fetched from Twilio only, stored, transcribed; one background thread.
    transcriber: RecordingWorker = field(init=False)
    metrics_cache: ScrapeCache = field(init=False)        # /metrics answers, reused for a moment
    agents: Agents = field(init=False)
    twilio_api: TwilioApi = field(init=False)
    callbacks: Dialer = field(init=False)
    # What long requests (media sockets before `start`, dashboards' live views) may hold of the process's
    # threads; `ivr serve` sets it from --threads (ivr/server.py), 64 elsewhere.
    shares: ThreadShares = field(default_factory=lambda: ThreadShares.of(64))

    def __post_init__(self):
        cfg = self.config
        self.keyring = Keyring(self.redis, cfg.secret_key)
        self.metrics_cache = ScrapeCache(cfg.metrics_cache_seconds)
        self.store = CallStore(self.redis, cfg.retention_seconds, clock=self.clock, keyring=self.keyring,
                               wait_replicas=cfg.wait_replicas, wait_ms=cfg.redis_wait_ms)
        self.queues = Queues(self.redis, cfg.retention_seconds, cfg.announce_every)
        self.twiml = TwimlRenderer(cfg)
        self.speech = SpeechServices(cfg)
        # Trained intent classifiers are kept under the data folder, by what they learned from:
        # a restart (or another worker loading the flows itself) reads them instead of training.
        self.library = FlowVersions(self.redis, cfg.flows_dir, cfg.data_dir / "classifiers", self.initial_flows,
                                    self.initial_engines, clock=self.clock, on_loaded=self._flows_loaded,
                                    default_flow=cfg.default_flow)
        self.initial_flows = self.initial_engines = None    # the library holds them (and drops them)
        self.transcriber = RecordingWorker(self.store, self.speech.models, Recordings.from_config(cfg),
                                           data_dir=cfg.data_dir, retention_seconds=cfg.recording_retention_seconds,
                                           delete_remote=cfg.voicemail_delete_remote)
        self.agents = Agents(self.redis, clock=self.clock, pin_max_failures=cfg.agent_pin_max_failures,
                             pin_lock_seconds=cfg.agent_pin_lock_seconds)
        self.twilio_api = TwilioApi(cfg)
        self.callbacks = Dialer(self.store, self.twilio_api, self.twiml, cfg)

    @property
    def flows(self) -> dict:
        """flow id -> Flow that new calls get now."""
        return self.library.current.flows

    @property
    def engines(self) -> dict:
        return self.library.current.engines

    def _flows_loaded(self, version) -> None:
        """A reloaded version's spoken prompts rendered before its first call (off the request path)."""
        if self.config.speech:
            self.speech.warm_up(version.flows.values(), log_to=logging.getLogger("ivr.flows"))

    def closed(self, flow, now: float | None = None) -> bool:
        """Outside `flow`'s opening hours now (IVR_HOURS=open / closed overrides the flows)."""
        mode = self.config.hours
        if mode != "flow":
            return mode == "closed"
        return not flow.is_open(self.clock() if now is None else now)

    @property
    def default(self):
        """The default flow and its first language: for answers given before a call is known.
        create_app and every reload refuse flows without it (config.default_flow_problem)."""
        flow = self.flows[self.config.default_flow]
        return flow, flow.languages[0]

    def pick_flow(self, requested: str | None, to_number: str | None):
        """Flow for a new call: ?flow= on the webhook URL, else the dialled number, else the default."""
        if requested and requested in self.flows:
            return self.flows[requested]
        for flow in self.flows.values():
            if to_number and to_number in flow.numbers:
                return flow
        return self.default[0]

    def flow_for_record(self, record: dict) -> tuple:
        """(flow, language) of a call from its record, in the version it runs on; the default flow
        if the record is gone."""
        flow = self.library.get(record.get("flow_version")).flows.get(record.get("flow")) \
            or self.flows.get(record.get("flow")) or self.default[0]
        lang = record.get("lang")
        return flow, lang if lang in flow.languages else flow.languages[0]

    def agent_flow(self, to_number: str | None = None) -> tuple:
        """(flow, language) whose words agents hear: the flow of the agent line's number, else the default."""
        flow = self.pick_flow(None, to_number)
        return flow, flow.languages[0]

    def flow_for_lang(self, lang: str):
        """The default flow if it speaks `lang`, else the first flow that does."""
        default = self.flows.get(self.config.default_flow)
        if default and lang in default.languages:
            return default
        return next((f for f in self.flows.values() if lang in f.languages), None)


def services() -> Services:
    """The Services of the app handling the current request."""
    return current_app.extensions["ivr"]
