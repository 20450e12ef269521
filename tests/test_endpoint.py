"""The endpointer on its own (ivr.speech.endpoint): synthetic frames, voiced or not, and the
partial results a recognizer would give. Time is counted in 20 ms frames, so every decision
below is exact."""
import pytest

from ivr.speech.endpoint import EndpointConfig, Endpointer

CFG = EndpointConfig()
END = CFG.end_frames                 # 11 frames: 220 ms of trailing silence at a directed step
STABLE = CFG.stable_frames           # 5 frames: the partial unchanged for 100 ms


def frame(i):
    return bytes([i % 256]) * 160


def speaking(ep=None, words="환불"):
    """An endpointer past onset that has heard `words` (partial result) while the caller spoke."""
    ep = ep or Endpointer()
    for i in range(3):
        ep.idle_frame(frame(i), True)
    assert ep.state == Endpointer.SPEAKING
    for n in range(1, len(words) + 1):
        assert ep.speech_frame(True, words[:n]) is None
    return ep


def silence_until_end(ep, partials=None, limit=1000):
    """Feed silent frames (with these partials, then the last one repeated); the frame count at 'end'."""
    partials = list(partials or [])
    for n in range(1, limit + 1):
        partial = partials[n - 1] if n <= len(partials) else ep.partial
        if ep.speech_frame(False, partial) == "end":
            return n
    raise AssertionError("never ended")


def test_onset_needs_three_voiced_frames_of_five():
    ep = Endpointer()
    for i, voiced in enumerate([True, False, False, True, False, False, True, False, False, True, False]):
        assert ep.idle_frame(frame(i), voiced) is None       # a click now and then is not speech
    assert ep.state == Endpointer.IDLE
    assert ep.idle_frame(frame(11), True) is None
    out = ep.idle_frame(frame(12), True)                      # 3 voiced among the last 5
    assert out is not None and ep.state == Endpointer.SPEAKING
    assert out[-1] == frame(12) and ep.frames == len(out)


def test_onset_hands_over_the_last_300_ms_before_it():
    ep = Endpointer()
    for i in range(40):
        assert ep.idle_frame(frame(i), False) is None
    for i in (40, 41):
        assert ep.idle_frame(frame(i), True) is None
    out = ep.idle_frame(frame(42), True)
    assert out == [frame(i) for i in range(43 - CFG.preroll, 43)]    # the word's start is not cut off


def test_ends_after_trailing_silence_once_the_partial_settled():
    ep = speaking()
    assert silence_until_end(ep) == END
    assert ep.partial == "환불" and ep.confirmed


def test_waits_while_the_partial_still_changes():
    # Vosk's partial lags the audio: words still arriving after the caller went quiet delay the end
    # until they have stopped changing for STABLE frames.
    ep = speaking()
    catching_up = ["환불 요", "환불 요청", "환불 요청 합", "환불 요청 합니", "환불 요청 합니다"] * 3
    catching_up = [f"{p} {i}" for i, p in enumerate(catching_up)]          # a new partial every frame
    n = silence_until_end(ep, catching_up)
    assert n == len(catching_up) + STABLE
    assert END < n < CFG.max_silence_frames


def test_an_empty_partial_does_not_hold_the_end():
    ep = Endpointer()
    for i in range(3):
        ep.idle_frame(frame(i), True)
    for _ in range(4):
        ep.speech_frame(True, "")                     # a short word the decoder has not shown yet
    assert silence_until_end(ep) == END
    assert not ep.confirmed


def test_ends_after_the_longest_silence_whatever_the_partial_does():
    ep = speaking()
    never_settles = [f"partial {i}" for i in range(100)]
    assert silence_until_end(ep, never_settles) == CFG.max_silence_frames


def test_ends_a_monologue_at_the_longest_utterance():
    cfg = EndpointConfig(max_utterance_ms=1000)
    ep = Endpointer(cfg)
    onset = None
    for i in range(3):
        onset = ep.idle_frame(frame(i), True)
    fed = len(onset)
    for i in range(1000):
        fed += 1
        if ep.speech_frame(True, f"words {i}") == "end":
            break
    assert fed == cfg.max_frames == 50          # the onset frames count towards it


def test_open_questions_wait_longer_for_the_end():
    ep = speaking()
    ep.set_open(True)
    assert silence_until_end(ep) == CFG.open_end_frames > END
    ep.reset()
    speaking(ep)
    ep.set_open(False)
    assert silence_until_end(ep) == END


def test_a_voiced_frame_restarts_the_trailing_silence():
    ep = speaking()
    for _ in range(END - 1):
        assert ep.speech_frame(False, "환불") is None
    assert ep.speech_frame(True, "환불") is None            # the caller said a little more
    assert silence_until_end(ep) == END


def test_reset_forgets_the_utterance():
    ep = speaking()
    ep.speech_frame(False, "환불")
    ep.reset()
    assert (ep.state, ep.frames, ep.silent, ep.partial, ep.confirmed) == (Endpointer.IDLE, 0, 0, "", False)
    assert ep.idle_frame(frame(0), True) is None            # onset needs three voiced frames again


@pytest.mark.parametrize("ms,frames", [(220, 11), (20, 1), (5, 1), (450, 22)])
def test_silence_settings_in_frames(ms, frames):
    assert EndpointConfig(end_silence_ms=ms).end_frames == frames
    assert EndpointConfig(end_silence_ms=ms).max_silence_frames >= frames
