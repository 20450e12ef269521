"""The long-lived objects one server process shares between requests."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .calls import CallStore
from .config import Config
from .flows.engine import Engine
from .twiml import TwimlRenderer


@dataclass
class Services:
    config: Config
    redis: object
    flows: dict
    clock: object = time.time
    store: CallStore = field(init=False)
    engines: dict = field(init=False)
    twiml: TwimlRenderer = field(init=False)
    # Optional workers other modules plug in (e.g. the comment transcriber once speech is loaded).
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.store = CallStore(self.redis, self.config.retention_seconds, clock=self.clock)
        self.engines = {fid: Engine(flow) for fid, flow in self.flows.items()}
        self.twiml = TwimlRenderer(self.config)

    def pick_flow(self, requested: str | None, to_number: str | None):
        """Flow for a new call: ?flow= on the webhook URL, else the dialled number, else the default."""
        if requested and requested in self.flows:
            return self.flows[requested]
        for flow in self.flows.values():
            if to_number and to_number in flow.numbers:
                return flow
        return self.flows.get(self.config.default_flow) or next(iter(self.flows.values()))

    def flow_for_record(self, record: dict) -> tuple:
        """(flow, language) of a call from its record; the default flow if the record is gone."""
        flow = self.flows.get(record.get("flow")) or self.pick_flow(None, None)
        lang = record.get("lang")
        return flow, lang if lang in flow.languages else flow.languages[0]

    def flow_for_lang(self, lang: str):
        """The default flow if it speaks `lang`, else the first flow that does."""
        default = self.flows.get(self.config.default_flow)
        if default and lang in default.languages:
            return default
        return next((f for f in self.flows.values() if lang in f.languages), None)
