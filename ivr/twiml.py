"""Turn engine replies into TwiML for the keypad (<Gather input="dtmf">) path.

Only protocol here: what to say and what to do next comes from the engine.
"""
from __future__ import annotations

from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse


class TwimlRenderer:
    def __init__(self, config):
        self.cfg = config

    def url(self, path, **params) -> str:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return self.cfg.url(path) + ("?" + query if query else "")

    def reply(self, reply, *, sid, turn, locale, offer=None) -> str:
        """TwiML for one engine reply; `turn` numbers the next caller input. `offer` is what to
        offer instead of a person out of hours (ivr.web.callback.closed_offer)."""
        resp = VoiceResponse()
        if reply.expect is not None:
            action = self.url("/voice/gather", turn=turn)
            if reply.expect.digits:
                gather = resp.gather(input="dtmf", action=action, method="POST", timeout=self.cfg.gather_timeout,
                                     finish_on_key="#", action_on_empty_result=False)
            else:
                gather = resp.gather(input="dtmf", action=action, method="POST", timeout=self.cfg.gather_timeout,
                                     num_digits=1)
            for text in reply.prompts:
                gather.say(text, language=locale)
            # Reached only when the caller stayed silent: the same turn, with no digits.
            resp.redirect(action, method="POST")
        elif reply.route is not None and reply.route.after_hours and offer is not None:
            self._say(resp, reply.prompts, locale)
            self.closed_offer(resp, offer, sid=sid, turn=turn, locale=locale)
        elif reply.route is not None:
            self._say(resp, reply.prompts, locale)
            self.handoff(resp, sid=sid, turn=turn, queue=reply.route.queue)
        else:
            self._say(resp, reply.prompts, locale)
            resp.hangup()
        return str(resp)

    def handoff(self, resp, *, sid, turn, queue):
        """To a person, the configured way: a priority queue, or the human line directly."""
        if self.cfg.handoff_mode == "queue":
            return self.enqueue(resp, sid=sid, turn=turn, queue=queue)
        return self.dial_human(resp, sid=sid, turn=turn)

    def closed_offer(self, resp, offer, *, sid, turn, locale, again=False):
        """Out of hours: press 1 for a call back, 2 for a message; silence comes back once
        (again=1), then takes the call back. A withheld number can only leave a message."""
        if not offer.can_call_back:
            self._say(resp, [offer.no_number], locale)
            return self.record_voicemail(resp, sid=sid)
        action = self.url("/voice/closed", turn=turn)
        gather = resp.gather(input="dtmf", num_digits=1, action=action, method="POST", timeout=8)
        gather.say(offer.text, language=locale)
        resp.redirect(self.url("/voice/closed", turn=turn, silent=2 if again else 1), method="POST")
        return resp

    def closed_offer_page(self, offer, *, sid, turn, locale, again=False) -> str:
        """Only the out-of-hours offer (what led to it was said already, or is said again)."""
        return str(self.closed_offer(VoiceResponse(), offer, sid=sid, turn=turn, locale=locale, again=again))

    def connect_person(self, *, sid, turn, queue) -> str:
        """Only the handoff (the words were said already)."""
        return str(self.handoff(VoiceResponse(), sid=sid, turn=turn, queue=queue))

    def enqueue(self, resp, *, sid, turn, queue):
        resp.enqueue(self.cfg.queue_prefix + queue, action=self.url("/voice/queue/result", turn=turn), method="POST",
                     wait_url=self.url("/voice/queue/wait", sid=sid, queue=queue), wait_url_method="POST")
        return resp

    def stream_url(self) -> str:
        """The media WebSocket URL; Twilio signs it exactly as written here (wss:// behind https)."""
        scheme, rest = self.cfg.public_url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + "/media"

    def stream(self, *, params) -> str:
        """<Connect><Stream>: the call talks to /media until the stream ends, then the action continues it.

        Call context travels as <Parameter>s: Twilio forbids a query string on the stream URL.
        """
        resp = VoiceResponse()
        connect = resp.connect(action=self.url("/voice/stream-ended"), method="POST")
        stream = connect.stream(url=self.stream_url())
        for name, value in params.items():
            stream.parameter(name=name, value=value)
        return str(resp)

    def dial_human(self, resp, *, sid, turn=None):
        dial = resp.dial(action=self.url("/voice/dial", turn=turn), method="POST",
                         timeout=self.cfg.dial_timeout)
        # The url runs on the agent's leg when they pick up: it marks the end of the wait.
        dial.number(self.cfg.human_line, url=self.url("/voice/whisper", sid=sid), method="POST")
        return resp

    def ask_rating(self, texts, prompt, goodbye, *, sid, after, locale) -> str:
        """Whatever came before, then the rating question; silence ends with the goodbye."""
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        gather = resp.gather(input="dtmf", num_digits=1, timeout=6, method="POST",
                             action=self.url("/voice/rating", after=after))
        gather.say(prompt, language=locale)
        self._say(resp, [goodbye] if goodbye else [], locale)
        resp.hangup()
        return str(resp)

    def ask_comment(self, prompt, goodbye, *, locale) -> str:
        resp = VoiceResponse()
        resp.say(prompt, language=locale)
        resp.record(action=self.url("/voice/comment"), method="POST", max_length=20, play_beep=True,
                    finish_on_key="#", timeout=3)
        self._say(resp, [goodbye] if goodbye else [], locale)
        resp.hangup()
        return str(resp)

    def say(self, texts, locale) -> str:
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        return str(resp)

    def say_then_hangup(self, texts, locale) -> str:
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        resp.hangup()
        return str(resp)

    def say_then_enqueue(self, texts, *, sid, turn, queue, locale) -> str:
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        self.enqueue(resp, sid=sid, turn=turn, queue=queue)
        return str(resp)

    def voicemail(self, texts, *, sid, locale) -> str:
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        self.record_voicemail(resp, sid=sid)
        return str(resp)

    def record_voicemail(self, resp, *, sid):
        # `sid` names the caller's call record: on a call back, Twilio's CallSid is the outbound call's.
        resp.record(action=self.url("/voice/voicemail", sid=sid), method="POST", max_length=120, play_beep=True,
                    finish_on_key="#")
        return resp

    def hold(self, texts, *, locale, music_url, offer=None) -> str:
        """One round of a waitUrl page: announcement, optional key offer, then hold music.
        Twilio re-requests the waitUrl when this ends, which paces the announcements."""
        resp = VoiceResponse()
        if offer is not None:
            text, action = offer
            gather = resp.gather(input="dtmf", num_digits=1, action=action, method="POST", timeout=5)
            gather.say(text, language=locale)
        self._say(resp, texts, locale)
        resp.play(music_url)
        return str(resp)

    def leave(self) -> str:
        resp = VoiceResponse()
        resp.leave()
        return str(resp)

    # The agent line's answers number the line's next request (`turn`, in the URL they send Twilio to):
    # each turn takes at most one caller, so the same request again takes nobody (ivr/agents.py).
    def agent_connect(self, briefing, *, queue, agent, locale, turn) -> str:
        """Brief the agent, then bridge them to the caller at the head of the queue."""
        resp = VoiceResponse()
        resp.say(briefing, language=locale)
        # A short timeout: if that caller hung up meanwhile, come back for the next one.
        dial = resp.dial(action=self.url("/voice/agent/done", turn=turn), method="POST", timeout=10)
        dial.queue(self.cfg.queue_prefix + queue, url=self.url("/voice/queue/connect", queue=queue, agent=agent),
                   method="POST")
        return str(resp)

    def agent_pin(self, texts, *, locale) -> str:
        """Ask an agent for their PIN; an empty answer comes back as a wrong one."""
        resp = VoiceResponse()
        action = self.url("/voice/agent", pin=1)
        gather = resp.gather(input="dtmf", action=action, method="POST", timeout=10, finish_on_key="#",
                             action_on_empty_result=True)
        for text in texts:
            gather.say(text, language=locale)
        resp.redirect(action, method="POST")
        return str(resp)

    def callback_queue(self, sid) -> str:
        """The Twilio queue in which an agent waits for the caller being rung back."""
        return f"{self.cfg.queue_prefix}cb-{sid}"

    def agent_await_callback(self, briefing, *, sid, attempt, locale, turn) -> str:
        """Brief the agent, then hold them until the caller rung back answers and dials them in
        (or their waitUrl lets them go: the call back did not reach anyone)."""
        resp = VoiceResponse()
        self._say(resp, briefing, locale)
        resp.enqueue(self.callback_queue(sid), action=self.url("/voice/agent/done", callback=sid, turn=turn),
                     method="POST",
                     wait_url=self.url("/voice/callback/agent-wait", sid=sid, attempt=attempt),
                     wait_url_method="POST")
        return str(resp)

    def callback_bridge(self, texts, *, sid, attempt, agent, locale) -> str:
        """The caller rung back answered: tell them, then the agent who asked (waiting in the call
        back's queue) or the human line, whose whisper briefs whoever picks up."""
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        action = self.url("/voice/callback/dialed", sid=sid, attempt=attempt)
        if agent:
            dial = resp.dial(action=action, method="POST", timeout=20)
            dial.queue(self.callback_queue(sid), method="POST",
                       url=self.url("/voice/callback/connected", sid=sid, attempt=attempt, agent=agent))
        else:
            dial = resp.dial(action=action, method="POST", timeout=self.cfg.dial_timeout)
            dial.number(self.cfg.human_line, url=self.url("/voice/callback/whisper", sid=sid, attempt=attempt),
                        method="POST")
        return str(resp)

    def wait_round(self, seconds=2) -> str:
        resp = VoiceResponse()
        resp.pause(length=seconds)
        return str(resp)

    def say_then_leave(self, texts, locale) -> str:
        resp = VoiceResponse()
        self._say(resp, texts, locale)
        resp.leave()
        return str(resp)

    def agent_idle(self, text, *, locale, idle, turn) -> str:
        resp = VoiceResponse()
        resp.say(text, language=locale)
        resp.pause(length=5)
        resp.redirect(self.url("/voice/agent", idle=idle, turn=turn), method="POST")
        return str(resp)

    def agent_resume(self, *, idle, turn) -> str:
        """A repeated agent-line request (a retry): nothing said, on to the turn the line expects."""
        resp = VoiceResponse()
        resp.pause(length=1)
        resp.redirect(self.url("/voice/agent", idle=idle, turn=turn), method="POST")
        return str(resp)

    def emergency(self, text, locale) -> str:
        """Apology and straight to the human line; needs nothing but configuration."""
        resp = VoiceResponse()
        resp.say(text, language=locale)
        # The action lets the transfer be counted once Redis (or whatever failed) is back.
        dial = resp.dial(timeout=self.cfg.dial_timeout, action=self.url("/voice/dial", turn="emergency"),
                         method="POST")
        dial.number(self.cfg.human_line)
        return str(resp)

    @staticmethod
    def _say(resp, texts, locale):
        for text in texts:
            resp.say(text, language=locale)
