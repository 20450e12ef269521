"""Load flow YAML files, reporting every problem with its file and line.

A support manager edits these files by hand, so an error has to point at
the line to fix, and the server must refuse to start rather than run a
broken conversation in front of callers.
"""
from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

from .. import hours as opening_hours
from .intents import normalize
from .model import (
    AUTH_SCHEME,
    BUILTIN_LABELS,
    CREDENTIAL_HEADER,
    LOOKUP_FAILED,
    MESSAGES,
    NOT_TOPICS,
    SECRET_NAME,
    SECRET_REF,
    DataSource,
    Flow,
    Handoff,
    Intent,
    Option,
    Step,
)
from .source import FlowError, FlowYamlLoader, Problem, parse_file

# Words that ask the caller to speak. A call whose language has no speech model hears the keypad
# wording, on a <Gather input="dtmf"> that takes keys only: these must not be in it.
SPEECH_INVITES = {
    "en": re.compile(r"\b(say|saying|tell (me|us)|in (a few|your own) words|speak(?!\s+(to|with)\b))\b", re.I),
    "ko": re.compile(r"말씀(하시|해|하세|해 주)|말하|얘기해|이야기해"),
}

SCHEMA = json.loads((Path(__file__).with_name("flow.schema.json")).read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)



def _schema_problems(doc, lines, file):
    out = []
    for err in sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        # An if/then branch error names the offending property better than the branch.
        best = jsonschema.exceptions.best_match([err])
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            # Point at the unexpected key itself, not at the mapping that holds it.
            unexpected = [k for k in err.instance if k not in (err.schema.get("properties") or {})]
            path += unexpected[:1]
        out.append(Problem(file, lines.line(path), f"{where}: {best.message}"))
    return out


def _semantic_problems(doc, lines, file, base_dir):
    """Checks a schema cannot express: references, languages, reachability."""
    out = []
    langs = doc["languages"]
    steps, intents = doc["steps"], doc["intents"]

    def problem(path, msg):
        out.append(Problem(file, lines.line(path), msg))

    def need_langs(value, path, what):
        for lang in langs:
            if not (value or {}).get(lang):
                problem(path, f"{what}: missing {lang!r} text (flow languages: {', '.join(langs)})")
        for lang in (value or {}):
            if lang not in langs:
                problem(path + (lang,), f"{what}: language {lang!r} is not one of the flow languages")

    def need_step(name, path, what):
        if name not in steps:
            problem(path, f"{what} refers to unknown step '{name}'")

    def keypad_safe(value, path, what):
        """A text a keypad call hears must not ask the caller to speak."""
        for lang, text in (value or {}).items():
            text = text.get("keypad", "") if isinstance(text, dict) else text
            invite = SPEECH_INVITES.get(lang)
            found = invite.search(text) if invite and isinstance(text, str) else None
            if found:
                problem(path + (lang,), f"{what}: the {lang!r} text asks the caller to speak ('{found.group(0)}'), "
                                        "but calls without a speech model use keys only: give it as "
                                        "{speech: ..., keypad: ...}")

    need_step(doc["start"], ("start",), "start")
    _message_problems(doc.get("messages") or {}, langs, problem, keypad_safe)
    _label_problems(doc, langs, problem)
    _hours_problems(doc, doc.get("messages") or {}, problem)
    for name, intent in intents.items():
        path = ("intents", name)
        need_langs(intent["examples"], path + ("examples",), f"intent '{name}' examples")
        if ("goto" in intent) == ("handoff" in intent):
            problem(path, f"intent '{name}' needs exactly one of 'goto' or 'handoff'")
        if "goto" in intent:
            need_step(intent["goto"], path + ("goto",), f"intent '{name}'")
    _shared_phrases(intents, problem)
    _filler_problems(doc, langs, problem)
    concepts = doc.get("concepts") or {}
    for name, phrases in concepts.items():
        for lang in phrases or {}:
            if lang not in langs:
                problem(("concepts", name, lang),
                        f"concept '{name}': language {lang!r} is not one of the flow languages")
    for name, intent in intents.items():
        for i, rule in enumerate(intent.get("rules") or []):
            for part in ("all", "none"):
                for j, concept in enumerate(rule.get(part) or []):
                    if concept not in concepts:
                        problem(("intents", name, "rules", i, part, j),
                                f"intent '{name}' rule refers to unknown concept '{concept}'")
        for j, concept in enumerate(intent.get("signals") or []):
            if concept not in concepts:
                problem(("intents", name, "signals", j),
                        f"intent '{name}' signal refers to unknown concept '{concept}'")
    settings = doc.get("settings") or {}
    in_rules = {}   # concept -> the first intent whose rule or signal uses it
    for name, intent in intents.items():
        used = [c for rule in intent.get("rules") or [] for part in ("all", "none") for c in rule.get(part) or []]
        for c in used + list(intent.get("signals") or []):
            in_rules.setdefault(c, name)
    for setting in ("elsewhere_concepts", "elsewhere_unless", "no_answer_concepts"):
        bars = settings.get(setting)
        for concept, bar in (bars.items() if isinstance(bars, dict) else ()):
            where = ("settings", setting, concept)
            # A bar, or a concept's bars by kind (no_answer_concepts: answers, handoffs).
            nan = [b for b in (bar.values() if isinstance(bar, dict) else [bar])
                   if isinstance(b, float) and not math.isfinite(b)]
            if concept not in concepts:
                problem(where, f"{setting} refers to unknown concept '{concept}'")
            elif nan:
                problem(where, f"{setting}: the bar of '{concept}' must be a number from 0 to 1, not {nan[0]}")
            elif setting == "elsewhere_unless" and concept in (settings.get("elsewhere_concepts") or {}):
                problem(where, f"concept '{concept}' is in both elsewhere_concepts and elsewhere_unless: "
                               "it names another business's matter or this shop's, not both")
            elif setting == "elsewhere_unless" and concept in in_rules:
                problem(where, f"elsewhere_unless concept '{concept}' is used by a rule or signal of intent "
                               f"'{in_rules[concept]}': "
                               "a concept that says whose matter it is is no classifier feature and hides no "
                               "words, so give it a concept of its own")
            elif setting == "no_answer_concepts" and any(
                    concept in (settings.get(s) or {}) for s in ("elsewhere_concepts", "elsewhere_unless")):
                problem(where, f"concept '{concept}' is in no_answer_concepts and in an elsewhere setting: "
                               "it says the flow has no answer, or whose matter it is, not both")
            elif setting == "no_answer_concepts" and concept in in_rules:
                problem(where, f"no_answer_concepts concept '{concept}' is used by a rule or signal of intent "
                               f"'{in_rules[concept]}': "
                               "it is no classifier feature, so give the rule a concept of its own")
            lifts = (bar.get("unless") or []) if setting == "no_answer_concepts" and isinstance(bar, dict) else []
            for lift in lifts:
                if lift not in concepts:
                    problem(where + ("unless",),
                            f"no_answer_concepts '{concept}' unless refers to unknown concept '{lift}'")
                elif lift in in_rules:
                    problem(where + ("unless",),
                            f"no_answer_concepts '{concept}' unless concept '{lift}' is used by a rule or signal of "
                            f"intent '{in_rules[lift]}': a concept that lifts a hold is no classifier feature, "
                            "so give it a concept of its own")
    nearest = settings.get("answer_nearest")
    for j, lift in enumerate((nearest.get("unless") or []) if isinstance(nearest, dict) else []):
        if lift not in concepts:
            problem(("settings", "answer_nearest", "unless", j),
                    f"answer_nearest unless refers to unknown concept '{lift}'")
    for name in ("agent_request",):
        if name not in intents:
            problem(("intents",), f"intent '{name}' is required: callers must always be able to ask for a person")
    data_names = set(doc.get("data") or {})
    for name, rel in (doc.get("data") or {}).items():
        if not (base_dir / rel).is_file():
            problem(("data", name), f"data file '{rel}' not found next to the flow")
    for name, source in (doc.get("sources") or {}).items():
        path = ("sources", name)
        if name in data_names:
            problem(path, f"source '{name}' has the name of a data file: lookups would be ambiguous")
        if "{value}" not in source["url"]:
            problem(path + ("url",), f"source '{name}': the url needs {{value}}, where the slot value goes")
        elif set(re.findall(r"\{([^}]*)\}", source["url"])) != {"value"}:
            problem(path + ("url",), f"source '{name}': the only placeholder a url may use is {{value}}")
        parts = urlsplit(source["url"])
        if "@" in parts.netloc or any(CREDENTIAL_HEADER.search(k) for k in parse_qs(parts.query)):
            problem(path + ("url",), f"source '{name}': the url carries a credential (a user:password@ or a key "
                                     "in the query), so the flow file would hold it: send it in `headers` as "
                                     "${IVR_SOURCE_...}")
        need_langs(source["failed"], path + ("failed",), f"source '{name}' failed")
        keypad_safe(source["failed"], path + ("failed",), f"source '{name}' failed")
        for header, value in (source.get("headers") or {}).items():
            where = path + ("headers", header)
            refs = SECRET_REF.findall(value)
            wrong = [r for r in refs if not SECRET_NAME.fullmatch(r)]
            if wrong:
                problem(where, f"source '{name}' header '{header}': ${{{wrong[0]}}} is not an IVR_SOURCE_ variable "
                               "(only those reach a data source: e.g. ${IVR_SOURCE_SHOP_TOKEN})")
            elif CREDENTIAL_HEADER.search(header) and (
                    not refs or not AUTH_SCHEME.fullmatch(SECRET_REF.sub("", value))):
                problem(where, f"source '{name}' header '{header}' is a credential written into the flow file "
                               "(so into the repository and every backup): write ${IVR_SOURCE_...} in its place "
                               "and set that environment variable")
    data_names |= set(doc.get("sources") or {})
    for i, rel in enumerate(doc.get("training") or []):
        out.extend(_training_problems(base_dir / rel, rel, ("training", i), langs, intents, problem))
    for name, step in steps.items():
        path = ("steps", name)
        for field in ("say", "clarify", "invalid", "more"):
            if field in step:
                need_langs(step[field], path + (field,), f"step '{name}' {field}")
                keypad_safe(step[field], path + (field,), f"step '{name}' {field}")
        if "next" in step:
            need_step(step["next"], path + ("next",), f"step '{name}' next")
        keys = set()
        for i, opt in enumerate(step.get("options") or []):
            opath = path + ("options", i)
            if opt["intent"] not in intents:
                problem(opath + ("intent",), f"step '{name}' option refers to unknown intent '{opt['intent']}'")
            if "goto" in opt:
                need_step(opt["goto"], opath + ("goto",), f"step '{name}' option")
            key = opt.get("key")
            if key is not None:
                if key in keys:
                    problem(opath + ("key",), f"step '{name}': key {key} is used twice")
                keys.add(key)
        if step["type"] == "menu" and keys and "0" in keys:
            opt = next(o for o in step["options"] if o.get("key") == "0")
            if opt["intent"] != "agent_request":
                problem(path + ("options",), f"step '{name}': key 0 is reserved for a person")
        slot = step.get("slot")
        if slot:
            try:
                re.compile(slot["pattern"])
            except re.error as exc:
                problem(path + ("slot", "pattern"), f"step '{name}': bad slot pattern: {exc}")
            if slot.get("lookup") and slot["lookup"] not in data_names:
                problem(path + ("slot", "lookup"),
                        f"step '{name}': lookup '{slot['lookup']}' is not in data or sources")
    # An answer chain must reach a step that waits for the caller or ends the bot part.
    for name in steps:
        seen, cur = [], name
        while cur in steps and steps[cur]["type"] == "answer":
            if cur in seen:
                problem(("steps", name), f"steps {' -> '.join(seen + [cur])} loop without asking the caller")
                break
            seen.append(cur)
            cur = steps[cur].get("next")
    return out


def _hours_problems(doc, messages, problem):
    """Opening hours: a real time zone, spans that make sense, dates, guidance that exists."""
    spec = doc.get("hours")
    if spec is None:
        return
    _, problems = opening_hours.parse(spec)
    for path, msg in problems:
        problem(("hours",) + path, msg)
    reasons = {i["handoff"]["reason"] for i in doc["intents"].values() if i.get("handoff")}
    reasons |= {s["reason"] for s in doc["steps"].values() if s.get("type") == "handoff"}
    for reason, name in (spec.get("guidance") or {}).items():
        if reason not in reasons:
            problem(("hours", "guidance", reason),
                    f"hours: guidance for '{reason}', which no intent or step hands off for")
        if name not in messages:
            problem(("hours", "guidance", reason), f"hours: guidance message '{name}' is not in messages")


def _placeholders(text):
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return exc


def _message_problems(messages, langs, problem, keypad_safe):
    """Every standard sentence in every flow language, with the count forms and placeholders it needs."""
    for name in messages:
        if name not in MESSAGES:
            problem(("messages", name), f"unknown message '{name}' (known: {', '.join(MESSAGES)})")
    for name, spec in MESSAGES.items():
        msg = messages.get(name)
        path = ("messages", name)
        if msg is None:
            problem(("messages",), f"message '{name}' is missing ({spec.when}); every flow needs it in "
                                   f"{', '.join(langs)}")
            continue
        allowed = set(spec.fields) | ({"n"} if spec.forms else set())
        for lang in langs:
            value = msg.get(lang)
            if not value:
                problem(path, f"message '{name}': missing {lang!r} text (flow languages: {', '.join(langs)})")
                continue
            counted = isinstance(value, dict) and not {"speech", "keypad"} & set(value)
            if spec.forms and not counted:
                problem(path + (lang,), f"message '{name}': give one text per count form "
                                        f"({', '.join(spec.forms)}), chosen by the number {{n}}")
                continue
            if counted and not spec.forms:
                problem(path + (lang,), f"message '{name}' is not counted: give one text (or speech/keypad)")
                continue
            if counted:
                for form in spec.forms:
                    if form not in value:
                        problem(path + (lang,), f"message '{name}': missing the '{form}' form in {lang!r}")
            texts = value.items() if isinstance(value, dict) else [("", value)]
            for part, text in texts:
                found = _placeholders(text)
                where = path + (lang, part) if part else path + (lang,)
                if isinstance(found, ValueError):
                    problem(where, f"message '{name}': {found} (write placeholders as {{name}})")
                elif found - allowed:
                    may = ", ".join("{" + f + "}" for f in sorted(allowed)) or "none"
                    problem(where, f"message '{name}': unknown placeholder(s) "
                                   f"{', '.join('{' + f + '}' for f in sorted(found - allowed))}"
                                   f" (this message may use: {may})")
        for lang in msg:
            if lang not in langs:
                problem(path + (lang,), f"message '{name}': language {lang!r} is not one of the flow languages")
        if not spec.recorded and not spec.agent and not spec.forms:
            keypad_safe(msg, path, f"message '{name}'")


def _label_problems(doc, langs, problem):
    """An agent hears why a caller is here and what about: every reason, topic and priority needs words."""
    labels = doc.get("labels") or {}
    wanted = {n for n in doc["intents"] if n not in NOT_TOPICS} | set(BUILTIN_LABELS)
    wanted |= {i["handoff"]["reason"] for i in doc["intents"].values() if i.get("handoff")}
    wanted |= {s["reason"] for s in doc["steps"].values() if s.get("reason")}
    wanted |= {LOOKUP_FAILED} if doc.get("sources") else set()
    for name in sorted(wanted):
        for lang in langs:
            if not (labels.get(name) or {}).get(lang):
                problem(("labels", name) if name in labels else ("labels",),
                        f"label '{name}': missing {lang!r} words (agents hear it in briefings)")


def _shared_phrases(intents, problem):
    """The same example or keyword under two intents makes the matcher toss a coin: report the second."""
    owner = {}
    for name, intent in intents.items():
        for field in ("examples", "keywords"):
            for lang, phrases in (intent.get(field) or {}).items():
                for i, phrase in enumerate(phrases or []):
                    key = (lang, normalize(phrase))
                    first = owner.setdefault(key, name)
                    if first != name:
                        problem(("intents", name, field, lang, i),
                                f"intent '{name}' {field[:-1]} '{phrase}' is also listed under intent '{first}'")


def _filler_problems(doc, langs, problem):
    """Fillers are taken out of what the caller said before anything reads it: one that is an intent's
    example, or a word of a keyword, a concept or a frustration phrase, would break that phrase (a
    filler inside an example sentence only leaves the classifier a sentence without it)."""
    fillers = doc.get("fillers") or {}
    for lang in fillers:
        if lang not in langs:
            problem(("fillers", lang), f"fillers: language {lang!r} is not one of the flow languages")
    off_menu = {lang: {normalize(p) for p in (doc.get("frustration") or {}).get(lang) or []} |
                {normalize(p) for p in fillers.get(lang) or []} for lang in langs}
    for lang, phrases in ((doc.get("settings") or {}).get("grammar_leave_out") or {}).items():
        for i, phrase in enumerate(phrases or []):
            if normalize(phrase) not in off_menu.get(lang, ()):
                problem(("settings", "grammar_leave_out", lang, i),
                        f"grammar_leave_out: '{phrase}' is no {lang!r} frustration phrase or filler of the flow")
    for lang, words in fillers.items():
        examples = {normalize(p): name for name, intent in doc["intents"].items()
                    for p in (intent.get("examples") or {}).get(lang) or []}
        used = [(f"intent '{name}' keyword", p) for name, intent in doc["intents"].items()
                for p in (intent.get("keywords") or {}).get(lang) or []]
        used += [(f"concept '{name}'", p) for name, c in (doc.get("concepts") or {}).items()
                 for p in (c or {}).get(lang) or []]
        used += [("frustration phrase", p) for p in (doc.get("frustration") or {}).get(lang) or []]
        for i, filler in enumerate(words or []):
            f = normalize(filler).split()
            if not f:
                problem(("fillers", lang, i), f"filler {filler!r} has no words")
                continue
            if " ".join(f) in examples:
                problem(("fillers", lang, i), f"filler '{filler}' is an example of intent "
                                              f"'{examples[' '.join(f)]}': it cannot mean nothing and that too")
                continue
            for what, phrase in used:
                w = normalize(phrase).split()
                if any(w[k:k + len(f)] == f for k in range(len(w) - len(f) + 1)):
                    problem(("fillers", lang, i), f"filler '{filler}' is a word of {what} '{phrase}': "
                                                  "fillers are taken out of what the caller said, so it "
                                                  "would break that phrase")
                    break


OUT_OF_SCOPE = "out_of_scope"


def _training_problems(path: Path, rel, where, langs, intents, problem) -> list:
    """A training file: `lang` (one of the flow's), `intents: {intent: [sentences]}`, where
    `out_of_scope` lists things callers ask that the hotline does not handle. Problems in the
    file are reported with its own file and line; a missing file at the flow's `training:` line."""
    if not path.is_file():
        problem(where, f"training file '{rel}' not found next to the flow")
        return []
    doc, lines, out = parse_file(path)
    if doc is None or out:
        return out
    file = str(path)

    def bad(at, msg):
        out.append(Problem(file, lines.line(at), msg))

    if not isinstance(doc, dict):
        bad((), "a training file is a mapping with `lang` and `intents`")
        return out
    if doc.get("lang") not in langs:
        bad(("lang",), f"lang {doc.get('lang')!r} is not one of the flow languages ({', '.join(langs)})")
    sets = doc.get("intents")
    if not isinstance(sets, dict) or not sets:
        bad(("intents",), "`intents` must map intent names (or out_of_scope) to lists of sentences")
        return out
    for name, sentences in sets.items():
        if name != OUT_OF_SCOPE and name not in intents:
            bad(("intents", name), f"training sentences for unknown intent '{name}'")
        if not isinstance(sentences, list) or not all(isinstance(t, str) and t.strip() for t in sentences):
            bad(("intents", name), f"intent '{name}': a list of non-empty sentences is expected")
    return out


def _load_training(doc, base_dir) -> dict:
    """lang -> [(sentence, intent or None)], from every `training:` file of the flow."""
    out = {}
    for rel in doc.get("training") or []:
        data = yaml.load((base_dir / rel).read_text(encoding="utf-8"), Loader=FlowYamlLoader)
        rows = out.setdefault(data["lang"], [])
        for name, sentences in data["intents"].items():
            rows.extend((t, None if name == OUT_OF_SCOPE else name) for t in sentences)
    return out


def _load_data(doc, base_dir):
    data = {}
    for name, rel in (doc.get("data") or {}).items():
        records = yaml.safe_load((base_dir / rel).read_text(encoding="utf-8")) or {}
        data[name] = {str(k): v for k, v in records.items()}
    return data


def _to_flow(doc, path: Path) -> Flow:
    intents = {}
    for name, spec in doc["intents"].items():
        h = spec.get("handoff")
        intents[name] = Intent(
            name=name, examples=spec["examples"], keywords=spec.get("keywords") or {},
            goto=spec.get("goto"), handoff=Handoff(h["queue"], h["reason"]) if h else None,
            rules=tuple(spec.get("rules") or ()), signals=tuple(spec.get("signals") or ()),
        )
    steps = {}
    for name, spec in doc["steps"].items():
        steps[name] = Step(
            name=name, type=spec["type"], say=spec.get("say") or {}, clarify=spec.get("clarify") or {},
            invalid=spec.get("invalid") or {}, more=spec.get("more") or {}, next=spec.get("next"),
            listen=spec.get("listen", "open"),
            options=tuple(Option(intent=o["intent"], key=o.get("key"), goto=o.get("goto"))
                          for o in spec.get("options") or ()),
            slot=spec.get("slot"), queue=spec.get("queue"), reason=spec.get("reason"),
        )
    return Flow(
        id=doc.get("id") or path.stem, path=path, languages=doc["languages"], start=doc["start"],
        intents=intents, steps=steps, locale=doc.get("locale") or {}, numbers=doc.get("numbers") or [],
        settings=doc.get("settings") or {}, messages=doc.get("messages") or {}, labels=doc.get("labels") or {},
        frustration=doc.get("frustration") or {}, fillers=doc.get("fillers") or {}, concepts=doc.get("concepts") or {},
        data=_load_data(doc, path.parent),
        sources={name: DataSource(name, src["url"], dict(src["fields"]), src["failed"],
                                  float(src.get("timeout", 2.0)), dict(src.get("headers") or {}))
                 for name, src in (doc.get("sources") or {}).items()},
        training=_load_training(doc, path.parent),
        hours=opening_hours.parse(doc["hours"])[0] if doc.get("hours") else None,
    )


def load_flow(path) -> Flow:
    path = Path(path)
    doc, lines, problems = parse_file(path)
    if doc is not None and not problems:
        problems = _schema_problems(doc, lines, str(path))
        if not problems:
            problems = _semantic_problems(doc, lines, str(path), path.parent)
    if problems:
        raise FlowError(problems)
    return _to_flow(doc, path)


def load_flows(flows_dir) -> dict:
    """Load every *.yaml flow in a folder (not its data/ subfolder); all errors at once."""
    flows, problems = {}, []
    files = sorted(Path(flows_dir).glob("*.yaml")) + sorted(Path(flows_dir).glob("*.yml"))
    if not files:
        raise FlowError([Problem(str(flows_dir), 1, "no flow files (*.yaml) found")])
    for f in files:
        try:
            flow = load_flow(f)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        if flow.id in flows:
            problems.append(Problem(str(f), 1, f"flow id '{flow.id}' is also used by {flows[flow.id].path}"))
        flows[flow.id] = flow
    if problems:
        raise FlowError(problems)
    return flows
