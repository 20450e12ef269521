"""The stream session on its own (ivr.speech.session): Twilio's messages in, the bot's out.

Its collaborators are small stand-ins written here: a dialogue answering from a script (in
place of the flow engine and the call record), a listener reporting the events a test scripts
for each frame (in place of the endpointer and Vosk), prompt audio that is a run of one byte
per prompt. The player is the real one, sending into a list."""
import time
from types import SimpleNamespace

import pytest

from ivr.flows.engine import Expect, Input
from ivr.media import protocol
from ivr.media.audio import FRAME_BYTES
from ivr.metrics import PROCESS
from ivr.speech import session as session_module
from ivr.speech.listener import Noise, Onset, Utterance, Words
from ivr.speech.recognizer import Heard
from ivr.speech.session import Phase, StreamFailure, StreamSession, Turn
from tests.support.wire import Wire

MENU = Expect("welcome", ["1", "2", "3", "0"], False, ["환불", "영업 시간"], False)
ORDER_NUMBER = Expect("ask_order_number", ["0"], True, [], False)
SILENT = b"\xff" * FRAME_BYTES          # mu-law silence: one 20 ms frame
# Prompt text -> (byte its audio is made of, frames): the greeting plays 2 s, so it can be cut.
PROMPTS = {"hello": (1, 100), "short hello": (2, 2), "answer": (3, 2), "bye": (4, 2), "number?": (5, 100)}


class Refused(Exception):
    """What the real dialogue raises for a `start` that is not its call's (ivr.streamauth.StreamRefused)."""


class Dialogue:
    """Admits the `start` it is told to, answers `begin` with its greeting and each input with the
    next scripted Turn (or exception)."""

    def __init__(self, *replies, greeting=("hello",), expect=MENU, refuse=False):
        self.replies = list(replies)
        self.greeting, self.expect, self.refuse = list(greeting), expect, refuse
        self.admitted, self.begun, self.inputs, self.closed = None, False, [], None

    def admit(self, call_sid, custom):
        if self.refuse:
            raise Refused("bad_credential")
        self.admitted = (call_sid, custom)

    def begin(self):
        self.begun = True
        return Turn(self.greeting, self.expect, grammar=list(self.expect.phrases), lang="ko")

    def respond(self, inp, info):
        self.inputs.append((inp, info))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self, outcome, stats):
        self.closed = (outcome, stats)


class Listener:
    """Answers each frame with the next scripted event (None once the script is played out)."""

    def __init__(self):
        self.script, self.listened, self.resets = [], [], 0
        self.idle = True
        self.recognizer = SimpleNamespace(audio_seconds=0.0, decode_seconds=0.0)

    def listen(self, phrases, open_):
        self.listened.append((list(phrases), open_))

    def reset(self):
        self.resets += 1
        self.idle = True

    def feed(self, frame, voiced):
        event = self.script.pop(0) if self.script else None
        if isinstance(event, Exception):
            raise event
        if isinstance(event, (Onset, Words)):
            self.idle = False
        elif isinstance(event, (Utterance, Noise)):
            self.idle = True
        return event


class Prompts:
    def get(self, text, lang):
        if text not in PROMPTS:
            raise RuntimeError(f"cannot render {text!r}")
        value, frames = PROMPTS[text]
        return bytes([value]) * FRAME_BYTES * frames


def ends(kind, *prompts):
    return Turn(list(prompts), None, end=kind, lang="ko")


def asks(*prompts, expect=MENU):
    return Turn(list(prompts), expect, grammar=list(expect.phrases), lang="ko")


class Call:
    """One session, Twilio's messages for it and what the bot sent back."""

    def __init__(self, dialogue, gather_timeout=6):
        self.dialogue, self.listener, self.wire = dialogue, Listener(), Wire()
        self.session = StreamSession(self.wire, dialogue, models=SimpleNamespace(get=lambda lang: None),
                                     prompts=Prompts(), listener=lambda model, lang, endpoint: self.listener,
                                     gather_timeout=gather_timeout)
        self.tw = protocol.TwilioStream("MZ" + "a" * 32, "CA" + "b" * 32)

    def start(self):
        self.session.handle(self.tw.connected())
        self.session.handle(self.tw.start({"lang": "ko"}))
        return self

    def frames(self, *events):
        """One silent frame per event, the listener answering each with that event."""
        self.listener.script.extend(events)
        for _ in events:
            self.session.handle(self.tw.media(SILENT))

    def key(self, digit):
        self.session.handle(self.tw.dtmf(digit))

    def played(self, name):
        """The prompt ending with mark `name` was sent; Twilio says it has played it."""
        self.wire.wait(lambda w: name in w.marks())
        self.session.handle(self.tw.mark(name))

    def audio_of(self, text):
        return bytes([PROMPTS[text][0]]) * FRAME_BYTES


@pytest.fixture
def calls():
    made = []

    def make(*replies, **kwargs):
        gather = kwargs.pop("gather_timeout", 6)
        made.append(Call(Dialogue(*replies, **kwargs), gather_timeout=gather))
        return made[-1]
    yield make
    for call in made:
        call.session.close()


def test_phases_from_the_start_to_the_last_prompts_mark(calls):
    call = calls(ends("goodbye", "bye"), greeting=("short hello",))
    s = call.session
    assert s.phase == Phase.WAITING and not s.started
    s.handle(call.tw.connected())
    assert s.phase == Phase.WAITING
    s.handle(call.tw.start({"lang": "ko", "flow": "hotline_ko"}))
    assert s.phase == Phase.TALKING and call.dialogue.begun
    assert call.dialogue.admitted == ("CA" + "b" * 32, {"lang": "ko", "flow": "hotline_ko"})
    assert call.listener.listened == [(["환불", "영업 시간"], False)]
    call.played("p1")
    call.key("3")
    assert call.dialogue.inputs == [(Input("dtmf", "3"), {"input": "dtmf", "asr": None})]
    assert s.phase == Phase.ENDING and s.ending.kind == "goodbye" and s.ending.mark == "p2"
    call.key("0")                                   # the bot part is over: input is ignored
    call.frames(Onset(), Words("사람"))
    assert len(call.dialogue.inputs) == 1 and call.wire.events().count("clear") == 0
    call.played("p2")
    assert s.phase == Phase.DONE and s.done and s.outcome == "goodbye"
    s.close()
    outcome, stats = call.dialogue.closed
    assert outcome == "goodbye" and stats["audio_in_bytes"] == 2 * FRAME_BYTES and stats["bad_messages"] == 0
    assert call.wire.payloads() == [call.audio_of("short hello")] * 2 + [call.audio_of("bye")] * 2


def test_the_last_prompt_ends_the_stream_even_without_its_mark(calls, monkeypatch):
    call = calls(ends("handoff", "bye")).start()
    call.key("0")
    assert call.session.phase == Phase.ENDING
    call.session.tick()
    assert call.session.phase == Phase.ENDING                 # its mark may still come
    monkeypatch.setattr(session_module.time, "monotonic", lambda: call.session.ending.deadline + 1)
    call.session.tick()
    assert call.session.done and call.session.outcome == "handoff"


def test_media_and_keys_before_start_are_counted_as_bad(calls):
    call = calls(asks("answer"))
    s = call.session
    for message in (call.tw.media(SILENT), call.tw.dtmf("1"), "{not json", call.tw.mark("p9")):
        s.handle(message)
    assert s.counters.bad_messages == 3 and s.phase == Phase.WAITING     # a stray mark is not bad, just moot
    assert call.dialogue.admitted is None and call.dialogue.inputs == []
    call.start()
    s.handle(call.tw.start({"lang": "ko"}))                               # a second start
    assert s.counters.bad_messages == 4 and s.phase == Phase.TALKING
    assert call.dialogue.inputs == []


def test_a_stream_that_never_started_records_nothing(calls):
    call = calls()
    call.session.handle(call.tw.connected())
    call.session.drain()                                  # a server stopping: nothing to hand over
    assert call.session.done and call.session.outcome is None
    call.session.close()
    assert call.dialogue.closed is None


def test_a_start_the_dialogue_refuses_starts_nothing(calls):
    call = calls(refuse=True)
    with pytest.raises(Refused):
        call.start()
    assert call.session.phase == Phase.WAITING and not call.session.started
    assert not call.dialogue.begun and call.wire.sent == []
    call.session.close()
    assert call.dialogue.closed is None


def test_a_socket_without_start_is_given_up(calls, monkeypatch):
    call = calls()
    call.session.handle(call.tw.connected())
    call.session.tick()                                   # within START_WAIT: keep waiting
    monkeypatch.setattr(session_module.time, "monotonic", lambda: call.session.start_deadline + 1)
    with pytest.raises(session_module.StartTimeout):
        call.session.tick()


def test_a_started_stream_without_media_fails(calls, monkeypatch):
    """Twilio sends a frame every 20 ms of a live call: a stream quiet for MEDIA_WAIT is broken or hostile,
    and fails (the view sends the caller to a person); marks and keys do not keep it open."""
    call = calls(asks("answer")).start()
    s, now = call.session, time.monotonic()
    monkeypatch.setattr(session_module.time, "monotonic", lambda: now + session_module.MEDIA_WAIT - 1)
    call.frames(None)                                     # a frame resets the wait
    s.handle(call.tw.mark("p9"))
    s.tick()
    monkeypatch.setattr(session_module.time, "monotonic", lambda: now + 2 * session_module.MEDIA_WAIT - 1.5)
    s.tick()                                              # within MEDIA_WAIT of that frame
    s.handle(call.tw.dtmf("*"))
    monkeypatch.setattr(session_module.time, "monotonic", lambda: now + 2 * session_module.MEDIA_WAIT)
    with pytest.raises(StreamFailure) as failure:
        s.tick()
    assert failure.value.where == "no_media" and s.phase == Phase.TALKING


def test_first_words_clear_the_prompt_once(calls):
    call = calls(asks("answer")).start()
    call.wire.wait(lambda w: len(w.payloads()) > 0)       # the 2 s greeting is playing
    call.frames(Onset())
    assert "clear" not in call.wire.events()              # a sound is not yet words
    call.frames(Words("환"), None, Words("환불"))
    assert call.wire.events().count("clear") == 1
    cut = call.wire.events().index("clear")
    assert not call.session.player.playing
    call.frames(Utterance(Heard("환불", 0.93, "grammar"), 220, time.perf_counter()))
    call.played("p2")
    assert call.wire.events().count("clear") == 1         # the turn found nothing left to clear
    assert call.wire.payloads(since=cut) == [call.audio_of("answer")] * 2      # no greeting after the clear
    assert "p1" not in call.wire.marks()


def test_an_utterance_is_a_speech_turn_with_its_timings(calls):
    latency = ("ivr_recognition_latency_seconds_count", {"engine": "vosk"})
    before = PROCESS.get_sample_value(*latency) or 0
    call = calls(asks("answer"), greeting=("short hello",)).start()
    call.played("p1")
    call.frames(Onset(), Words("환불"), Utterance(Heard("환불", 0.93, "grammar"), 220, time.perf_counter()))
    assert call.dialogue.inputs == [(Input("speech", "환불", 0.93), {"input": "speech", "asr": "grammar"})]
    assert PROCESS.get_sample_value(*latency) == before + 1
    call.played("p2")
    [timing] = call.session.timings
    assert timing["endpoint_ms"] == 220 and timing["recognize_ms"] >= 0 and timing["decide_ms"] >= 0
    assert timing["prompt_ms"] >= 0 and call.listener.listened[-1] == (["환불", "영업 시간"], False)


def test_noise_is_no_turn(calls):
    call = calls(greeting=("short hello",)).start()
    call.played("p1")
    call.frames(Onset(), None, Noise(), None)
    assert call.dialogue.inputs == []


def test_silence_at_a_step_gives_a_silence_turn(calls):
    call = calls(asks("answer"), greeting=("short hello",), gather_timeout=0.1)       # 5 frames
    call.start()
    call.frames(*[None] * 20)                             # the greeting has not played yet: not counted
    assert call.dialogue.inputs == []
    call.played("p1")
    call.frames(None, None, Onset(), None, None, Noise())   # frames while a sound goes on are not quiet ...
    call.frames(None, None)                                 # ... nor does a cough start the count again
    assert call.dialogue.inputs == []
    call.frames(None)
    assert call.dialogue.inputs == [(Input("silence"), {"input": "silence", "asr": None})]


def test_digits_end_with_the_hash_key(calls):
    call = calls(asks("answer"), asks("answer"), greeting=("number?",), expect=ORDER_NUMBER).start()
    call.wire.wait(lambda w: len(w.payloads()) > 0)
    call.key("1")                                          # a key during the prompt cuts it, once
    for digit in "00561#":
        call.key(digit)
    assert call.dialogue.inputs == [(Input("dtmf", "100561"), {"input": "dtmf", "asr": None})]
    assert call.wire.events().count("clear") == 1 and call.listener.resets == 7
    call.played("p2")
    call.key("#")                                          # '#' alone is an answer too (none given)
    assert call.dialogue.inputs[-1][0] == Input("dtmf", "#")


def test_digits_without_the_hash_key_are_taken_after_a_pause(calls):
    call = calls(asks("answer"), greeting=("short hello",), expect=ORDER_NUMBER, gather_timeout=0.1)
    call.start()
    call.played("p1")
    call.key("4")
    call.frames(None, None, None)
    call.key("2")                                          # each key restarts the pause
    call.frames(None, None, None, None)
    assert call.dialogue.inputs == []
    call.frames(None)
    assert call.dialogue.inputs == [(Input("dtmf", "42"), {"input": "dtmf", "asr": None})]


def test_a_key_at_a_menu_is_a_turn_at_once(calls):
    call = calls(asks("answer")).start()
    call.key("2")
    assert call.dialogue.inputs == [(Input("dtmf", "2"), {"input": "dtmf", "asr": None})]
    assert call.wire.events().count("clear") == 1          # the greeting was still playing


def test_drain_ends_at_the_next_pause(calls):
    call = calls().start()
    call.wire.wait(lambda w: len(w.payloads()) > 0)
    call.frames(Onset())                                   # the caller is in the middle of a sentence
    call.session.drain()
    assert call.session.phase == Phase.TALKING and call.session.drain_deadline is not None
    call.frames(Noise())                                   # ... and done
    call.session.drain()
    assert call.session.done and call.session.outcome == "shutdown"
    assert call.wire.events().count("clear") == 1          # what was still playing is cut
    call.session.close()
    assert call.dialogue.closed[0] == "shutdown"


def test_drain_lets_an_ending_call_finish(calls):
    call = calls(ends("handoff", "bye")).start()
    call.key("0")
    call.session.drain()
    assert call.session.phase == Phase.ENDING
    call.played("p2")
    assert call.session.outcome == "handoff"


def test_the_caller_hanging_up_stops_the_stream(calls):
    call = calls().start()
    call.frames(None, None)
    call.session.handle(call.tw.stop())
    assert call.session.done and call.session.outcome == "stopped"
    call.session.close()
    assert call.dialogue.closed[0] == "stopped" and call.dialogue.closed[1]["audio_in_bytes"] == 2 * FRAME_BYTES


def test_a_failing_step_is_a_stream_failure(calls):
    call = calls(RuntimeError("the flow broke")).start()
    with pytest.raises(StreamFailure) as failure:
        call.key("1")
    assert failure.value.where == "step" and "the flow broke" in str(failure.value)


def test_a_failing_recognizer_is_a_stream_failure(calls):
    call = calls().start()
    with pytest.raises(StreamFailure) as failure:
        call.frames(MemoryError("decoder"))
    assert failure.value.where == "recognizer"


def test_a_prompt_that_cannot_be_rendered_ends_the_stream(calls):
    call = calls(greeting=("not renderable",)).start()
    deadline = time.monotonic() + 5
    while call.session.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(StreamFailure) as failure:
        call.session.tick()
    assert failure.value.where == "tts"
