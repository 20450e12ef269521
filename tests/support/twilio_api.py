"""A local stand-in for Twilio's REST API and recording media, speaking Twilio's documented wire format.

ivr talks to it exactly as to api.twilio.com: the real `twilio.rest.Client` (TWILIO_API_URL points
at this server) and the real recording downloader. It checks HTTP basic auth (AccountSid with the
auth token, or an API key SID with its secret) and the account in the path, and answers:

- POST /2010-04-01/Accounts/{AccountSid}/Calls.json (To, From, Url or Twiml, StatusCallback,
  StatusCallbackEvent...): 201 with the Call resource's JSON (sid "CA…", status "queued", …);
- GET  /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.wav|.mp3: the recording
  (404 first while "processing", as Twilio does for a few seconds);
- DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json: 204.

Errors are Twilio's JSON error bodies ({"code", "message", "more_info", "status"}). Every
request is kept (method, path, Authorization header, form) for the tests to inspect.
`Bystander` is any other web server: it only records whether anything reached it.
"""
from __future__ import annotations

import base64
import http.server
import json
import re
import secrets
import threading
from email.utils import formatdate
from urllib.parse import parse_qs

ACCOUNT_SID = "AC" + "a1" * 16
CALLS = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls\.json$")
RECORDING = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Recordings/(RE[0-9a-f]{32})\.(wav|mp3|json)$")


class _Server:
    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.requests = []
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TwilioStandIn(_Server):
    def __init__(self, auth_token: str, account_sid: str = ACCOUNT_SID, api_key: str | None = None,
                 api_secret: str | None = None):
        self.account_sid = account_sid
        self.accepted = {_basic(account_sid, auth_token)}
        if api_key and api_secret:
            self.accepted.add(_basic(api_key, api_secret))
        self.calls = []              # form parameters of every call created (lists for repeated keys)
        self.recordings = {}         # RecordingSid -> bytes
        self.processing = set()      # RecordingSids answering 404 once more
        self.deleted = []
        self.redirects = {}          # RecordingSid -> Location: the media is served elsewhere (a CDN)
        self.fail_calls_with = None  # (status, code, message): the next call creations fail like this
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", content_type="application/json"):
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status, code, message):
                body = json.dumps({"code": code, "message": message, "status": status,
                                   "more_info": f"https://www.twilio.com/docs/errors/{code}"}).encode()
                self._send(status, body)

            def _authorized(self, account):
                if self.headers.get("Authorization") not in outer.accepted or account != outer.account_sid:
                    self._error(401, 20003, "Authenticate")
                    return False
                return True

            def _record(self, form=None):
                outer.requests.append({"method": self.command, "path": self.path,
                                       "auth": self.headers.get("Authorization"), "form": form})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                self._record(form)
                m = CALLS.match(self.path)
                if not m:
                    return self._error(404, 20404, "The requested resource was not found")
                if not self._authorized(m.group(1)):
                    return None
                if outer.fail_calls_with:
                    return self._error(*outer.fail_calls_with)
                if not form.get("To") or not form.get("From"):
                    return self._error(400, 21201, "No 'To' number is specified" if not form.get("To")
                                       else "No 'From' number is specified")
                if not (form.get("Url") or form.get("Twiml") or form.get("ApplicationSid")):
                    return self._error(400, 21205, "Url parameter is required")
                sid = "CA" + secrets.token_hex(16)
                outer.calls.append(dict(form, _sid=[sid]))
                return self._send(201, json.dumps(_call_resource(outer.account_sid, sid, form)).encode())

            def do_GET(self):
                self._record()
                m = RECORDING.match(self.path)
                if not m or m.group(3) == "json":
                    return self._error(404, 20404, "The requested resource was not found")
                if not self._authorized(m.group(1)):
                    return None
                rec = m.group(2)
                if rec in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[rec])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if rec in outer.processing or rec not in outer.recordings:
                    outer.processing.discard(rec)
                    return self._error(404, 20404, "The requested resource was not found")
                kind = "audio/x-wav" if m.group(3) == "wav" else "audio/mpeg"
                return self._send(200, outer.recordings[rec], kind)

            def do_DELETE(self):
                self._record()
                m = RECORDING.match(self.path)
                if not m or m.group(3) != "json":
                    return self._error(404, 20404, "The requested resource was not found")
                if not self._authorized(m.group(1)):
                    return None
                outer.recordings.pop(m.group(2), None)
                outer.deleted.append(m.group(2))
                return self._send(204)

        super().__init__(Handler)

    def add_recording(self, data: bytes, processing: bool = True) -> str:
        """Store a recording; returns its RecordingUrl (no extension, as Twilio posts it)."""
        rec = "RE" + secrets.token_hex(16)
        self.recordings[rec] = data
        if processing:
            self.processing.add(rec)
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Recordings/{rec}"

    def last_call(self) -> dict:
        """The last call created, single values (StatusCallbackEvent stays a list)."""
        form = self.calls[-1]
        return {k: (v if k == "StatusCallbackEvent" else v[0]) for k, v in form.items()}


class Bystander(_Server):
    """Any other web server: it answers 200 and records every request that reaches it."""

    def __init__(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                outer.requests.append({"method": self.command, "path": self.path,
                                       "auth": self.headers.get("Authorization")})
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"RIFF")

            do_GET = do_POST = do_DELETE = _any

        super().__init__(Handler)


def _basic(user, password) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _call_resource(account, sid, form) -> dict:
    """The Call resource as Twilio documents it for a call just created."""
    now = formatdate(usegmt=True)
    uri = f"/2010-04-01/Accounts/{account}/Calls/{sid}.json"
    return {
        "account_sid": account, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
        "caller_name": None, "date_created": now, "date_updated": now, "direction": "outbound-api",
        "duration": None, "end_time": None, "forwarded_from": None, "from": form["From"][0],
        "from_formatted": form["From"][0], "group_sid": None, "parent_call_sid": None, "phone_number_sid": None,
        "price": None, "price_unit": "USD", "sid": sid, "start_time": None, "status": "queued",
        "subresource_uris": {"notifications": uri.replace(".json", "/Notifications.json"),
                             "recordings": uri.replace(".json", "/Recordings.json")},
        "queue_time": "0", "to": form["To"][0], "to_formatted": form["To"][0], "trunk_sid": None, "uri": uri,
    }
