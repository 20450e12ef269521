"""The global rules every step obeys, on the pure engine (no Redis, no HTTP)."""
import dataclasses

import pytest

from ivr.config import ROOT
from ivr.flows.engine import Conversation, Engine, Input
from ivr.flows.loader import load_flow

FLOW = load_flow(ROOT / "flows" / "hotline.yaml")
ENGINE = Engine(FLOW)
KO_FLOW = load_flow(ROOT / "flows" / "hotline_ko.yaml")
KO_ENGINE = Engine(KO_FLOW)
INPUT_STEPS = [name for name, step in FLOW.steps.items() if step.type in ("menu", "ask")]


def speech(text):
    return Input("speech", text)


def at(step, boost=None, engine=ENGINE):
    """A call waiting at `step`, reached the normal way where possible."""
    conv = Conversation("hotline", "en", boost=boost)
    engine.start(conv)
    conv.step = step
    return conv


def test_every_input_step_is_covered():
    assert {"welcome", "ask_order_number", "anything_else", "what_else"} <= set(INPUT_STEPS)


@pytest.mark.parametrize("step", INPUT_STEPS)
@pytest.mark.parametrize("words", ["agent", "representative please", "can I talk to a human", "operator"])
def test_asking_for_a_person_works_at_every_step(step, words):
    reply = ENGINE.handle(at(step), speech(words))
    assert reply.route is not None and reply.route.queue == "normal" and reply.route.reason == "agent_request"
    assert reply.decision.intent == "agent_request"


@pytest.mark.parametrize("step", INPUT_STEPS)
def test_key_zero_works_at_every_step(step):
    reply = ENGINE.handle(at(step), Input("dtmf", "0"))
    assert reply.route.reason == "agent_request"
    assert reply.decision.detail.endswith("by key 0")


@pytest.mark.parametrize("step", INPUT_STEPS)
@pytest.mark.parametrize("words,intent", [
    ("my charger is smoking", "safety_hazard"),
    ("someone hacked my account", "fraud_security"),
    ("i want to make a complaint", "complaint"),
])
def test_urgent_problems_go_to_the_urgent_queue_at_every_step(step, words, intent):
    reply = ENGINE.handle(at(step), speech(words))
    assert reply.route.queue == "urgent" and reply.route.reason == intent
    assert reply.decision.detail.startswith(f"urgent intent {intent} (")


def test_urgent_wins_over_a_routine_topic_in_the_same_sentence():
    reply = ENGINE.handle(at("welcome"), speech("my order arrived yesterday and the battery is swelling"))
    assert reply.route.queue == "urgent" and reply.route.reason == "safety_hazard"


def test_urgent_wins_over_a_plain_request_for_a_person():
    reply = ENGINE.handle(at("welcome"), speech("get me a human i want to complain"))
    assert reply.route.queue == "urgent" and reply.route.reason == "complaint"


def test_asking_for_a_person_wins_over_a_routine_topic():
    reply = ENGINE.handle(at("welcome"), speech("i want to talk to an agent about my refund"))
    assert reply.route.reason == "agent_request"


def test_routine_words_do_not_trigger_a_handoff():
    reply = ENGINE.handle(at("welcome"), speech("what does express delivery cost"))
    assert reply.route is None and reply.decision.intent == "shipping"


def test_one_clarification_then_a_person():
    conv = at("welcome")
    first = ENGINE.handle(conv, speech("can you recommend a good restaurant"))
    assert first.route is None and first.expect is not None
    assert first.prompts[0] == FLOW.message("clarify", "en")
    assert first.decision.action == "clarify" and first.decision.intent is None
    assert first.decision.detail.startswith("low confidence")
    second = ENGINE.handle(conv, speech("is it going to rain tomorrow"))
    assert second.route.queue == "normal" and second.route.reason == "not_understood"
    assert "second miss" in second.decision.detail


def test_silence_twice_goes_to_a_person():
    conv = at("welcome")
    assert ENGINE.handle(conv, Input("silence")).route is None
    assert ENGINE.handle(conv, Input("silence")).route.reason == "not_understood"


def test_order_number_step_gives_one_more_try_then_a_person():
    conv = at("welcome")
    ENGINE.handle(conv, speech("where is my order"))
    assert conv.step == "ask_order_number"
    wrong = ENGINE.handle(conv, Input("dtmf", "999999"))
    assert "couldn't find that order number" in wrong.text and wrong.route is None
    assert ENGINE.handle(conv, Input("dtmf", "999998")).route.reason == "not_understood"


def test_order_number_spoken_or_keyed_reads_the_status():
    conv = at("welcome")
    ENGINE.handle(conv, speech("wear is my order"))
    reply = ENGINE.handle(conv, speech("one zero zero two three four"))
    assert "Order 1 0 0 2 3 4 is shipped on Monday" in reply.text and reply.answered
    assert conv.step == "anything_else"


def test_no_number_hears_clarify_not_invalid():
    conv = at("ask_order_number")
    reply = ENGINE.handle(conv, speech("hmm let me see"))
    assert "didn't catch a number" in reply.text and "couldn't find" not in reply.text


def test_changing_the_subject_at_the_order_number_step():
    reply = ENGINE.handle(at("ask_order_number"), speech("actually i want a refund"))
    assert reply.decision.intent == "return_refund" and "30 days" in reply.text


def test_yes_asks_a_short_question_not_the_whole_welcome():
    conv = at("anything_else")
    reply = ENGINE.handle(conv, speech("yes please"))
    assert conv.step == "what_else"
    assert reply.text.startswith("What else can I help with?") and "Welcome" not in reply.text
    assert ENGINE.handle(conv, Input("dtmf", "3")).decision.intent == "opening_hours"


def test_yes_at_what_else_is_no_progress_and_cannot_loop():
    # "yes" answers "anything else?", not "what else can I help with?": no progress, asked once.
    conv = at("what_else")
    first = ENGINE.handle(conv, speech("yes"))
    assert first.decision.action == "clarify" and first.route is None, first.decision.detail
    assert ENGINE.handle(conv, speech("yeah")).route.reason == "not_understood"


@pytest.mark.parametrize("engine, flow, step, text", [
    (ENGINE, FLOW, "welcome", "nothing works at all"),
    (ENGINE, FLOW, "welcome", "the oven has no heat at all"),
    (ENGINE, FLOW, "welcome", "no i need help with my laptop"),
    (ENGINE, FLOW, "ask_order_number", "no i don't have the number"),
    (ENGINE, FLOW, "ask_order_number", "nothing, i lost the email"),
    (KO_ENGINE, KO_FLOW, "ask_order_number", "아니요 번호를 몰라요"),
    (KO_ENGINE, KO_FLOW, "ask_order_number", "없어요"),
])
def test_a_no_that_answers_no_question_never_ends_the_call(engine, flow, step, text):
    # "no", "nothing" and "that's all" end the call where "anything else?" was asked. Taken at any
    # step, the classifier's lean on them hung up on callers with a problem or without their number.
    lang = flow.languages[0]
    conv = Conversation(flow.id, lang)
    engine.start(conv)
    conv.step = step
    reply = engine.handle(conv, Input("speech", text))
    assert not reply.hangup and reply.decision.intent != "goodbye", reply.decision.detail


@pytest.mark.parametrize("engine, flow, text", [
    (ENGINE, FLOW, "no that's all thanks"),
    (KO_ENGINE, KO_FLOW, "아니요 없어요"),
])
def test_no_at_anything_else_ends_the_call(engine, flow, text):
    conv = Conversation(flow.id, flow.languages[0])
    engine.start(conv)
    conv.step = "anything_else"
    reply = engine.handle(conv, Input("speech", text))
    assert reply.hangup and reply.decision.intent == "goodbye", reply.decision.detail


def test_too_many_misses_in_one_call_go_to_a_person():
    conv = at("welcome")
    assert ENGINE.handle(conv, speech("banana")).route is None                  # miss 1
    ENGINE.handle(conv, speech("what are your opening hours"))                  # answered
    assert ENGINE.handle(conv, speech("purple elephants")).route is None        # miss 2
    ENGINE.handle(conv, speech("yes"))                                          # what else?
    reply = ENGINE.handle(conv, speech("the moon is made of cheese"))           # miss 3
    assert reply.route.reason == "not_understood" and "3 misses in this call" in reply.decision.detail


@pytest.mark.parametrize("words,phrase", [
    ("oh for god's sake", "for gods sake"),
    ("what the hell is going on", "hell"),
])
def test_frustration_goes_to_a_person(words, phrase):
    reply = ENGINE.handle(at("anything_else"), speech(words))
    assert reply.route.reason == "frustrated"
    assert reply.decision.detail == f"frustration phrase '{phrase}'"


@pytest.mark.parametrize("words", ["this is useless", "you're not helping at all"])
def test_a_frustration_phrase_the_classifier_reads_as_a_complaint_goes_to_the_urgent_queue(words):
    # Callers who said this in the training sentences were complaining: a person, ahead of others.
    reply = ENGINE.handle(at("anything_else"), speech(words))
    assert reply.route.queue == "urgent" and reply.route.reason == "complaint", reply.decision.detail


def test_repeating_yourself_goes_to_a_person():
    conv = at("welcome")
    ENGINE.handle(conv, speech("where is my order"))
    assert conv.step == "ask_order_number"
    # Without the rule this would be a first miss at the slot step, with a retry.
    reply = ENGINE.handle(conv, speech("where is my order?"))
    assert reply.route.reason == "frustrated" and "repeated themselves" in reply.decision.detail


def test_short_answers_may_repeat():
    conv = at("anything_else")
    ENGINE.handle(conv, speech("yes"))
    assert ENGINE.handle(conv, speech("what are your opening hours")).route is None


@pytest.mark.parametrize("boost", ["repeat_caller", "transferred_before"])
def test_repeat_caller_is_routed_with_priority(boost):
    reply = ENGINE.handle(at("welcome", boost=boost), speech("agent"))
    assert reply.route.queue == "urgent" and reply.route.boosted_by == boost
    assert f"priority: {boost}" in reply.decision.detail
    missed = at("welcome", boost=boost)
    ENGINE.handle(missed, Input("silence"))
    assert ENGINE.handle(missed, Input("silence")).route.queue == "urgent"


def test_repeat_caller_queue_setting_is_respected():
    flow = dataclasses.replace(FLOW, settings=dict(FLOW.settings, repeat_caller_queue="normal"))
    engine = Engine(flow)
    reply = engine.handle(at("welcome", boost="repeat_caller", engine=engine), speech("agent"))
    assert reply.route.queue == "normal" and reply.route.boosted_by is None


def test_first_time_caller_is_not_boosted():
    reply = ENGINE.handle(at("welcome"), speech("agent"))
    assert reply.route.queue == "normal" and reply.route.boosted_by is None


def test_expect_builds_the_grammar_from_the_flow():
    welcome = ENGINE.expect("welcome", "en")
    assert welcome.open and not welcome.digits and "0" in welcome.keys and "9" in welcome.keys
    assert "where is my order" in welcome.phrases and "refund" in welcome.phrases
    assert len(welcome.phrases) == len(set(welcome.phrases))
    ask = ENGINE.expect("ask_order_number", "en")
    assert ask.digits and ask.keys == ["0"] and not ask.open


def test_listen_options_limits_the_grammar_but_keeps_the_global_intents():
    steps = dict(FLOW.steps)
    steps["anything_else"] = dataclasses.replace(steps["anything_else"], listen="options")
    engine = Engine(dataclasses.replace(FLOW, steps=steps))
    phrases = engine.expect("anything_else", "en").phrases
    assert "yes" in phrases and "agent" in phrases and "it caught fire" in phrases
    assert "where is my order" not in phrases
    conv = at("anything_else", engine=engine)
    assert engine.handle(conv, speech("shipping costs")).decision.action == "clarify"


def at_ko(step):
    conv = Conversation("hotline_ko", "ko")
    KO_ENGINE.start(conv)
    conv.step = step
    return conv


KO_INPUT_STEPS = [name for name, step in KO_FLOW.steps.items() if step.type in ("menu", "ask")]


@pytest.mark.parametrize("step", KO_INPUT_STEPS)
@pytest.mark.parametrize("words", ["여보세요", "저기 음", "잠시만요 여보세요"])
def test_fillers_alone_are_not_understood_then_a_person(step, words):
    """Hello, wait, pardon? mean nothing: asked again once, then a person (never an option word)."""
    conv = at_ko(step)
    first = KO_ENGINE.handle(conv, speech(words))
    assert first.route is None and first.decision.action == "clarify" and conv.step == step
    assert first.decision.detail == f"only fillers: '{words}'"
    second = KO_ENGINE.handle(conv, speech(words))
    assert second.route.queue == "normal" and second.route.reason == "not_understood"


@pytest.mark.parametrize("step,fillers,option", [
    ("welcome", "여보세요 잠시만요", "에이에스"),
    ("welcome", "저기 그러니까", "시간"),
    ("anything_else", "여보세요", "네"),
    ("anything_else", "여보세요 여보세요", "아니요"),
])
def test_fillers_are_no_evidence_the_option_word_decides_as_if_said_alone(step, fillers, option):
    alone = KO_ENGINE.handle(at_ko(step), speech(option)).decision
    reply = KO_ENGINE.handle(at_ko(step), speech(f"{fillers} {option}"))
    assert (reply.decision.intent, reply.decision.detail) == (alone.intent, alone.detail)


@pytest.mark.parametrize("step", KO_INPUT_STEPS)
def test_every_korean_grammar_has_the_frustration_phrases_and_fillers(step):
    """A fed-up caller is heard as fed up (a person), a hello as a hello, not as the nearest option.
    Left out: phrases with a one-letter word (말이 안 통, 음), which took option words, and the flow's
    grammar_leave_out (시간 낭비 took 사람); fillers at the open question."""
    from ivr.speech.grammar import for_step
    phrases, open_ = for_step(KO_FLOW, KO_ENGINE.expect(step, "ko"), "ko")
    assert {"짜증나", "답답해"} <= set(phrases)
    assert not {"시간 낭비", "말이 안 통", "짜증 나", "음", "어", "아"} & set(phrases)
    # The open question's free-form recognition takes words off the menu: no fillers in its grammar.
    assert ({"여보세요", "저기", "그러니까"} <= set(phrases)) == (not open_)


def test_conversation_state_survives_json_round_trip():
    conv = at("welcome")
    ENGINE.handle(conv, speech("banana"))
    again = Conversation.from_dict(conv.to_dict())
    assert again == conv and again.total_misses == 1
    assert Conversation.from_dict({"flow": "hotline", "lang": "en", "step": "welcome"}).total_misses == 0


@pytest.mark.parametrize("words,intent,how", [
    ("there is a transaction on my statement that i dont recognise", "fraud_security", "rule money + not_mine"),
    ("the back of my phone has started to puff out", "safety_hazard", "rule swelling"),
])
def test_concept_rules_route_unseen_wording_to_the_urgent_queue(words, intent, how):
    reply = ENGINE.handle(at("welcome"), speech(words))
    assert reply.route.queue == "urgent" and reply.route.reason == intent
    assert how in reply.decision.detail


def test_a_money_signal_alone_goes_to_a_person_not_a_clarification():
    reply = ENGINE.handle(at("welcome"), speech("the funds"))
    assert reply.route is not None and reply.route.queue == "urgent", reply.decision.detail
    assert reply.decision.detail.startswith("urgent intent fraud_security (")
    assert "uncertain signal money ('funds')" in reply.decision.detail


def test_a_signal_word_in_a_question_the_classifier_finds_out_of_scope_is_no_signal():
    # "bank" is a money word, but the sentence is about nothing the hotline does.
    reply = ENGINE.handle(at("welcome"), speech("my bank holiday plans"))
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail


def test_a_spoken_order_number_is_not_a_request_for_a_person():
    # "zero" alone asks for a person (key 0); inside an order number it is a digit.
    assert ENGINE.handle(at("welcome"), speech("zero")).route.reason == "agent_request"
    conv = at("ask_order_number")
    reply = ENGINE.handle(conv, speech("one zero zero two three four"))
    assert reply.route is None and conv.slots["order_number"] == "100234"


UNSURE = "i might want to give the speaker back"   # return_refund at ~0.42


def test_after_one_clarification_an_uncertain_routine_answer_goes_to_a_person():
    first = ENGINE.handle(at("welcome"), speech(UNSURE))
    assert first.decision.intent == "return_refund" and first.route is None
    assert FLOW.confidence_threshold <= first.decision.confidence < FLOW.clarified_threshold

    conv = at("welcome")
    asked = ENGINE.handle(conv, speech("purple elephants dancing"))
    assert asked.decision.action == "clarify" and asked.route is None
    second = ENGINE.handle(conv, speech(UNSURE))
    assert second.route is not None and second.route.reason == "not_understood"
    assert "(asked again)" in second.decision.detail


def test_after_one_clarification_a_confident_answer_and_a_person_still_work():
    conv = at("welcome")
    ENGINE.handle(conv, speech("purple elephants dancing"))
    assert ENGINE.handle(conv, speech("what are your opening hours")).decision.intent == "opening_hours"
    conv = at("welcome")
    ENGINE.handle(conv, speech("purple elephants dancing"))
    assert ENGINE.handle(conv, speech("agent")).route.reason == "agent_request"


def first_turn(engine, flow_id, lang, text):
    conv = Conversation(flow_id, lang)
    engine.start(conv)
    return engine.handle(conv, speech(text))


@pytest.mark.parametrize("engine, flow_id, lang, text", [
    (ENGINE, "hotline", "en", "put me through to whoever is in charge there"),
    (KO_ENGINE, "hotline_ko", "ko", "팀장님 바꿔 주세요"),
    (KO_ENGINE, "hotline_ko", "ko", "실장님이랑 통화할게요"),
])
def test_asking_for_someone_higher_up_is_a_complaint_in_the_urgent_queue(engine, flow_id, lang, text):
    reply = first_turn(engine, flow_id, lang, text)
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == "complaint", \
        reply.decision.detail


@pytest.mark.parametrize("text", [
    "처리해 준다던 담당자님이 연락두절이에요",          # went to the normal queue on 담당자
    "수리 맡겼는데 직원이 제 잘못이라고 몰아가요",       # got the warranty answer
    "상담원이 전화를 뚝 끊어 버렸어요",                 # went to the normal queue on 상담원
])
def test_korean_complaints_without_the_word_reach_the_urgent_queue(text):
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", text)
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == "complaint", \
        reply.decision.detail


@pytest.mark.parametrize("text", ["사장님 매장 몇 시에 열어요", "부장님이 선물로 주신 거 교환 돼요"])
def test_a_title_alone_is_no_complaint(text):
    # A superior's title is a complaint only with a request to talk (rule superior + talk).
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", text)
    assert reply.route is None and reply.decision.intent in ("opening_hours", "return_refund"), reply.decision.detail


def without(flow, setting):
    """An engine of `flow` without one of its settings: what the setting decides."""
    return Engine(dataclasses.replace(flow, settings={k: v for k, v in flow.settings.items() if k != setting}))


@pytest.mark.parametrize("engine, flow, text, intent", [
    (ENGINE, FLOW, "my argos order never turned up", "order_status"),
    (KO_ENGINE, KO_FLOW, "은행 토요일에도 문 열어요", "opening_hours"),
    # Bought somewhere else: that shop's warranty, not this one's.
    (ENGINE, FLOW, "can you repair my washing machine i bought it somewhere else", "warranty_repair"),
    (KO_ENGINE, KO_FLOW, "다른 곳에서 산 에어컨도 수리 해 주세요", "warranty_repair"),
    # A utility or a cinema, at a weak out-of-scope lean (other_services holds from 0.05).
    (ENGINE, FLOW, "can i pay the water company through you", "payment_methods"),
    (KO_ENGINE, KO_FLOW, "메가박스 영화표 환불 어떻게 받아요", "return_refund"),
])
def test_another_business_s_matter_gets_no_routine_answer(engine, flow, text, intent):
    lang = flow.languages[0]
    reply = first_turn(engine, flow.id, lang, text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    assert "another business's matter" in reply.decision.detail
    # Without the flow's elsewhere_concepts the same words get the routine answer: the setting decides.
    plain = without(flow, "elsewhere_concepts")
    assert first_turn(plain, flow.id, lang, text).decision.intent == intent


def test_another_business_s_matter_said_twice_reaches_a_person():
    conv = at("welcome")
    assert ENGINE.handle(conv, speech("my argos order never turned up")).decision.action == "clarify"
    second = ENGINE.handle(conv, speech("is the barclays branch open on saturday"))
    assert second.route is not None and second.route.reason == "not_understood", second.decision.detail


def test_a_way_to_a_person_is_never_held_back_by_another_business_s_words():
    reply = first_turn(ENGINE, "hotline", "en", "my bank shows a payment to you that I never made")
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == "fraud_security"
    reply = first_turn(ENGINE, "hotline", "en", "the charger caught fire at the hotel")
    assert reply.route is not None and reply.route.reason == "safety_hazard"


@pytest.mark.parametrize("engine, flow, text", [
    (ENGINE, FLOW, "where's the nearest cash machine"),
    (ENGINE, FLOW, "how do i send money to my daughter in canada"),
])
def test_a_bank_s_matter_gets_no_routine_answer(engine, flow, text):
    # Cash machines and sending money are other services' (concept other_services): the classifier
    # learns them as out of scope, and a lean that way holds back the routine answer.
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail


def test_a_place_beside_the_shop_s_own_words_is_in_passing():
    # "your store" says whose matter it is: the station beside it needs a strong out-of-scope lean
    # (elsewhere_unless); without those words the same place holds the answer back.
    ours = "is your store by the train station open late tonight"
    reply = first_turn(ENGINE, "hotline", "en", ours)
    assert reply.route is None and reply.decision.intent == "opening_hours", reply.decision.detail
    # The operator sees why the station did not hold it back.
    assert "heard travel ('station') beside this_shop ('your store')" in reply.decision.detail
    assert "the shop's own matter" in reply.decision.detail
    theirs = first_turn(ENGINE, "hotline", "en", "is the shop by the train station open late tonight")
    assert theirs.decision.action == "clarify" and "another business's matter" in theirs.decision.detail
    plain = without(FLOW, "elsewhere_unless")
    assert first_turn(plain, "hotline", "en", ours).decision.action == "clarify"


def test_whose_matter_it_is_is_heard_but_neither_a_feature_nor_a_shadow():
    # "your store" says whose matter it is; as a classifier feature, words of address pulled chatter
    # towards complaints, and as a longer phrase "your email" would hide the email a fraud rule needs.
    matcher = ENGINE.matchers["en"]
    text = "your email asked me for my card number"
    heard = dict(matcher.match(text).heard)
    assert heard.get("this_shop") == "your email" and heard.get("contact") == "email", heard
    assert "# this_shop" not in matcher._features(text)


def test_another_business_s_word_inside_a_product_is_the_product():
    # Korean concept words match inside words: 마트 (a supermarket, other_services) is in 스마트워치,
    # the shop's own product, which hides it (it hides nothing else: 충전기 is still a charger).
    matcher = KO_ENGINE.matchers["ko"]
    text = "스마트워치 돈 돌려받을 수 있을까"
    heard = dict(matcher.match(text).heard)
    assert "other_services" not in heard and heard.get("products") == "스마트워치", heard
    assert "other_services" in dict(matcher.match("마트에서 산 우유 돈 돌려받을 수 있을까").heard)
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", "마음이 바뀌어서 그러는데 스마트워치 환불 돼요")
    assert reply.route is None and reply.decision.intent == "return_refund", reply.decision.detail


def test_a_keyword_inside_another_business_s_phrase_is_theirs():
    # 민원 (a complaint) inside 민원실 (a public office's service desk, other_services) lifts nothing.
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", "시청 민원실 몇 시까지 해요")
    assert reply.route is None or reply.route.reason != "complaint", reply.decision.detail
    assert "keyword '민원'" not in reply.decision.detail
    # Said of the shop, the same word is still a complaint, urgent.
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", "민원 넣을 거예요 직원이 너무 불친절했어요")
    assert reply.route is not None and reply.route.reason == "complaint" and reply.route.queue == "urgent"


@pytest.mark.parametrize("engine, flow_id, lang, text, reason", [
    (ENGINE, "hotline", "en", "the letting agent said I should ask for an agent", "agent_request"),
    (KO_ENGINE, "hotline_ko", "ko", "구청 민원실은 다녀왔고 여기에 민원 넣을게요", "complaint"),
])
def test_a_keyword_said_again_outside_another_business_s_phrase_counts(engine, flow_id, lang, text, reason):
    reply = first_turn(engine, flow_id, lang, text)
    assert reply.route is not None and reply.route.reason == reason, reply.decision.detail
    assert "by keyword" in reply.decision.detail


@pytest.mark.parametrize("engine, flow, text, intent", [
    (ENGINE, FLOW, "are you hiring in any of your stores this weekend", "opening_hours"),
    (KO_ENGINE, KO_FLOW, "매장 직원 채용하나요 주말 알바 자리 있어요", "opening_hours"),
])
def test_a_job_seeker_gets_no_routine_answer_even_naming_the_shop(engine, flow, text, intent):
    # "your stores" says whose matter it is, not who is calling: the not-customer words hold the
    # answer back at any lean.
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    assert "no answer for it here" in reply.decision.detail
    plain = without(flow, "no_answer_concepts")
    assert first_turn(plain, flow.id, flow.languages[0], text).decision.intent == intent


def test_a_sales_or_charity_call_is_not_sent_to_the_urgent_queue_on_the_classifier_s_lean():
    text = "hello I'm raising money for charity, could your staff help"
    reply = first_turn(ENGINE, "hotline", "en", text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    assert "heard not_customer ('charity'): no answer for it here" in reply.decision.detail
    # The classifier alone reads the staff as a complaint: without the setting, the urgent queue.
    plain = first_turn(without(FLOW, "no_answer_concepts"), "hotline", "en", text)
    assert plain.route is not None and plain.route.queue == "urgent", plain.decision.detail
    # Asked again, the caller reaches a person in the normal queue, not ahead of customers.
    conv = at("welcome")
    ENGINE.handle(conv, speech(text))
    second = ENGINE.handle(conv, speech("we're a charity and we'd like a donation for our raffle"))
    assert second.route is not None and second.route.queue == "normal", second.decision.detail


@pytest.mark.parametrize("engine, flow_id, lang, text", [
    (ENGINE, "hotline", "en", "I'm a reporter and your staff were rude to me, I want to complain"),
    (KO_ENGINE, "hotline_ko", "ko", "기자인데요 직원이 너무 불친절해서 민원 넣으려고요"),
    (ENGINE, "hotline", "en", "I'm a journalist and there's a payment to you on my card I never made"),
])
def test_a_keyword_or_rule_still_hands_a_non_customer_over(engine, flow_id, lang, text):
    reply = first_turn(engine, flow_id, lang, text)
    assert reply.route is not None and reply.route.queue == "urgent", reply.decision.detail


def test_a_keyword_inside_a_job_seeker_s_phrase_is_theirs():
    # With "the manager job" among who-is-calling phrases (a hotline may add it), "manager" in it is
    # the job applied for, not a request for a manager. The shipped lists leave it out: said after a
    # full stop that speech recognition drops, "get me the manager, job's not done" is a complaint.
    concepts = {**FLOW.concepts, "not_customer": {"en": FLOW.concepts["not_customer"]["en"] + ["the manager job"]}}
    engine = Engine(dataclasses.replace(FLOW, concepts=concepts))
    text = "where do I send my cv for the manager job"
    reply = first_turn(engine, "hotline", "en", text)
    assert reply.route is None and "keyword 'manager'" not in reply.decision.detail, reply.decision.detail
    assert first_turn(ENGINE, "hotline", "en", text).route.reason == "complaint"


def test_who_is_calling_is_heard_but_no_classifier_feature():
    matcher = ENGINE.matchers["en"]
    text = "i'm calling from a radio station about an interview"
    heard = dict(matcher.match(text).heard)
    assert heard.get("not_customer") == "radio station" and "travel" not in heard, heard
    assert "# not_customer" not in matcher._features(text)


@pytest.mark.parametrize("engine, flow, text, reason", [
    # Money safety and physical safety (intents with signals) are never held back by who is calling.
    (ENGINE, FLOW, "there's forty quid gone from my account to you and I've not bought anything, "
                   "I'm a student doing work experience", "fraud_security"),
    (ENGINE, FLOW, "my card was charged by your store but I've never been there, I only give to charity online",
     "fraud_security"),
    # 기자 (a reporter) is no word inside 전기자전거 (an electric bike).
    (KO_ENGINE, KO_FLOW, "전기자전거 충전기가 손을 못 댈 정도예요", "safety_hazard"),
])
def test_money_and_safety_reach_the_urgent_queue_whoever_says_they_are_calling(engine, flow, text, reason):
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == reason, \
        reply.decision.detail


def test_a_complaint_the_classifier_is_sure_of_is_not_held_back():
    # Below the concept's bar (0.8) a lean is held back; at it or above, the complaint goes through.
    text = "nobody ever calls me back, I've phoned five times, I'm a customer not someone doing a survey"
    reply = first_turn(ENGINE, "hotline", "en", text)
    held = reply.decision.confidence < FLOW.no_answer_concepts["not_customer"]["handoffs"]
    assert (reply.route is None) == held, reply.decision.detail
    lower = dataclasses.replace(FLOW, settings={**FLOW.settings, "no_answer_concepts": {
        "not_customer": {"answers": 1, "handoffs": 0.5}}})
    reply = first_turn(Engine(lower), "hotline", "en", text)
    assert reply.route is not None and reply.route.queue == "urgent", reply.decision.detail


@pytest.mark.parametrize("text", ["전기자전거 수리 되나요", "제휴 카드로 결제 되나요", "무상 수리 지원은 몇 년이에요"])
def test_korean_words_that_look_like_a_non_customer_s_are_the_shop_s_questions(text):
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", text)
    assert reply.route is None and reply.decision.action != "clarify", reply.decision.detail


def test_jeju_is_not_heard_across_a_word_break():
    # Korean phrases match inside words and across spaces ("배 송"): 제주 (Jeju, an island with its own
    # delivery terms) was heard in 제 주문 (my order), and the order word with it was lost.
    heard = dict(KO_ENGINE.matchers["ko"].match("제 주문한 거 배송 얼마나 걸려요").heard)
    assert "delivery_terms" not in heard and heard.get("order_word") == "주문", heard
    assert dict(KO_ENGINE.matchers["ko"].match("제주도 배송 돼요").heard).get("delivery_terms") == "제주도"


def test_changing_the_subject_at_the_order_number_step_obeys_who_is_calling():
    conv = at("ask_order_number")
    reply = ENGINE.handle(conv, speech("I'm applying for a job, when are you open"))
    assert reply.decision.action == "clarify" and "no answer for it here" in reply.decision.detail, \
        reply.decision.detail
    conv = at("ask_order_number")
    reply = without(FLOW, "no_answer_concepts").handle(conv, speech("I'm applying for a job, when are you open"))
    assert reply.decision.intent == "opening_hours", reply.decision.detail


@pytest.mark.parametrize("engine, flow, text", [
    (ENGINE, FLOW, "can you price match on delivery"),
    (KO_ENGINE, KO_FLOW, "다른 데서 더 싸게 팔면 가격 맞춰 줘요"),
])
def test_the_shop_s_matters_the_flow_does_not_serve_get_no_routine_answer(engine, flow, text):
    # A price-match question leans weakly to the delivery answer: the words say the flow has no
    # answer for it (concept unserved), so the caller is asked once and then reaches a person.
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    if engine is ENGINE:
        assert "heard unserved ('price match'): no answer for it here" in reply.decision.detail
        # Holding back nothing (answers 0), the classifier's weak lean is the answer.
        holds_nothing = {**flow.no_answer_concepts, "unserved": {"answers": 0, "handoffs": 0}}
        engine = Engine(dataclasses.replace(flow, settings={**flow.settings, "no_answer_concepts": holds_nothing}))
        assert first_turn(engine, flow.id, "en", text).decision.intent == "shipping"


@pytest.mark.parametrize("engine, flow, text, lift", [
    (ENGINE, FLOW, "the dash cam in my car is broken", "products ('dash cam')"),
    (ENGINE, FLOW, "the charger in my car has stopped working", "products ('charger')"),
    (KO_ENGINE, KO_FLOW, "자동차에 단 블랙박스가 고장 났어요", "products ('블랙박스')"),
    # An errand the shop's device fails to do is a fault (errands: unless products).
    (ENGINE, FLOW, "the tablet won't let me call my mum on video", "products ('tablet')"),
])
def test_the_shop_s_product_beside_what_it_does_not_sell_is_the_shop_s_matter(engine, flow, text, lift):
    # not_sold's and errands' `unless`: a product of the shop's named too lifts the hold, and the
    # detail says so.
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.intent == "warranty_repair", reply.decision.detail
    assert f"beside {lift}: the shop's own matter" in reply.decision.detail
    without_lift = {c: {**bars, "unless": [u for u in bars["unless"] if u != "products"]}
                    for c, bars in flow.no_answer_concepts.items()}
    held = Engine(dataclasses.replace(flow, settings={**flow.settings, "no_answer_concepts": without_lift}))
    if "from you" not in text:
        assert first_turn(held, flow.id, flow.languages[0], text).decision.action == "clarify"


def test_a_concept_that_lifts_a_hold_hides_nothing_and_is_no_feature():
    # 충전기 (a charger) is one of the shop's products and still a charger to the safety concepts.
    matcher = KO_ENGINE.matchers["ko"]
    text = "충전기가 너무 뜨거워요"
    heard = dict(matcher.match(text).heard)
    assert heard.get("products") == "충전기" and "device_power" in heard, heard
    assert "# products" not in matcher._features(text)


@pytest.mark.parametrize("engine, flow, text, concept", [
    # A device named leans to the warranty answer; how to set it up is no fault.
    (ENGINE, FLOW, "how do i set up the wifi on my new hp laptop", "how_to"),
    (ENGINE, FLOW, "how do i pair my watch with my phone", "how_to"),
    (KO_ENGINE, KO_FLOW, "태블릿 화면을 티비에 미러링 하고 싶어요", "how_to"),
    # A gearbox, a jacket, a bike, the rent: the warranty, returns or payment answer is the shop's,
    # not theirs (no routine answer at any confidence).
    (ENGINE, FLOW, "my car's gearbox is grinding, is that covered by the warranty", "not_sold"),
    (ENGINE, FLOW, "my leather jacket's zip broke, can i get my money back", "not_sold"),
    (KO_ENGINE, KO_FLOW, "자전거 체인이 끊어졌는데 보증 수리 돼요", "not_sold"),
    (KO_ENGINE, KO_FLOW, "월세 카드로 낼 수 있어요", "not_sold"),
    # A phone assistant's errands and what a chemist sells: a time or "late" is no opening hours
    # or late order here.
    (ENGINE, FLOW, "ring my mum and tell her i'll be late for tea", "errands"),
    (ENGINE, FLOW, "who's the prime minister these days, i've lost track", "errands"),
    (KO_ENGINE, KO_FLOW, "토요일 아침 여덟시에 알람 맞춰 줘", "errands"),
    (ENGINE, FLOW, "can you deliver cough medicine to my mum", "not_sold"),
])
def test_what_the_flow_has_no_answer_for_gets_no_routine_answer(engine, flow, text, concept):
    # Asked once, then a person; when the concept holds nothing back, the same words get a routine
    # answer. (It stays a no-answer concept, so the classifier learns the same: as a feature, the
    # errands and general questions would teach it "out of scope" by themselves.)
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    assert f"heard {concept} (" in reply.decision.detail
    plain = {**flow.no_answer_concepts, concept: {"answers": 0, "handoffs": 0, "unless": []}}
    settings = {k: v for k, v in flow.settings.items() if k != "answer_nearest"}   # nor words new to it
    plain = Engine(dataclasses.replace(flow, settings={**settings, "no_answer_concepts": plain}))
    answered = first_turn(plain, flow.id, flow.languages[0], text).decision
    assert answered.intent is not None and answered.action != "clarify", answered.detail


@pytest.mark.parametrize("text", ["do you stock vinyl record players or just speakers",
                                  "the new speaker used to connect fine but now it drops the wifi"])
def test_speakers_and_connecting_a_device_are_no_request_to_talk(text):
    # "speak*" heard speakers, "connect*" a device's connection, as asking for a person.
    heard = dict(ENGINE.matchers["en"].match(text).heard)
    assert "talk" not in heard, heard


@pytest.mark.parametrize("engine, flow, text, intent", [
    (ENGINE, FLOW, "can I send back a kettle I got in the sale", "return_refund"),
    (KO_ENGINE, KO_FLOW, "세일 때 산 청소기 반품 돼요", "return_refund"),
    # Found by an operator's trial: "in the sale", 품절 and 재고가 were unserved words and held these.
    (ENGINE, FLOW, "is delivery free on items bought in the sale", "shipping"),
    (KO_ENGINE, KO_FLOW, "품절이라고 나오는데 제 주문은 언제 배송돼요", "order_status"),
    (KO_ENGINE, KO_FLOW, "재고가 없으면 환불해 주나요", "return_refund"),
    # A fault in how-to words is a fault (how_to holds below 0.9).
    (ENGINE, FLOW, "my soundbar won't connect to the telly any more", "warranty_repair"),
    (ENGINE, FLOW, "the hoover has no suction at all now", "warranty_repair"),
    (KO_ENGINE, KO_FLOW, "이어폰이 갑자기 연결이 안 돼요", "warranty_repair"),
    # Words of things the shop does not sell that customers say beside their own orders and payments
    # (an operator's trial): they stay out of not_sold.
    (ENGINE, FLOW, "my delivery is due tomorrow but the lift is broken, can it be left at the concierge",
     "order_status"),
    (ENGINE, FLOW, "can i tap my card to pay in the shop", "payment_methods"),
    (ENGINE, FLOW, "my internet is down so i can't check the tracking, where's my order", "order_status"),
    (KO_ENGINE, KO_FLOW, "엘리베이터 없는 5층인데 배송비 추가로 드나요", "shipping"),
    (KO_ENGINE, KO_FLOW, "휴대폰 요금으로 결제할 수 있어요?", "payment_methods"),
    (KO_ENGINE, KO_FLOW, "수리 맡긴 거 제 차례는 언제쯤이에요", "warranty_repair"),
    # Another business named in passing: the classifier does not lean out of scope (elsewhere_concepts'
    # bar), so it is the shop's own question.
    (ENGINE, FLOW, "the refund went back to my bank card last week but I can't see it", "return_refund"),
    # Tradespeople come up beside appliances ("my plumber fitted it"): not another business's words.
    (ENGINE, FLOW, "my dishwasher is leaking do i need a plumber or can you fix it", "warranty_repair"),
    (ENGINE, FLOW, "my fridge broke and all my groceries went off", "warranty_repair"),
    # An errand or a medicine in passing, not asked for (an operator's trial of round 12's lists).
    (ENGINE, FLOW, "what time do you close tonight, i want to pop in after picking up my medicine",
     "opening_hours"),
    (ENGINE, FLOW, "when does the store open tomorrow, i've set an alarm so i can be first in", "opening_hours"),
    (KO_ENGINE, KO_FLOW, "내일 매장 몇 시 오픈이에요 알람 맞춰 놓고 일찍 가려고요", "opening_hours"),
    (KO_ENGINE, KO_FLOW, "휴대폰 알람 맞춰 놨는데 소리가 안 나요", "warranty_repair"),
    # ... and an errand mentioned, not asked for (a reviewer's): errands holds below 0.95 only.
    (ENGINE, FLOW, "i set my alarm for six to be in for the delivery and nobody came, where is my order",
     "order_status"),
    (KO_ENGINE, KO_FLOW, "남편한테 문자 보내 놨는데 배송 언제 와요", "order_status"),
    # 출발 (set off): has the delivery left yet.
    (KO_ENGINE, KO_FLOW, "냉장고 이십일에 온다더니 출발은 했어요", "order_status"),
])
def test_a_routine_question_in_the_words_of_a_hold_is_answered(engine, flow, text, intent):
    # unserved and how_to hold back a routine answer only below their `answers` confidence (0.9);
    # not_sold holds only its own phrases; another business's words need the classifier's lean.
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is None and reply.decision.intent == intent, reply.decision.detail


def test_a_complaint_about_a_matter_the_flow_does_not_serve_is_still_urgent():
    # unserved holds back no handoff (handoffs 0): a broken price-match promise is a complaint.
    reply = first_turn(ENGINE, "hotline", "en", "your staff said they'd price match it and then just walked off")
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == "complaint", \
        reply.decision.detail


def test_a_wall_mounted_tv_that_fell_and_nearly_hit_someone_is_a_safety_hazard():
    # Found by an operator's trial: "fell" made it a warranty question (0.93).
    reply = first_turn(ENGINE, "hotline", "en", "the tv you mounted on my wall fell off and nearly hit my child")
    assert reply.route is not None and reply.route.reason == "safety_hazard" and reply.route.queue == "urgent", \
        reply.decision.detail


NEW_TO_IT = ["the strap on my old wind up watch broke", "my kitchen tap keeps dripping, do you send a plumber out"]


@pytest.mark.parametrize("text", NEW_TO_IT)
def test_words_unlike_every_training_sentence_of_the_intent_get_no_routine_answer(text):
    # The classifier leans to a routine answer (the warranty, the delivery answer), but nothing the
    # intent was taught is like these words and they name none of the shop's products: asked once,
    # then a person. Without the setting, the same words get the answer.
    reply = first_turn(ENGINE, "hotline", "en", text)
    assert reply.route is None and reply.decision.action == "clarify", reply.decision.detail
    assert "unlike what it answers" in reply.decision.detail, reply.decision.detail
    answered = first_turn(without(FLOW, "answer_nearest"), "hotline", "en", text).decision
    assert answered.intent in ("warranty_repair", "shipping") and answered.action != "clarify", answered.detail
    # Said again in other words that are new to it as well: a person (not understood), not a loop.
    conv = at("welcome")
    ENGINE.handle(conv, speech(text))
    other = next(t for t in NEW_TO_IT if t != text)
    second = ENGINE.handle(conv, speech(other))
    assert second.route is not None and second.route.reason == "not_understood", second.decision.detail


@pytest.mark.parametrize("text, intent", [
    # New words, but the shop's own product: the matter is the shop's.
    ("the vacuum has lost its suction completely even with a clean filter", "warranty_repair"),
    # A recognizer's grammar phrase said alone is the intent's own word, however short.
    ("crashes", "warranty_repair"),
    ("american express", "payment_methods"),
])
def test_new_words_about_the_shop_s_products_or_its_own_phrases_are_still_answered(text, intent):
    reply = first_turn(ENGINE, "hotline", "en", text)
    assert reply.route is None and reply.decision.intent == intent, reply.decision.detail
    m = ENGINE.matchers["en"].match(text)
    assert m.nearest < FLOW.answer_nearest["below"] or m.nearest == 1.0


@pytest.mark.parametrize("text", [
    "the driver was swearing at me on my own doorstep because he couldnt find parking",
    "the installer scratched my kitchen floor putting the dishwasher in and just shrugged at me",
    "honestly your customer service is a joke, three emails and not one reply",
    "your engineer came four hours late and i'd taken the whole day off for him",
    "stood at the till in your shop for half an hour and nobody served me",
    "the woman on your website chat closed the chat on me while i was still typing",
    "설치기사가 신발 신고 들어와서 바닥을 다 긁어 놓고 갔어요",
])
def test_what_the_shop_s_people_did_to_the_caller_is_a_complaint(text):
    # No word of complaint: someone of the shop's (staff) and what they did (misconduct), or "a joke".
    engine, flow = (ENGINE, FLOW) if text.isascii() else (KO_ENGINE, KO_FLOW)
    reply = first_turn(engine, flow.id, flow.languages[0], text)
    assert reply.route is not None and reply.route.queue == "urgent" and reply.route.reason == "complaint", \
        reply.decision.detail


def test_an_order_number_read_out_in_korean_is_no_job_ad():
    # 구 (nine) + 인데 read as 구인 (hiring): the caller was held back as a job seeker.
    reply = first_turn(KO_ENGINE, "hotline_ko", "ko", "주문번호 칠 삼 이 오 일 구인데 지금 어디쯤인지 알 수 있을까요")
    assert reply.route is None and reply.decision.intent == "order_status", reply.decision.detail
    heard = dict(KO_ENGINE.matchers["ko"].match("혹시 거기 매장 직원 구인하나요").heard)
    assert heard.get("not_customer") == "구인하", heard


@pytest.mark.parametrize("text", [
    "will the driver carry it in or just leave it in the rain",
    "the salesman threw in a free case but it wasn't in the box",
    "does the driver take the old fridge away or is it just dumped somewhere",
    "the installer walked away with my old washer, is there a fee for that",
])
def test_what_a_driver_may_do_is_no_misconduct(text):
    # Found by a reviewer: "in the rain", "threw", "dumped", "walked away" alone made questions about
    # a delivery or an installation into complaints by the rule staff + misconduct.
    heard = dict(ENGINE.matchers["en"].match(text).heard)
    assert "staff" in heard and "misconduct" not in heard, heard


def test_money_taken_off_a_caller_who_bought_nothing_is_money_safety():
    # EN val5's miss: "taken ... off me" and "haven't bought anything" were no concept words, so it
    # was asked again. Someone who is only waiting to buy is no such caller.
    reply = first_turn(ENGINE, "hotline", "en",
                       "you took sixty quid off my card last week and i haven't bought anything from you since march")
    assert reply.route is not None and reply.route.reason == "fraud_security" and reply.route.queue == "urgent", \
        reply.decision.detail
    heard = dict(ENGINE.matchers["en"].match("is the new kettle any good, i haven't bought one yet").heard)
    assert "not_mine" not in heard, heard
