"""The long-lived objects one server process shares between requests, and the one way to reach them.

`create_app` builds a Services and keeps it in `app.extensions["ivr"]`; code that
runs in a request asks `services()`. Everything is built here, in one place and
order, so no module depends on another having registered something first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from .calls import CallStore
from .config import Config
from .flows.engine import Engine
from .keyring import Keyring
from .metrics import ScrapeCache
from .queues import Queues
from .speech.services import SpeechServices
from .speech.transcribe import CommentTranscriber
from .twiml import TwimlRenderer


@dataclass
class Services:
    config: Config
    redis: object
    flows: dict
    clock: object = time.time
    keyring: Keyring = field(init=False)       # the server secret and the keys derived from it
    store: CallStore = field(init=False)
    queues: Queues = field(init=False)
    engines: dict = field(init=False)
    twiml: TwimlRenderer = field(init=False)
    speech: SpeechServices = field(init=False)
    transcriber: CommentTranscriber = field(init=False)   # spoken comments -> text, one background thread
    metrics_cache: ScrapeCache = field(init=False)        # /metrics answers, reused for a moment

    def __post_init__(self):
        self.keyring = Keyring(self.redis, self.config.secret_key)
        self.metrics_cache = ScrapeCache(self.config.metrics_cache_seconds)
        self.store = CallStore(self.redis, self.config.retention_seconds, clock=self.clock, keyring=self.keyring,
                               wait_replicas=self.config.wait_replicas, wait_ms=self.config.redis_wait_ms)
        self.queues = Queues(self.redis, self.config.retention_seconds, self.config.announce_every)
        self.engines = {fid: Engine(flow) for fid, flow in self.flows.items()}
        self.twiml = TwimlRenderer(self.config)
        self.speech = SpeechServices(self.config)
        self.transcriber = CommentTranscriber(self.store, self.speech.models, self.config.twilio_account_sid,
                                              self.config.twilio_auth_token, origins=self.config.recording_origins)

    @property
    def default(self):
        """The default flow and its first language: for answers given before a call is known."""
        flow = self.flows.get(self.config.default_flow) or next(iter(self.flows.values()))
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
        """(flow, language) of a call from its record; the default flow if the record is gone."""
        flow = self.flows.get(record.get("flow")) or self.default[0]
        lang = record.get("lang")
        return flow, lang if lang in flow.languages else flow.languages[0]

    def flow_for_lang(self, lang: str):
        """The default flow if it speaks `lang`, else the first flow that does."""
        default = self.flows.get(self.config.default_flow)
        if default and lang in default.languages:
            return default
        return next((f for f in self.flows.values() if lang in f.languages), None)


def services() -> Services:
    """The Services of the app handling the current request."""
    return current_app.extensions["ivr"]
