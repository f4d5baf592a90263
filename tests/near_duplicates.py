"""Near-duplicate questions: the check the tests run on the shipped probe set and synthetic prompts."""

import re
from collections.abc import Sequence
from itertools import combinations

# Function words ignored by the "words" similarity.
_STOPWORDS = frozenset(
    "a an the and or but of to in on at for by with from as is are was were be been being do does did "
    "have has had should would could can will shall may might must not no it its this that these those "
    "there their they them we our us you your i me my he she his her him who what which when where why "
    "how than then so if just also even ever any all every some more most much very really still about "
    "into over under after before because while only own same other such too whether up out like am".split())


def _features(text: str, kind: str) -> set[str]:
    low = text.lower()
    if kind == "chars":  # character 4-grams of the punctuation-stripped text
        s = " ".join(re.sub(r"[^a-z0-9 ]+", " ", low).split())
        return {s[i:i + 4] for i in range(max(1, len(s) - 3))}
    if kind == "words":  # content words, crudely stemmed to their first 5 letters
        return {w[:5] for w in re.findall(r"[a-z0-9]+", low) if w not in _STOPWORDS}
    raise ValueError(f"kind is {kind!r}; expected 'chars' or 'words'")


def near_duplicates(questions: Sequence[str], threshold: float = 0.8,
                    kind: str = "chars") -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, similarity)``, i < j, with Jaccard similarity >= ``threshold``, most similar first.

    ``kind="chars"`` compares character 4-grams (catches small edits: "16" / "sixteen"); ``"words"``
    compares content-word stems (catches added words and reordering). Dependency-free, O(n^2).
    """
    feats = [_features(q, kind) for q in questions]
    out = []
    for i, j in combinations(range(len(feats)), 2):
        union = feats[i] | feats[j]
        sim = len(feats[i] & feats[j]) / len(union) if union else 1.0
        if sim >= threshold:
            out.append((i, j, sim))
    return sorted(out, key=lambda t: (-t[2], t[0], t[1]))
