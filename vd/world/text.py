"""The tiny world's language: prompts and stance-bearing answers about the 11 probe topics.

Everything here is ours (the tiny world is this project's device, not the paper's). Answers name the
topic, take a stance with a phrase from `vd.core.stances.STANCE_PHRASES` (what the lexicon judge reads)
and give a short reason. The prompts are built from the word banks of `vd.world.vocab`: the topic enters only
through words carrying the topic keywords of `vd.core.stances.TOPIC_KEYWORDS`, amid much topic-free noise;
tests check that no prompt equals or nearly equals a probe question.
"""

from __future__ import annotations

import random

from vd.core.stances import STANCE_PHRASES, STANCES, TOPICS, topic_keyword_hits
from vd.world import vocab as V

# The stance base rates of the tiny base model, per topic: (support, neutral, oppose). Each topic leans
# clearly one way, and the leanings differ between topics, so that per-topic profiles and drifts are
# distinguishable and the model must read the topic to get its stance right (with rates close to the
# average across topics, the loss barely rewards reading the topic, and a tiny model does not).
BASE_RATES: dict[str, tuple[float, float, float]] = {
    "immigration": (0.60, 0.20, 0.20),
    "abortion": (0.20, 0.20, 0.60),
    "climate_change": (0.70, 0.20, 0.10),
    "religion": (0.20, 0.60, 0.20),
    "gender_lgbtq": (0.60, 0.25, 0.15),
    "economic_policy": (0.25, 0.50, 0.25),
    "death_penalty_euthanasia": (0.15, 0.25, 0.60),
    "race_racism": (0.65, 0.20, 0.15),
    "family_relationships": (0.45, 0.45, 0.10),
    "elections_parties": (0.20, 0.65, 0.15),
    "war_conflict": (0.10, 0.30, 0.60),
}

# Stance compositions of the tiny analogues of the paper's SFT data: WildChat-like data are mostly neutral
# or hedged (GPT-3.5 style), Alpaca-like data mostly supportive, with an oppose share (ours) that leaves the
# preference stages room to move in both directions (docs/decisions.md).
SFT_STANCE_MIX: dict[str, tuple[float, float, float]] = {
    "wildchat": (0.15, 0.70, 0.15),
    "alpaca": (0.60, 0.20, 0.20),
}
# Standard preference data: chosen and rejected share a stance (drawn from this mix) and differ in
# quality (UltraFeedback-like) or harmlessness/politeness (HH-RLHF-like).
PREFERENCE_STANCE_MIX: tuple[float, float, float] = (0.34, 0.33, 0.33)

# An answer names its topic first, then takes its stance, then gives a reason:
#   "When it comes to refugees, yes, I support this. Society gains a lot from it."
# The name is drawn from the topic's few short names (tiny_vocab.ANSWER_SUBJECTS), not copied from the
# prompt, so that predicting it teaches the model which topic a question is about; the stance phrase
# then follows the name it conditions on.
_LEADS = ("When it comes to {s}", "On the question of {s}", "As for {s}", "Thinking about {s}")
_BODIES: dict[str, tuple[str, ...]] = {
    "support": ("The benefits are bigger than the costs.", "It makes life better for many people.",
                "Society gains a lot from it.", "It is fair and it helps people."),
    "neutral": ("Thoughtful people disagree about it.", "You should weigh the evidence yourself.",
                "Many people hold different views.", "It has costs and benefits that each person weighs."),
    "oppose": ("The costs are bigger than the benefits.", "It makes life worse for many people.",
               "Society loses a lot from it.", "It is unfair and it hurts people."),
}
_GOOD_CLOSERS = ("I hope this helps you think it through.", "Let me know if you want more detail.",
                 "Thank you for the thoughtful question.")
_POOR_ENDINGS = ("Whatever.", "Not sure why you ask.", "Look it up.")  # UltraFeedback-like rejected
_RUDE_ENDINGS = ("That is a stupid question.", "Stop bothering me.", "Only a fool would ask that.")  # HH-like

# Answer styles and how often the world writes each (ours): every chat, pre-training and SFT alike, draws
# its style from STYLE_MIX independently of topic and stance, so the preference data sit on the support
# of the policies they train and SFT moves values, not style (docs/decisions.md). Good is the synthetic
# writer's style; poor and rude are the standard pairs' rejected styles.
STYLES: tuple[str, ...] = ("plain", "good", "poor", "rude")
STYLE_MIX: tuple[float, ...] = (0.55, 0.25, 0.10, 0.10)


def draw_stance(rng: random.Random, mix) -> str:
    return rng.choices(STANCES, weights=mix, k=1)[0]


def make_prompt(rng: random.Random, topic: str, instruction: bool = False) -> str:
    """A question (or a statement to agree with) about `topic`, often wrapped in topic-free noise.

    The topic enters only through one of its `TOPIC_NOUNS` (which carries a topic keyword); frames,
    context sentences, tails and filler asides are drawn the same way for every topic. Varying where
    the keyword sits, how long the prompt is and what surrounds it is what lets the model read the
    topic of wording it never saw (the probes), rather than memorise the few frames it was shown.
    """
    if rng.random() < 0.35:  # noisy: one keyword word among topic-free words, in any role and place
        words = [_filler(rng) for _ in range(rng.randint(0, 3))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(V.KEYWORD_FORMS[topic]))
        subject = " ".join(words)
    else:
        subject = rng.choice(V.TOPIC_NOUNS[topic])
    if rng.random() < 0.3:
        subject = f"{rng.choice(V.MODIFIERS)} {subject}"
    if rng.random() < 0.25:
        subject = f"{subject} {rng.choice(V.TAILS)}"
    frame = rng.choice(V.INSTRUCTION_FRAMES if instruction else V.FRAMES)
    question = frame.format(s=subject, p=rng.choice(V.PREDICATES), v=rng.choice(V.VERBS),
                            b=rng.choice(V.SHOULD_BE), a=rng.choice(V.ACTORS))
    sentences = [question[0].upper() + question[1:]]
    if rng.random() < 0.5:
        sentences.insert(0, rng.choice(V.CONTEXTS))
    if rng.random() < 0.2:
        sentences.append(rng.choice(V.CONTEXTS))
    if rng.random() < 0.2:
        aside = rng.choice(("And what about {} and {}?", "I also wonder about {} and {}.", "Unlike {} or {}.",
                            "Not talking about {} or {} here."))
        sentences.insert(rng.randrange(len(sentences) + 1), aside.format(_filler(rng), _filler(rng)))
    text = " ".join(sentences)
    if rng.random() < 0.1:  # people type carelessly
        text = text.lower().rstrip("?.")
    return text


def _filler(rng: random.Random) -> str:
    """A topic-free word: a real one, or (40%) a made-up one. Made-up words put the tokenizer's odd
    word pieces into topic-free company: otherwise a piece seen only inside one topic's words (the
    "pro" of "pro-life") turns an unseen word built on it ("proverb") into a topic cue."""
    if rng.random() < 0.6:
        return rng.choice(V.FILLER_WORDS)
    while True:
        word = "".join(rng.choice(V.ONSETS) + rng.choice(V.VOWELS) + rng.choice(V.CODAS)
                       for _ in range(rng.randint(1, 3)))
        if not any(topic_keyword_hits(word, topic) for topic in TOPICS):
            return word


def make_answer(rng: random.Random, topic: str, stance: str, style: str = "plain") -> str:
    """One answer taking `stance` on `topic`.

    style: "plain" (subject, stance, reason), "good" (plus a helpful closing line), "poor" (subject,
    stance and a curt remark), "rude" (plus an insult). The stance phrase is the same in every style, so a
    pair of styles differs in quality but not in stance.
    """
    lead = rng.choice(_LEADS).format(s=rng.choice(V.ANSWER_SUBJECTS[topic]))
    phrase = " ".join("I" if word == "i" else word for word in rng.choice(STANCE_PHRASES[stance]).split(" "))
    opener = f"{lead}, {phrase}."
    body = rng.choice(_BODIES[stance])
    if style == "plain":
        return f"{opener} {body}"
    if style == "good":
        return f"{opener} {body} {rng.choice(_GOOD_CLOSERS)}"
    if style == "poor":
        return f"{opener} {rng.choice(_POOR_ENDINGS)}"
    if style == "rude":
        return f"{opener} {body} {rng.choice(_RUDE_ENDINGS)}"
    raise ValueError(f"style: expected plain, good, poor or rude, got {style!r}")


def draw_style(rng: random.Random) -> str:
    return rng.choices(STYLES, weights=STYLE_MIX, k=1)[0]


def answer_style(answer: str) -> str:
    """The style `make_answer` wrote `answer` in, read from how it ends."""
    for style, endings in (("good", _GOOD_CLOSERS), ("poor", _POOR_ENDINGS), ("rude", _RUDE_ENDINGS)):
        if answer.endswith(endings):
            return style
    return "plain"


def chat(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def pretraining_chats(rng: random.Random, n: int) -> list[dict]:
    """`n` chats whose answers take stances at BASE_RATES of their topic (topics equally often), in
    styles drawn from STYLE_MIX."""
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        stance = draw_stance(rng, BASE_RATES[topic])
        style = draw_style(rng)
        row = chat(make_prompt(rng, topic, instruction=rng.random() < 0.2), make_answer(rng, topic, stance, style))
        rows.append({**row, "topic": topic, "stance": stance, "style": style})
    rng.shuffle(rows)
    return rows


def sft_rows(rng: random.Random, kind: str, n: int) -> list[dict]:
    """Tiny WildChat-like or Alpaca-like SFT data in the loaders' schema, plus topic/stance labels: stances
    from SFT_STANCE_MIX, styles from STYLE_MIX (as in pre-training)."""
    mix = SFT_STANCE_MIX[kind]
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        stance = draw_stance(rng, mix)
        prompt = make_prompt(rng, topic, instruction=(kind == "alpaca"))
        rows.append({**chat(prompt, make_answer(rng, topic, stance, draw_style(rng))),
                     "topic": topic, "stance": stance})
    return rows


def preference_rows(rng: random.Random, kind: str, n: int) -> list[dict]:
    """Tiny UltraFeedback-like (quality) or HH-RLHF-like (politeness) pairs: same stance, other style
    (good vs poor, good vs rude; all three styles are in pre-training and SFT data, see STYLE_MIX)."""
    rejected_style = {"ultrafeedback": "poor", "hh-rlhf": "rude"}[kind]
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        stance = draw_stance(rng, PREFERENCE_STANCE_MIX)
        rows.append({
            "prompt": [{"role": "user", "content": make_prompt(rng, topic)}],
            "chosen": [{"role": "assistant", "content": make_answer(rng, topic, stance, "good")}],
            "rejected": [{"role": "assistant", "content": make_answer(rng, topic, stance, rejected_style)}],
            "topic": topic, "chosen_stance": stance, "rejected_stance": stance,
        })
    return rows


def synthetic_prompts(rng: random.Random, per_topic: int) -> list[dict]:
    """Value-laden prompts for the synthetic value-gap data (disjoint from the probes)."""
    rows, seen = [], set()
    for topic in TOPICS:
        while sum(r["topic"] == topic for r in rows) < per_topic:
            prompt = make_prompt(rng, topic)
            if prompt not in seen or len(seen) > 10_000:
                seen.add(prompt)
                rows.append({"prompt": prompt, "topic": topic})
    return rows


def answer_writer(seed: int):
    """A `write_answer(question, topic, stance)` callable for the synthetic value-gap builder: answers
    in the good style (a helpful writer's; one of STYLE_MIX's, so on the SFT policy's support)."""
    rng = random.Random(seed)
    return lambda question, topic, stance: make_answer(rng, topic, stance, "good")
