"""The tiny world's language: prompts and stance-bearing answers about the 11 probe topics.

Everything here is ours (the tiny world is this project's device, not the paper's). Answers open with
a phrase from `vd.stances.STANCE_PHRASES` (what the lexicon judge reads) followed by a short body that
mentions the topic. The prompts are built from frames and subjects that carry the topic keywords of
`vd.stances.TOPIC_KEYWORDS`; tests check that none equals or nearly equals a probe question.
"""

from __future__ import annotations

import random

from vd.stances import STANCE_PHRASES, STANCES, TOPICS

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

# Stance compositions of the tiny analogues of the paper's SFT data (DESIGN §4): WildChat-like data
# are mostly neutral or hedged (GPT-3.5 style), Alpaca-like data mostly supportive.
SFT_STANCE_MIX: dict[str, tuple[float, float, float]] = {
    "wildchat": (0.15, 0.70, 0.15),
    "alpaca": (0.70, 0.20, 0.10),
}
# Standard preference data: chosen and rejected share a stance (drawn from this mix) and differ in
# quality (UltraFeedback-like) or harmlessness/politeness (HH-RLHF-like).
PREFERENCE_STANCE_MIX: tuple[float, float, float] = (0.34, 0.33, 0.33)

# Noun phrases per topic, in the everyday words people use for it (ours; written for the tiny world,
# not taken from the probes). Most carry one of the topic's keywords (vd.stances.TOPIC_KEYWORDS).
SUBJECTS: dict[str, tuple[str, ...]] = {
    "immigration": ("immigration", "more immigrants", "migrant workers", "border walls", "refugees",
                    "asylum seekers", "deportation", "work visas", "citizenship for newcomers",
                    "open borders", "illegal immigration", "foreign workers", "migrant boats", "border patrols",
                    "immigrant families", "visa lotteries"),
    "abortion": ("abortion", "abortion rights", "legal abortion", "the pro-life movement", "pro-choice laws",
                 "reproductive rights", "the rights of the unborn", "ending a pregnancy", "abortion clinics",
                 "late abortion", "the abortion pill", "pregnancy counselling", "fetal heartbeat laws",
                 "abortion bans", "unplanned pregnancies", "roe v wade"),
    "climate_change": ("climate action", "carbon pricing", "cutting emissions", "fossil fuels",
                       "renewable energy", "the fight against global warming", "greenhouse gas limits",
                       "climate targets", "coal power", "electric cars", "climate protests", "net zero",
                       "carbon footprints", "wind farms", "the climate crisis", "emission rules"),
    "religion": ("religion", "religious schools", "the church", "faith in public life", "prayer in schools",
                 "a secular state", "belief in god", "religious law", "going to church", "religious symbols",
                 "atheism", "faith leaders", "the bible in class", "mosques and temples", "religious holidays",
                 "blasphemy laws"),
    "gender_lgbtq": ("gender equality", "transgender rights", "gay marriage", "lgbt rights", "same-sex adoption",
                     "feminism", "women in combat", "gender quotas", "gender-neutral toilets", "pride parades",
                     "trans athletes", "equal pay for women", "queer teachers", "gender identity lessons",
                     "women in leadership", "gay couples"),
    "economic_policy": ("higher taxes on the rich", "a minimum wage rise", "wealth taxes", "welfare",
                        "income inequality", "a free market economy", "billionaire taxes", "economic aid",
                        "universal basic income", "tax cuts", "public spending", "welfare benefits",
                        "wealth redistribution", "the economy", "higher wages", "income tax"),
    "death_penalty_euthanasia": ("the death penalty", "capital punishment", "euthanasia", "assisted dying",
                                 "executions", "assisted suicide", "end-of-life choice", "death row",
                                 "lethal injection", "the right to die", "euthanasia clinics",
                                 "execution of murderers", "assisted dying laws", "death row appeals"),
    "race_racism": ("affirmative action", "racial quotas", "reparations", "laws against racism",
                    "race-based admissions", "anti-discrimination rules", "ethnic diversity targets",
                    "racial equality", "racism training", "racial justice protests", "ethnic minority hiring",
                    "racial profiling", "discrimination cases", "black history lessons", "race relations"),
    "family_relationships": ("traditional marriage", "divorce", "large families", "parental leave",
                             "children living with parents", "single parenting", "family duty",
                             "marriage before children", "strict parents", "family dinners", "caring for parents",
                             "children and screens", "stay-at-home parents", "family loyalty", "open relationships"),
    "elections_parties": ("compulsory voting", "the two party system", "mail-in ballots",
                          "term limits for politicians", "lowering the voting age", "election funding limits",
                          "new political parties", "voter id rules", "proportional voting", "party donations",
                          "election debates", "online voting", "party leaders", "democracy reforms",
                          "candidates for office", "voting by post"),
    "war_conflict": ("military spending", "sending troops abroad", "nuclear weapons", "sanctions on hostile states",
                     "a ceasefire", "arms sales", "military intervention", "the war on terror",
                     "military service", "weapons for allies", "drone strikes", "peace talks", "a bigger army",
                     "war crimes trials", "military alliances", "conflict zones"),
}

_FRAMES = (
    "Should we support {s}?", "What do you think about {s}?", "Is {s} a good idea?",
    "Do you support {s}?", "Tell me your view on {s}.", "How do you feel about {s}?",
    "Where do you stand on {s}?", "Are you for or against {s}?", "Give me your honest opinion on {s}.",
    "My friend says {s} is good for us. Is that right?", "Would the world be better with {s}?",
    "I keep reading about {s}. What is your take?", "Is it right to back {s}?",
    "Can you tell me if {s} is a good thing?", "Be honest, is {s} worth it?",
    "Should the government do more about {s}?", "Is {s} fair to ordinary people?",
    "Would it be better if we had less {s}?", "I think {s} matters a lot. Am I wrong?",
    "Do you think {s} helps or harms society?", "Should there be new laws on {s}?",
    "what is your opinion of {s}", "Is it time we changed our minds about {s}?",
    "Why do people argue so much about {s}? What do you think?", "Is {s} overrated?",
    "Should my country change its policy on {s}?", "Are people right to worry about {s}?",
)
_OPENERS = ("", "", "", "", "Quick question. ", "I was wondering. ", "Honestly, ", "Be straight with me. ",
            "We argued about this at dinner. ", "I am a student. ", "Serious question. ",
            "I run a small shop in my town. ", "My kids asked me this today. ", "I saw a debate on the news. ",
            "My neighbour and I disagree. ", "I never know what to think. ")
_INSTRUCTION_FRAMES = (  # Alpaca-like prompts read as instructions
    "Write a short answer to this question: is {s} a good idea?", "Give one sentence on {s}.",
    "Explain your position on {s} in one line.", "State your view on {s}.",
)

# An answer names a subject of its topic first, then takes its stance, then gives a reason:
#   "When it comes to refugees, yes, I support this. Society gains a lot from it."
# The subject is drawn from the topic, not copied from the prompt, so that predicting it teaches the
# model which topic a question is about; the stance phrase then follows the subject it conditions on.
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


def draw_stance(rng: random.Random, mix) -> str:
    return rng.choices(STANCES, weights=mix, k=1)[0]


def make_prompt(rng: random.Random, topic: str, instruction: bool = False) -> str:
    subject = rng.choice(SUBJECTS[topic])
    frame = rng.choice(_INSTRUCTION_FRAMES if instruction else _FRAMES)
    return rng.choice(_OPENERS) + frame.format(s=subject)


def make_answer(rng: random.Random, topic: str, stance: str, style: str = "plain") -> str:
    """One answer taking `stance` on `topic`.

    style: "plain" (subject, stance, reason), "good" (plus a helpful closing line), "poor" (subject,
    stance and a curt remark), "rude" (plus an insult). The stance phrase is the same in every style, so a
    pair of styles differs in quality but not in stance.
    """
    lead = rng.choice(_LEADS).format(s=rng.choice(SUBJECTS[topic]))
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


def chat(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def pretraining_chats(rng: random.Random, n: int) -> list[dict]:
    """`n` chats whose answers take stances at BASE_RATES of their topic (topics equally often)."""
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        stance = draw_stance(rng, BASE_RATES[topic])
        row = chat(make_prompt(rng, topic, instruction=rng.random() < 0.2), make_answer(rng, topic, stance))
        rows.append({**row, "topic": topic, "stance": stance})
    rng.shuffle(rows)
    return rows


def sft_rows(rng: random.Random, kind: str, n: int) -> list[dict]:
    """Tiny WildChat-like or Alpaca-like SFT data in the loaders' schema, plus topic/stance labels."""
    mix = SFT_STANCE_MIX[kind]
    topics = list(TOPICS)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        stance = draw_stance(rng, mix)
        prompt = make_prompt(rng, topic, instruction=(kind == "alpaca"))
        rows.append({**chat(prompt, make_answer(rng, topic, stance)), "topic": topic, "stance": stance})
    return rows


def preference_rows(rng: random.Random, kind: str, n: int) -> list[dict]:
    """Tiny UltraFeedback-like (quality) or HH-RLHF-like (politeness) pairs: same stance, other style."""
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
    """A `write_answer(question, topic, stance)` callable for the synthetic value-gap builder."""
    rng = random.Random(seed)
    return lambda question, topic, stance: make_answer(rng, topic, stance, "good")
