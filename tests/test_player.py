"""The paced player on its own (ivr.media.player): what goes on the wire, in which order, when.

The player's clock and sleep are injected: a virtual clock that a sleep moves forward, so a
second of audio plays in no time and every send has an exact timestamp. Its send is a list."""
import threading

import pytest

from ivr.media.audio import FRAME_BYTES, FRAME_MS
from ivr.media.player import BATCH_FRAMES, LEAD_FRAMES, Player
from tests.support.wire import Wire

STEP = FRAME_MS / 1000


class VirtualTime:
    def __init__(self, t=1000.0):
        self.t = t
        self.slept = []

    def clock(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds


def audio(frames, value=0x55):
    return bytes([value]) * (FRAME_BYTES * frames)


@pytest.fixture
def vt():
    return VirtualTime()


@pytest.fixture
def player(vt):
    wire = Wire(vt.clock)
    p = Player(wire, "MZ" + "a" * 32, clock=vt.clock, sleep=vt.sleep)
    p.wire = wire
    yield p
    p.close()


def test_frames_are_paced_in_real_time_a_little_ahead(player, vt):
    start = vt.t
    name = player.play([audio(50)])
    player.wire.wait(lambda w: name in w.marks())
    media = [(t, m) for t, m in player.wire.sent if m["event"] == "media"]
    assert len(media) == 50 and player.wire.events()[-1] == "mark"
    for n, (t, _) in enumerate(media):
        plays_at = start + n * STEP
        # Never more than LEAD_FRAMES ahead of the moment the caller hears it, never behind it.
        assert plays_at - (LEAD_FRAMES + BATCH_FRAMES) * STEP - 1e-9 <= t <= plays_at + 1e-9, (n, t - start)
    assert all(t == start for t, _ in media[:LEAD_FRAMES + 1])        # the first 200 ms go at once
    # One wake-up per batch of frames, not one per frame.
    assert len(vt.slept) <= 50 // BATCH_FRAMES + 1
    assert player.frames_sent == 50 and player.late_frames == 0


def test_parts_are_played_in_order_and_rendered_when_their_turn_comes(player):
    rendered = []

    def render(value):
        def part():
            rendered.append(value)
            return audio(2, value)
        return part
    first = player.play([audio(1, 1), render(2)])
    second = player.play([render(3)])
    player.wire.wait(lambda w: second in w.marks())
    assert player.wire.payloads() == [bytes([v]) * FRAME_BYTES for v in (1, 2, 2, 3, 3)]
    assert player.wire.marks() == [first, second] and rendered == [2, 3]


def test_marks_keep_the_player_playing_until_twilio_echoes_them(player):
    name = player.play([audio(3)])
    player.wire.wait(lambda w: name in w.marks())
    assert player.playing                     # sent, but Twilio may still be playing it
    assert player.marked("nonsense") is False and player.playing
    assert player.marked(name) is True
    assert not player.playing
    assert player.marked(name) is False       # an echo twice is not news


def test_first_frame_callback_once_per_prompt(player):
    firsts = []
    name = player.play([audio(1), audio(5)], on_first_frame=lambda: firsts.append(len(player.wire.sent)))
    player.wire.wait(lambda w: name in w.marks())
    assert firsts == [1]


class Gate:
    """A sleep that holds the player mid-prompt until the test opens it."""

    def __init__(self, vt):
        self.vt, self.entered, self.open = vt, threading.Event(), threading.Event()

    def __call__(self, seconds):
        self.entered.set()
        assert self.open.wait(5)
        self.vt.sleep(seconds)


def test_clear_drops_queued_audio_and_sends_clear_once(vt):
    gate = Gate(vt)
    wire = Wire(vt.clock)
    player = Player(wire, "MZ" + "b" * 32, clock=vt.clock, sleep=gate)
    try:
        player.play([audio(30, 1)])
        player.play([audio(30, 2)])
        assert gate.entered.wait(5)                 # prompt 1 is playing, prompt 2 waits its turn
        assert player.playing
        assert player.clear() is True
        assert player.clear() is False               # nothing left to clear: nothing sent
        gate.open.set()
        after = player.play([audio(3, 3)])           # what the bot says next still plays
        wire.wait(lambda w: after in w.marks())
        events = wire.events()
        assert events.count("clear") == 1
        cut = events.index("clear")
        assert wire.payloads(since=cut + 1) == [bytes([3]) * FRAME_BYTES] * 3     # only the next prompt
        assert bytes([2]) * FRAME_BYTES not in wire.payloads()                    # the queued one: never
        assert wire.marks() == [after]               # the cleared prompts never end with a mark
        assert player.marked(after) and not player.playing
    finally:
        gate.open.set()
        player.close()


def test_no_frame_of_a_cleared_prompt_follows_the_clear():
    """Cleared at every moment of a prompt's sending (no pacing: frames go as fast as they can)."""
    for attempt in range(40):
        wire = Wire()
        player = Player(wire, "MZ" + "c" * 32, clock=lambda: 0.0, sleep=lambda s: None)
        try:
            player.play([audio(200, 7)])
            wire.wait(lambda w, k=attempt: len(w.sent) > k * 4)
            assert player.clear()
            after = player.play([audio(2, 9)])
            wire.wait(lambda w, name=after: name in w.marks())
            cut = wire.events().index("clear")
            assert wire.payloads(since=cut + 1) == [bytes([9]) * FRAME_BYTES] * 2, (attempt, cut)
        finally:
            player.close()


def test_a_prompt_that_fails_to_render_is_reported_and_its_mark_dropped(player):
    failures = []
    player.on_error = failures.append

    def broken():
        raise RuntimeError("espeak-ng died")
    player.play([broken])
    after = player.play([audio(1)])
    player.wire.wait(lambda w: after in w.marks())
    assert [str(e) for e in failures] == ["espeak-ng died"]
    assert player.wire.marks() == [after]
    assert player.marked(after) and not player.playing


def test_a_closed_socket_is_not_a_failure(vt):
    failures = []

    def closed(text):
        raise BrokenPipeError("the caller hung up")
    player = Player(closed, "MZ" + "d" * 32, clock=vt.clock, sleep=vt.sleep, on_error=failures.append)
    try:
        player.play([audio(2)])
        player.play([audio(2)])
        deadline = threading.Event()
        for _ in range(100):
            if not player.playing:
                break
            deadline.wait(0.01)
        assert not player.playing and failures == []
    finally:
        player.close()


def test_after_a_clear_the_next_prompt_starts_at_once_not_when_the_cleared_wait_ends(monkeypatch):
    # Real clock and waits, with batches stretched to 3 s: a player thread that slept through its
    # batch would start the next prompt ~3 s late; one woken by clear() starts it at once.
    from ivr.media import player as player_module

    monkeypatch.setattr(player_module, "BATCH_FRAMES", 150)
    sent = []
    p = Player(sent.append, "MZ" + "e" * 32)
    try:
        p.play([audio(400)])                       # 8 s of audio: the thread sends its lead, then waits
        deadline = threading.Event()
        while not any('"media"' in m for m in sent) and not deadline.wait(0.01):
            pass
        started = threading.Event()
        p.clear()
        p.play([audio(5, 0x66)], on_first_frame=started.set)
        assert started.wait(1.0), "the next prompt waited for the cleared prompt's batch to end"
    finally:
        p.close()
