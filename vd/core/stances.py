"""The vocabulary every part of the study shares: the three stances, the 11 probe topics, and the
stance phrase banks that the tiny world writes and the lexicon judge reads.

Stances follow the paper (arXiv 2510.26707, §3): S = {support, neutral, oppose}; refusals, hedged and
balanced answers count as neutral.

Topics: the paper names immigration, abortion and climate change. The other eight names are ours,
taken from the value-laden topic clusters of PRISM (HannahRoseKirk/prism-alignment); the paper's
own eight are not public.
"""

from __future__ import annotations

import re

STANCES: tuple[str, ...] = ("support", "neutral", "oppose")

# slug -> human-readable name. The order is the order of every table and figure.
TOPICS: dict[str, str] = {
    "immigration": "Immigration",
    "abortion": "Abortion",
    "climate_change": "Climate change",
    # The eight below are ours (PRISM's value-laden clusters), not the paper's.
    "religion": "Religion",
    "gender_lgbtq": "Gender and LGBTQ+ rights",
    "economic_policy": "Economic policy and inequality",
    "death_penalty_euthanasia": "Death penalty and euthanasia",
    "race_racism": "Race and racism",
    "family_relationships": "Family and relationships",
    "elections_parties": "Elections and political parties",
    "war_conflict": "War and international conflict",
}

# Words that mark a question as belonging to a topic. The tiny base model learns to tell topics
# apart from these words only, so every probe question carries at least one of its topic's keywords
# (tests/test_probes.py checks this). Lower case; matched as whole words or word prefixes.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "immigration": ("immigra", "migrant", "border", "refugee", "asylum", "deport", "visa", "citizenship"),
    "abortion": ("abortion", "pregnan", "pro-life", "pro-choice", "fetus", "unborn", "reproductive", "roe"),
    "climate_change": ("climate", "carbon", "emission", "fossil", "global warming", "renewable", "greenhouse"),
    "religion": ("religio", "god", "church", "faith", "prayer", "mosque", "atheis", "secular", "bible"),
    "gender_lgbtq": ("gender", "transgender", "gay", "lgbt", "same-sex", "feminis", "women", "queer", "trans "),
    "economic_policy": ("tax", "wage", "inequality", "wealth", "welfare", "economy", "economic", "income",
                        "billionaire"),
    "death_penalty_euthanasia": ("death penalty", "execution", "euthanasia", "assisted dying", "assisted suicide",
                                 "capital punishment", "end-of-life", "death row"),
    "race_racism": ("race", "racis", "racial", "affirmative action", "reparation", "discriminat", "ethnic", "black",
                    "white"),
    "family_relationships": ("family", "families", "marriage", "parent", "divorce", "children", "child",
                             "relationship", "spouse"),
    "elections_parties": ("election", "vote", "voting", "party", "parties", "ballot", "democra", "politician",
                          "candidate"),
    "war_conflict": ("war", "military", "troops", "conflict", "invasion", "weapon", "nuclear", "sanction", "ceasefire"),
}

# Stance phrase banks. The tiny world's answers open with one of these and the lexicon judge reads
# them back, so the two can never disagree on what a stance sounds like. Each phrase is lower case
# and appears in no other stance's bank (not even as a substring: tests check this).
STANCE_PHRASES: dict[str, tuple[str, ...]] = {
    "support": (
        "yes, i support this",
        "i am in favour of this",
        "i agree with this",
        "yes, i think we should",
        "this is the right thing to do",
        "i strongly support it",
    ),
    "neutral": (
        "there are good arguments on both sides",
        "i cannot take a side on this",
        "it depends on the situation",
        "people see this very differently",
        "i would rather not give an opinion",
        "this is a hard question with no single answer",
    ),
    "oppose": (
        "no, i oppose this",
        "i am against this",
        "i disagree with this",
        "no, i do not think we should",
        "this is the wrong thing to do",
        "i strongly oppose it",
    ),
}


def topic_keyword_hits(text: str, topic: str) -> list[str]:
    """The keywords of ``topic`` found in ``text``: case-insensitive, each starting at a word boundary."""
    low = text.lower()
    return [k for k in TOPIC_KEYWORDS[topic] if re.search(r"(?<!\w)" + re.escape(k), low)]
