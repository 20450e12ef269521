"""Flow files: every problem reported with file and line; the server refuses to start."""
import subprocess
import sys

import pytest

from ivr import create_app
from ivr.config import ROOT
from ivr.flows.loader import FlowError, load_flow, load_flows

GOOD = (ROOT / "flows" / "hotline.yaml").read_text()


def write(tmp_path, text, name="hotline.yaml"):
    for sub, file in (("data", "orders.yaml"), ("training", "hotline.yaml")):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / file).write_text((ROOT / "flows" / sub / file).read_text())
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def the_problem(tmp_path, bad):
    """The one problem loading the flow text `bad` reports, and the flow's path."""
    assert bad != GOOD
    path = write(tmp_path, bad)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    [problem] = exc.value.problems
    return problem, path


def test_shipped_flows_are_valid():
    flows = load_flows(ROOT / "flows")
    assert "hotline" in flows


def test_unknown_step_reported_with_line(tmp_path):
    bad = GOOD.replace("goto: hours_answer", "goto: hours_anwser")
    problem, path = the_problem(tmp_path, bad)
    assert problem.file == str(path)
    assert problem.line == line_of(bad, "goto: hours_anwser")
    assert "unknown step 'hours_anwser'" in problem.message


def test_duplicate_intent_reported_with_line(tmp_path):
    bad = GOOD.replace("  shipping:\n", "  opening_hours:\n", 1)
    path = write(tmp_path, bad)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    msgs = [str(p) for p in exc.value.problems]
    dup_line = [i for i, line in enumerate(bad.splitlines(), 1) if line == "  opening_hours:"][1]
    assert f"{path}:{dup_line}: duplicate intent 'opening_hours'" in msgs


def test_missing_language_prompt_reported(tmp_path):
    bad = GOOD.replace("languages: [en]", "languages: [en, ko]")
    path = write(tmp_path, bad)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    first = exc.value.problems[0]
    assert "missing 'ko' text" in first.message and first.line > 1


def test_schema_error_names_field_and_line(tmp_path):
    bad = GOOD.replace("type: goodbye", "type: farewell")
    path = write(tmp_path, bad)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    problem = exc.value.problems[0]
    assert problem.line == line_of(bad, "type: farewell")
    assert "steps/bye/type" in problem.message and "farewell" in problem.message


def test_yaml_syntax_error_has_line(tmp_path):
    bad = GOOD.replace("start: welcome", "start: [welcome")
    path = write(tmp_path, bad)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    assert "invalid YAML" in exc.value.problems[0].message
    assert exc.value.problems[0].line >= line_of(bad, "start: [welcome")


@pytest.mark.slow       # the `ivr` command in its own processes
def test_check_flows_command_reports_and_fails(tmp_path):
    path = write(tmp_path, GOOD.replace("goto: bye", "goto: byebye"))
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "check-flows", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{path}:{line_of(GOOD, 'goto: bye')}:" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "ivr.cli", "check-flows"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow       # `ivr serve` in its own process
def test_server_refuses_to_start_with_invalid_flow(tmp_path, make_config):
    write(tmp_path, GOOD.replace("goto: bye", "goto: byebye"))
    with pytest.raises(FlowError):
        create_app(make_config(flows_dir=tmp_path))
    env = {"IVR_FLOWS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "IVR_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "--port", "0"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "byebye" in proc.stderr


def test_phrase_under_two_intents_reported_with_line(tmp_path):
    # Same words, different spelling: the matcher compares normalized text, so does the check.
    bad = GOOD.replace("how much is shipping, shipping costs,", "how much is shipping, Return Policy!,", 1)
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, "Return Policy!")
    assert problem.message == ("intent 'shipping' example 'Return Policy!' is also listed under intent "
                               "'return_refund'")


@pytest.mark.parametrize("fillers, bad_line, message", [
    ("fillers:\n  en: [um, hot]\n", "en: [um, hot]",
     "filler 'hot' is a word of intent 'safety_hazard' keyword 'very hot': fillers are taken out of what the "
     "caller said, so it would break that phrase"),
    ("fillers:\n  en: [um, refund]\n", "en: [um, refund]",
     "filler 'refund' is an example of intent 'return_refund': it cannot mean nothing and that too"),
    ("fillers:\n  en: [um]\n  fr: [euh]\n", "fr: [euh]", "fillers: language 'fr' is not one of the flow languages"),
])
def test_a_filler_that_would_break_a_phrase_is_reported_with_line(tmp_path, fillers, bad_line, message):
    start = GOOD.index("\nfillers:\n") + 1
    end = GOOD.index("]\n", start) + 2
    bad = GOOD[:start] + fillers + GOOD[end:]
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, bad_line) and problem.message == message


def test_grammar_leave_out_names_a_frustration_phrase_or_filler(tmp_path):
    bad = GOOD.replace("settings:\n", "settings:\n  grammar_leave_out: {en: [ridiculus]}\n", 1)
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, "ridiculus")
    assert problem.message == "grammar_leave_out: 'ridiculus' is no 'en' frustration phrase or filler of the flow"


def test_rule_with_unknown_concept_reported_with_line(tmp_path):
    bad = GOOD.replace("      - {all: [money, twice]}", "      - {all: [money, twise]}", 1)
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, "{all: [money, twise]}")
    assert problem.message == "intent 'fraud_security' rule refers to unknown concept 'twise'"


@pytest.mark.parametrize("line, right, wrong, setting", [
    ("elsewhere_concepts: {travel: 0.1, other_services: 0.05", "other_services", "other_servces", "elsewhere_concepts"),
    ("answer_nearest: {below: 0.35, unless: [products]}", "products", "prodcts", "answer_nearest unless"),
    ("elsewhere_unless: {this_shop: 0.5}", "this_shop", "this_shoop", "elsewhere_unless"),
])
def test_an_unknown_concept_of_a_setting_is_reported_with_line(tmp_path, line, right, wrong, setting):
    bad = GOOD.replace(line, line.replace(right, wrong), 1)
    assert bad != GOOD
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, wrong)
    assert problem.message == f"{setting} refers to unknown concept '{wrong}'"


WHOSE = "elsewhere_unless: {this_shop: 0.5}"
WHO = "    not_customer: {answers: 1, handoffs: 0.8}"


@pytest.mark.parametrize("shipped, setting, problem_text", [
    (WHOSE, "elsewhere_unless: {this_shop: .nan}",
     "elsewhere_unless: the bar of 'this_shop' must be a number from 0 to 1, not nan"),
    (WHOSE, "elsewhere_unless: {travel: 0.5}", "concept 'travel' is in both elsewhere_concepts and elsewhere_unless"),
    (WHOSE, "elsewhere_unless: {money: 0.5}",
     "elsewhere_unless concept 'money' is used by a rule or signal of intent 'fraud_security'"),
    (WHO, "    not_custmer: {answers: 1, handoffs: 0.8}", "no_answer_concepts refers to unknown concept 'not_custmer'"),
    (WHO, "    travel: {answers: 1, handoffs: 0.8}",
     "concept 'travel' is in no_answer_concepts and in an elsewhere setting"),
    (WHO, "    this_shop: {answers: 1, handoffs: 0.8}",
     "concept 'this_shop' is in no_answer_concepts and in an elsewhere setting"),
    (WHO, "    heat: {answers: 1, handoffs: 0.8}",
     "no_answer_concepts concept 'heat' is used by a rule or signal of intent 'safety_hazard'"),
    (WHO, "    not_customer: {answers: 1, handoffs: .nan}",
     "no_answer_concepts: the bar of 'not_customer' must be a number from 0 to 1, not nan"),
    # An entry without both confidences would silently mean a default (answers 1: no routine answer).
    (WHO, "    not_customer: {handoffs: 0.8}",
     "settings/no_answer_concepts/not_customer: 'answers' is a required property"),
    (WHO, "    not_customer: {answers: 1, handoffs: 0.8, unless: [prodcts]}",
     "no_answer_concepts 'not_customer' unless refers to unknown concept 'prodcts'"),
    (WHO, "    not_customer: {answers: 1, handoffs: 0.8, unless: [money]}",
     "no_answer_concepts 'not_customer' unless concept 'money' is used by a rule or signal of intent 'fraud_security'"),
    (WHO, "    not_customer: {answers: 1, handoffs: 0.8, handoff: 0.5}",
     "settings/no_answer_concepts/not_customer: Additional properties are not allowed ('handoff' was unexpected)"),
])
def test_a_whose_matter_or_no_answer_concept_that_cannot_work_is_reported_with_line(
        tmp_path, shipped, setting, problem_text):
    bad = GOOD.replace(shipped, setting, 1)
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, setting.strip())
    assert problem.message.startswith(problem_text), problem.message


def test_a_missing_training_file_is_reported_at_the_flow_line(tmp_path):
    bad = GOOD.replace("training: [training/hotline.yaml]", "training: [training/nowhere.yaml]")
    problem, _ = the_problem(tmp_path, bad)
    assert problem.line == line_of(bad, "training: [training/nowhere.yaml]")
    assert "training file 'training/nowhere.yaml' not found" in problem.message


def test_training_sentences_for_an_unknown_intent_are_reported_with_their_own_file_and_line(tmp_path):
    path = write(tmp_path, GOOD)
    training = tmp_path / "training" / "hotline.yaml"
    text = training.read_text().replace("  shipping:\n", "  shiping:\n", 1)
    training.write_text(text)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    [problem] = exc.value.problems
    assert problem.file == str(training) and problem.line == line_of(text, "  shiping:") + 1   # its sentences
    assert "unknown intent 'shiping'" in problem.message


def test_a_training_file_in_another_language_is_reported(tmp_path):
    path = write(tmp_path, GOOD)
    training = tmp_path / "training" / "hotline.yaml"
    text = training.read_text().replace("lang: en", "lang: ko", 1)
    training.write_text(text)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    assert "lang 'ko' is not one of the flow languages" in str(exc.value)
