"""Twilio's REST API, for the one thing ivr asks of it: placing a call (a call back).

Everything else Twilio does for ivr comes in as signed webhooks. The official helper's
`twilio.rest.Client` is used as is, authenticated with the account SID and auth token or,
better, an API key and its secret (TWILIO_API_KEY / TWILIO_API_SECRET), and pointed at
TWILIO_API_URL (https://api.twilio.com unless told otherwise, e.g. a local stand-in speaking
Twilio's wire format in the tests). The call's progress comes back to a status callback URL
(signed like every webhook); the TwiML it runs when answered is ivr.web.callback's.
"""
from __future__ import annotations

import threading

# Twilio's own events for a call's progress; the final one (completed, busy, no-answer, failed,
# canceled) is the attempt's result.
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
RING_SECONDS = 30     # how long the caller's phone rings before Twilio reports no-answer


class TwilioApi:
    def __init__(self, config, timeout: float = 8.0):
        self.config = config
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.config.twilio_credentials is not None

    def client(self):
        with self._lock:
            if self._client is None:
                from twilio.http.http_client import TwilioHttpClient
                from twilio.rest import Client

                user, password = self.config.twilio_credentials
                # The helper would read TWILIO_EDGE / TWILIO_REGION from os.environ; ivr.config is the
                # only reader of the environment, so it gets an explicit (empty) one.
                client = Client(user, password, account_sid=self.config.twilio_account_sid,
                                http_client=TwilioHttpClient(timeout=self.timeout),
                                environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""})
                client.api.base_url = self.config.twilio_api_url
                self._client = client
            return self._client

    def place_call(self, *, to: str, from_: str, url: str, status_callback: str) -> str:
        """Start an outbound call; Twilio fetches `url` when it is answered. Returns its CallSid."""
        call = self.client().calls.create(
            to=to, from_=from_, url=url, method="POST", status_callback=status_callback,
            status_callback_method="POST", status_callback_event=STATUS_EVENTS, timeout=RING_SECONDS)
        return call.sid
