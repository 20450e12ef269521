"""The Twilio side of a call: signed HTTP requests and TwiML parsing."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from twilio.request_validator import RequestValidator


class TwilioClient:
    """Signs every request with the auth token, as Twilio does."""

    def __init__(self, base_url: str, auth_token: str, timeout: float = 15.0, public_url: str | None = None):
        """base_url is where requests go; public_url (default: the same) is the URL
        Twilio knows and signs, e.g. a load balancer in front of several servers."""
        self.base_url = base_url.rstrip("/")
        self.public_url = (public_url or base_url).rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.validator_token = auth_token   # the media stream signs its own handshake
        self.timeout = timeout

    def absolute(self, url: str) -> str:
        """The signed (public) form of a path or of a URL taken from TwiML."""
        return url if "://" in url else self.public_url + url

    def _target(self, url: str) -> str:
        return self.base_url + url[len(self.public_url):] if url.startswith(self.public_url) else url

    def post(self, url: str, params: dict, signature: str | None = None) -> tuple:
        url = self.absolute(url)
        sig = self.validator.compute_signature(url, params) if signature is None else signature
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self._target(url), data=body, method="POST", headers={
            "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})
        return self._send(req)

    def get_json(self, url: str):
        url = self.absolute(url)
        req = urllib.request.Request(self._target(url),
                                     headers={"X-Twilio-Signature": self.validator.compute_signature(url, {})})
        status, body = self._send(req)
        return status, (json.loads(body) if body and status == 200 else None)

    def _send(self, req) -> tuple:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def parse_twiml(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, expected <Response>")
    return root
