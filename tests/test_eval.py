"""`ivr eval`: labelled caller turns through the real Korean Vosk model and the real flow engine.

The shipped set (eval/hotline_ko.yaml) is spoken by espeak-ng into a cache; the tests use its
first ten items (the main menu's option words) to stay fast, and the documented command runs
the whole set. A flow whose intents' examples were swapped is still a valid flow
(`ivr check-flows` passes), but `ivr eval` catches it and exits 1.
"""
import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from ivr.cli import main
from ivr.config import ROOT
from ivr.eval import edit_distance, load_set, wer
from ivr.eval.wer import cer
from tests.support.dither import seed_dither

KO_SET = ROOT / "eval" / "hotline_ko.yaml"
EN_SET = ROOT / "tests" / "data" / "hotline_en_labelled.yaml"
MENU_ITEMS = 10   # the first items of the Korean set: the option words the welcome prompt offers


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("eval-cache")


def run_eval(tmp_path, *args):
    # One item at a time, Kaldi's dither seeded first (tests/support/dither.py): the figures then do
    # not depend on what this process decoded before. Two items decoding at once drew from the same
    # rand() in whatever order the threads ran, and a run now and then heard two menu words wrong.
    seed_dither(1)
    result = CliRunner().invoke(main, ["eval", *args, "--workers", "1"],
                                env={"IVR_DATA_DIR": str(tmp_path / "var")}, catch_exceptions=False)
    return result.exit_code, result.output


def test_edit_distance_and_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    assert wer("where is my order", "where is my order") == 0
    assert wer("Where is my order?", "where is order") == 0.25          # one deletion in four words
    assert wer("opening hours", "opening ours please") == 1.0           # one substitution + one insertion
    assert cer("영업 시간", "영업시간") == 0                              # spacing is no error in characters
    assert cer("환불", "환물") == 0.5


def test_shipped_korean_set_is_labelled_for_the_korean_flow():
    s = load_set(KO_SET)
    assert s.flow == "hotline_ko" and s.lang == "ko" and s.min_accuracy is not None
    assert len(s.items) >= 30
    assert {i.expected_queue for i in s.items} == {None, "normal", "urgent"}
    assert {i.step for i in s.items} == {None, "how_can_help"}
    assert any(i.expected_intent is None for i in s.items)             # out-of-scope questions too
    assert all(i.audio is None for i in s.items)                        # audio is synthesized, not committed


@pytest.mark.speech
def test_eval_writes_report_with_real_figures(tmp_path, cache, ko_model):
    out = tmp_path / "report"
    code, output = run_eval(tmp_path, "--set", str(KO_SET), "--limit", str(MENU_ITEMS), "--out", str(out),
                            "--cache", str(cache), "--min-accuracy", "0.85")
    assert code == 0, output
    assert "asr=vosk" in output and "intent accuracy" in output
    results = json.loads((out / "results.json").read_text())
    m = results["metrics"]
    assert results["asr"] == "vosk" and results["flow"] == "hotline_ko" and m["items"] == MENU_ITEMS
    assert m["intent_accuracy"] >= 0.85 and m["audio_seconds"] > 3
    assert 0 <= m["wer"] < 0.5 and m["urgent_to_human_rate"] == 1.0    # 민원, 보안, 위험 reach the urgent queue
    heard = [i["heard"] for i in results["items"]]
    assert sum(h == i["text"] for h, i in zip(heard, results["items"])) >= 8   # recognized, not copied
    assert all(i["asr"] == "grammar" for i in results["items"])          # the main menu's live grammar
    report = (out / "report.md").read_text()
    assert f"{m['intent_accuracy'] * 100:.1f}%" in report and "Word error rate" in report
    assert "Containment" in report and "Clarification rate" in report and "PASS" in report
    png = (out / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(list(cache.rglob("*.wav"))) >= MENU_ITEMS                 # speech cached for the next run


def _broken_flow(tmp_path):
    """A copy of the Korean flow where two pairs of intents swapped their examples and keywords."""
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    path = flows / "hotline_ko.yaml"
    text = path.read_text(encoding="utf-8")
    for a, b in [("return_refund", "opening_hours"), ("warranty_repair", "shipping")]:
        head_a, head_b = f"\n  {a}:\n    examples:", f"\n  {b}:\n    examples:"
        assert head_a in text and head_b in text
        text = text.replace(head_a, "\n  @@:\n    examples:").replace(head_b, head_a).replace(
            "\n  @@:\n    examples:", head_b)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.speech
def test_eval_fails_on_a_broken_flow_that_check_flows_accepts(tmp_path, cache, ko_model):
    broken = _broken_flow(tmp_path)
    check = subprocess.run([str(ROOT / ".venv" / "bin" / "ivr"), "check-flows", str(broken)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr                          # valid YAML, valid flow
    out = tmp_path / "report"
    code, output = run_eval(tmp_path, "--set", str(KO_SET), "--flow", str(broken), "--limit", str(MENU_ITEMS),
                            "--out", str(out), "--cache", str(cache), "--min-accuracy", "0.85")
    assert code == 1, output
    assert "FAIL: intent accuracy" in output
    m = json.loads((out / "results.json").read_text())["metrics"]
    assert m["intent_accuracy"] <= 0.7
    pairs = {(c["expected"], c["got"]) for c in m["confusions"]}
    # The report names the damage: at least three of the four swapped pairs show up as confusions
    # (one option word may be misheard on a given run: Vosk is not repeatable bit for bit).
    swapped = {("return_refund", "opening_hours"), ("opening_hours", "return_refund"),
               ("warranty_repair", "shipping"), ("shipping", "warranty_repair")}
    assert len(pairs & swapped) >= 3, pairs
    assert "FAIL" in (out / "report.md").read_text()


def test_english_set_runs_text_only(tmp_path):
    out = tmp_path / "en"
    code, output = run_eval(tmp_path, "--set", str(EN_SET), "--flow", "hotline", "--asr", "text",
                            "--out", str(out), "--min-accuracy", "0.95")
    assert code == 0, output
    m = json.loads((out / "results.json").read_text())["metrics"]
    assert m["items"] >= 150 and m["intent_accuracy"] >= 0.95 and m["wer"] is None
    assert m["urgent_to_human_rate"] == 1.0 and 0 < m["containment"] < 1
    assert (out / "chart.png").stat().st_size > 10_000


@pytest.mark.speech
def test_csv_set_with_own_recordings(tmp_path, ko_model):
    """The format users point at their own recordings: audio path + transcript + labels."""
    wav = tmp_path / "rec1.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "에이에스"], check=True, capture_output=True)
    (tmp_path / "set.csv").write_text(
        "audio,text,expected_intent,expected_queue,step\n"
        "rec1.wav,에이에스,warranty_repair,,\n", encoding="utf-8")
    out = tmp_path / "csv"
    code, output = run_eval(tmp_path, "--set", str(tmp_path / "set.csv"), "--flow", "hotline_ko", "--out", str(out))
    assert code == 0, output
    [item] = json.loads((out / "results.json").read_text())["items"]
    assert item["heard"] == "에이에스" and item["intent"] == "warranty_repair" and item["audio_seconds"] > 0.3


@pytest.mark.speech
def test_missing_audio_file_is_a_clear_error(tmp_path, ko_model):
    (tmp_path / "set.csv").write_text("audio,text,expected_intent,expected_queue\nnope.wav,환불,return_refund,\n",
                                      encoding="utf-8")
    code, output = run_eval(tmp_path, "--set", str(tmp_path / "set.csv"), "--flow", "hotline_ko",
                            "--out", str(tmp_path / "o"))
    assert code == 2 and "nope.wav" in output
