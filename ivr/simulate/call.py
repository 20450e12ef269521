"""Drive one call through a server's real endpoints and report what happened.

Keypad calls follow TwiML over HTTP; a <Connect><Stream> is played as Twilio
would over the WebSocket (stream_client), with real synthesized speech.

The report's shape is a stable contract for evaluation tools:
{"call_sid", "lang", "asr", "outcome", "queue", "intents", "transfers", "turns", "wait_seconds"};
each turn {"caller", "heard", "bot", "why"} (why: the engine's reason for that caller turn, or None).
"""
from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from .twilio_client import TwilioClient, parse_twiml

MAX_STEPS = 60
# The number the simulated agent calls the agent line from; register it (`ivr agents add sim
# +15005550777`) on a server whose agent line should let the simulator's agent take callers.
AGENT_NUMBER = "+15005550777"


class SimulationError(RuntimeError):
    """The call could not go on; `status` is the HTTP status that stopped it, when one did."""

    def __init__(self, message, status: int | None = None):
        super().__init__(message)
        self.status = status


class CallSimulator:
    def __init__(self, client: TwilioClient, *, from_number="+15005550123", to_number="+15005550100",
                 agent="answer", agent_seconds=42, queue_wait=35, queue_choice=None, voice_path="/voice",
                 stream_options=None, agent_number=AGENT_NUMBER):
        self.client = client
        # Media-stream calls (ivr.simulate.stream_client): options for the StreamCaller, its result.
        self.stream_options = stream_options or {}
        self.stream_result = None
        self.said_as_text = False           # a --say was posted as SpeechResult (no recognizer involved)
        self.from_number = from_number
        self.to_number = to_number
        # What people do once the call is handed off: an agent answers (after queue_wait
        # seconds in a queue), the human line is busy / does not answer, or the caller
        # in the queue, offered a callback, presses 1 (callback) or 2 (voicemail).
        self.agent = agent                  # answer | busy | no-answer
        self.agent_seconds = agent_seconds
        self.queue_wait = queue_wait
        self.queue_choice = queue_choice    # None (hang up when nobody answers) | callback | voicemail
        self.voice_path = voice_path
        self.agent_number = agent_number
        self.agent_heard = []
        self.agent_refused = False

    def run(self, inputs, lang=None) -> dict:
        """inputs: list of ("press", digits), ("say", text) or ("wait", seconds), in the caller's order."""
        sid = "CA" + secrets.token_hex(16)
        base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": self.from_number, "To": self.to_number,
                "Direction": "inbound", "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
        pending = list(inputs)
        transcript = []          # [{"caller", "bot"}]
        bot_text = []
        caller_label = None
        to_engine = False        # the caller's last input went to the flow engine (not a queue's offer)
        url = self.voice_path + (f"?lang={lang}" if lang else "")
        params = dict(base)
        ended = False
        for _ in range(MAX_STEPS):
            status, body = self.client.post(url, params)
            if status != 200:
                raise SimulationError(f"POST {url} answered {status}: {body[:200]}", status=status)
            root = parse_twiml(body)
            url, params = None, None
            for verb in root:
                if verb.tag == "Say":
                    bot_text.append(verb.text or "")
                elif verb.tag == "Gather":
                    bot_text += [s.text or "" for s in verb if s.tag == "Say"]
                    transcript.append({"caller": caller_label, "bot": " ".join(bot_text), "engine": to_engine})
                    bot_text, caller_label = [], None      # said: not said again when the call ends here
                    if not pending:
                        ended = True
                        break
                    kind, value = pending.pop(0)
                    while kind == "wait" and pending:      # the caller thinks before answering
                        time.sleep(float(value))
                        kind, value = pending.pop(0)
                    if kind == "wait":
                        ended = True
                        break
                    if kind == "audio":
                        raise SimulationError("--audio needs speech recognition, but this call uses the keypad "
                                              "(no speech model for its language; see `ivr models list`)")
                    to_engine = urlsplit(verb.get("action") or "").path.endswith("/voice/gather")
                    if value == "":
                        # Silence: the Gather times out. As on Twilio, only actionOnEmptyResult="true" posts
                        # to its action (with no input); otherwise the call goes on with the verbs after
                        # the Gather (a <Redirect>, a goodbye), and ends when there are none.
                        caller_label = "(silence)"
                        if (verb.get("actionOnEmptyResult") or "").lower() != "true":
                            continue
                        url, params = verb.get("action"), dict(base)
                        break
                    self.said_as_text = self.said_as_text or kind == "say"
                    caller_label = f"press {value}" if kind == "press" else value
                    params = dict(base, **({"Digits": value} if kind == "press" else
                                           {"SpeechResult": value, "Confidence": "0.9"}))
                    url = verb.get("action")
                    break
                elif verb.tag == "Connect":
                    # Media stream: the caller talks to the bot over a WebSocket until it ends. What they
                    # had not said when the server ended it goes on to the TwiML the <Connect action>
                    # returns, as on Twilio (the rating after the bot's goodbye, the out-of-hours offer).
                    transcript += self._stream(verb, sid, pending)
                    pending, bot_text, caller_label = list(self.stream_result.rest), [], None
                    to_engine = False
                    if self.stream_result.hung_up:
                        ended = True
                        break
                    url, params = verb.get("action"), dict(base)
                    break
                elif verb.tag == "Redirect":
                    url, params = verb.text, dict(base)
                    break
                elif verb.tag == "Dial":
                    transcript.append({"caller": caller_label, "bot": " ".join(bot_text), "engine": to_engine})
                    caller_label, bot_text = None, []
                    url, params = self._dial(verb, base)
                    break
                elif verb.tag == "Enqueue":
                    transcript.append({"caller": caller_label, "bot": " ".join(bot_text), "engine": to_engine})
                    caller_label, bot_text = None, []
                    url, params, hold = self._queue(verb, base)
                    if hold:
                        transcript.append({"caller": "(waits in the queue)", "bot": " ".join(hold), "engine": False})
                    break
                elif verb.tag == "Record":
                    transcript.append({"caller": caller_label, "bot": " ".join(bot_text), "engine": to_engine})
                    caller_label, bot_text, to_engine = "(records a message)", [], False
                    url = verb.get("action")
                    params = dict(base, RecordingUrl="https://api.twilio.com/fake/RE0", RecordingDuration="9")
                    break
                elif verb.tag == "Hangup":
                    ended = True
                    break
            if url is None:
                ended = True
            if ended:
                break
        if bot_text or caller_label:
            transcript.append({"caller": caller_label, "bot": " ".join(bot_text), "engine": to_engine})
        self.client.post("/voice/status", dict(base, CallStatus="completed", CallDuration="60"))
        return self.report(sid, transcript, lang)

    def _dial(self, verb, base):
        number = next((n for n in verb if n.tag == "Number"), None)
        if self.agent == "answer":
            if number is not None and number.get("url"):
                self.client.post(number.get("url"), dict(base, CallSid="CA" + secrets.token_hex(16),
                                                          ParentCallSid=base["CallSid"]))
            extra = {"DialCallStatus": "completed", "DialCallDuration": str(self.agent_seconds)}
        else:
            extra = {"DialCallStatus": self.agent, "DialCallDuration": "0"}
        return verb.get("action"), dict(base, **extra)

    def _queue(self, verb, base):
        """Play Twilio's part while the caller waits: the waitUrl, an agent dialling in, the result."""
        wait_url, action = verb.get("waitUrl"), verb.get("action")
        heard = []
        _, body = self.client.post(wait_url, dict(base, QueuePosition="1", QueueTime="0", AvgQueueTime="0",
                                                  CurrentQueueSize="1", QueueSid="QU" + "0" * 32))
        heard += [v.text or "" for v in parse_twiml(body) if v.tag == "Say"]
        if self.agent == "answer":
            agent_sid = "CA" + secrets.token_hex(16)
            _, body = self.client.post("/voice/agent", {"CallSid": agent_sid, "From": self.agent_number,
                                                        "To": "+15005550001"})
            root = parse_twiml(body)
            self.agent_heard += [v.text or "" for v in root if v.tag == "Say"]
            queue = next((q for d in root if d.tag == "Dial" for q in d if q.tag == "Queue"), None)
            if queue is not None and queue.get("url"):
                _, body = self.client.post(queue.get("url"), dict(base, QueueTime=str(self.queue_wait),
                                                                  DequeingCallSid=agent_sid))
                heard += [v.text or "" for v in parse_twiml(body) if v.tag == "Say"]
                return action, dict(base, QueueResult="bridged", QueueTime=str(self.queue_wait)), heard
            # The agent line turned the simulated agent away (its number is not a registered agent's,
            # see AGENT_NUMBER): nobody takes the caller, who waits on as below.
            self.agent_refused = True
        # Nobody answers: the caller waits long enough to be offered a callback.
        _, body = self.client.post(wait_url, dict(base, QueuePosition="1", QueueTime=str(self.queue_wait),
                                                  AvgQueueTime="0", CurrentQueueSize="1"))
        root = parse_twiml(body)
        offer = next((g for g in root if g.tag == "Gather"), None)
        heard += [t.text or "" for v in root for t in ([v] if v.tag == "Say" else list(v)) if t.tag == "Say"]
        if offer is not None and self.queue_choice in ("callback", "voicemail"):
            digit = "1" if self.queue_choice == "callback" else "2"
            _, body = self.client.post(offer.get("action"), dict(base, Digits=digit))
            if any(v.tag == "Leave" for v in parse_twiml(body)):
                return action, dict(base, QueueResult="leave", QueueTime=str(self.queue_wait)), heard
        return action, dict(base, QueueResult="hangup", QueueTime=str(self.queue_wait)), heard

    def _stream(self, verb, sid, inputs) -> list:
        """Run the stream with the remaining inputs (those it ended before are stream_result.rest);
        transcript entries from the call record."""
        from .stream_client import StreamCaller

        stream = next((v for v in verb if v.tag == "Stream"), None)
        if stream is None:
            raise SimulationError("<Connect> without <Stream>")
        custom = {p.get("name"): p.get("value") for p in stream if p.tag == "Parameter"}
        caller = StreamCaller(self.client.validator_token, lang=custom.get("lang", "ko"), **self.stream_options)
        self.stream_result = result = caller.run(stream.get("url"), custom, sid, inputs)
        # A socket that dropped (reset, the server gone) is a stream that ended: Twilio then calls the
        # <Connect action>, as for any other end, and the call goes on there (a person, on any server).
        status, data = self.client.get_json(f"/api/calls/{sid}")
        labels = list(result.labels)
        entries = []
        for t in (data or {}).get("turns", []):
            if t.get("who") == "caller":
                silent = t.get("input") == "silence"
                entries.append({"caller": "(silence)" if silent else labels.pop(0) if labels else "(spoke)", "bot": "",
                                "engine": True})
            elif t.get("who") == "bot":
                if not entries or entries[-1]["bot"]:
                    entries.append({"caller": None, "bot": ""})
                entries[-1]["bot"] = t.get("text", "")
        # A goodbye the stream held back for the rating question (ivr.speech.dialogue.rating_follows)
        # was not heard here: it follows the question, in the <Connect action>'s answer.
        held = ((data or {}).get("record") or {}).get("goodbye")
        if held and entries and entries[-1]["bot"].endswith(held):
            entries[-1]["bot"] = entries[-1]["bot"][:-len(held)].rstrip()
        return entries

    def report(self, sid, transcript, lang) -> dict:
        status, data = self.client.get_json(f"/api/calls/{sid}")
        if status != 200:
            raise SimulationError(f"call report for {sid} answered {status}", status=status)
        record, turns = data["record"], data["turns"]
        heard = [t for t in turns if t.get("who") == "caller"]
        engine_turns = iter(heard)
        out_turns = []
        for t in transcript:
            # What the engine heard belongs to the inputs it was given, in order; a key pressed at a
            # queue's offer or a recorded message was never an engine turn.
            entry = next(engine_turns, {}) if t["caller"] and t.get("engine") else {}
            out_turns.append({"caller": t["caller"], "heard": entry.get("text"), "bot": t["bot"],
                              "why": entry.get("detail") or None})
        wait = record.get("wait_seconds")
        return {
            "call_sid": sid,
            "lang": record.get("lang") or lang,
            "asr": "vosk" if self.stream_result is not None else "text" if self.said_as_text
                   else record.get("asr", "dtmf"),
            "outcome": record.get("outcome") or "hangup",
            "queue": record.get("queue") or None,
            "intents": [t.get("intent") for t in heard],
            "transfers": int(record.get("transfers") or 0),
            "wait_seconds": float(wait) if wait not in (None, "") else None,
            "reason": record.get("reason") or None,
            "status": record.get("status"),
            "agent_heard": " ".join(self.agent_heard) or None,
            "agent_refused": self.agent_refused,
            "turns": out_turns,
            "stream_error": self.stream_result.error if self.stream_result is not None else None,
        }
