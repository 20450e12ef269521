"""Which words for a person the small Korean model hears in espeak-ng's voice, at each step of a
flow given that step's grammar (docs/speech.md, "Words for a person, measured").

    python -m bench.person_words [flow.yaml] [word,word,...] [runs] [step,step,...]
"""
import sys

from ivr.flows.engine import Engine
from ivr.flows.loader import load_flow
from ivr.media.audio import silence
from ivr.simulate.speaker import synthesize
from ivr.speech import grammar, models
from ivr.speech.recognizer import Recognizer

WORDS = "상담원,상담사,직원,사람,담당자,상담원 연결,상담사 연결,사람 연결,직원 연결,통화 연결"


def main(argv):
    flow = load_flow(argv[1] if len(argv) > 1 else "flows/hotline_ko.yaml")
    words = (argv[2] if len(argv) > 2 else WORDS).split(",")
    runs = int(argv[3]) if len(argv) > 3 else 5
    only = argv[4].split(",") if len(argv) > 4 else None
    engine = Engine(flow)
    model = models.load(models.model_path("ko", "/nonexistent"))
    audio = {w: silence(300) + synthesize(w, "ko") + silence(500) for w in words}
    for step in flow.steps.values():
        if step.type not in ("menu", "ask") or (only and step.name not in only):
            continue
        phrases, open_ = grammar.for_step(flow, engine.expect(step.name, "ko"), "ko")
        rec = Recognizer(model, "ko")
        print(step.name, "open" if open_ else "directed", len(grammar.in_vocabulary(phrases, rec.in_vocab)))
        for w in words:
            got = []
            for _ in range(runs):
                rec.listen(phrases, open_)
                rec.accept(audio[w])
                heard = rec.final()
                got.append(f"{heard.text}({heard.source[:1]})")
            print("   ", w, "->", ", ".join(got))


if __name__ == "__main__":
    main(sys.argv)
