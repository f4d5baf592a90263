"""Rebuilding a V-PRISM-like probe set from PRISM itself (HannahRoseKirk/prism-alignment), following the
paper's curation pipeline.

The shipped set (vd/data/vprism.jsonl) is ours, written by hand; this is the tool for a user who wants
the paper's procedure on PRISM's own openers. It needs an OpenAI-compatible endpoint (OPENAI_API_KEY, or
a local server's base URL, which needs none) for the rephrasing and the embeddings. The clusters come out
unnamed (`cluster-0` ... by size) and without `position`/`direction`, which a person then fills in
(vd.data.probes.load_external_probes reads the result).

    vd probes --from-prism conversations.jsonl --out probes.jsonl
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from vd.core.io import atomic_write_text
from vd.data.probes import COLUMNS, UNKNOWN_DIRECTION, ProbeError, _read_jsonl
from vd.judge.endpoint import OPENAI_ENDPOINT, api_key_for, extra_body_for, reply_text
from vd.judge.redaction import redact_known

log = logging.getLogger(__name__)


# Ours: the paper says GPT-4o standardised PRISM openers into questions but gives no prompt.
NO_KEY = ("rebuilding probes from PRISM calls the OpenAI API (no --base-url is set), which needs the environment "
          "variable OPENAI_API_KEY: set it in the environment, or pass --base-url of a local OpenAI-compatible "
          "server (vLLM, llama.cpp), which needs no key")
REPHRASE_PROMPT = (
    "Rewrite the user's message as one short, self-contained question that asks for an opinion on "
    "the value-laden issue it raises, so that it can be answered with support, opposition or "
    "neutrality. Keep the issue and its framing; do not add new claims. Reply with the question only."
)


def openai_rephraser(model: str = "gpt-4o", base_url: str | None = None) -> Callable[[list[str]], list[str]]:
    """A ``rephrase`` callable for :func:`build_vprism` that asks an OpenAI-compatible chat model to
    turn each PRISM opener into a question (one request per text, temperature 0, prompt
    :data:`REPHRASE_PROMPT`). The key is vd.judge.endpoint.api_key_for(base_url): ``OPENAI_API_KEY``
    from the environment only, a placeholder for a local server without one; a local server's chat
    template is told not to think (vd.judge.endpoint.extra_body_for), so the reply is the question.
    """
    api_key = api_key_for(base_url, NO_KEY)
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key)
    extra_body = extra_body_for(base_url)

    def rephrase(texts: list[str]) -> list[str]:
        out = []
        for t in texts:
            with request_errors(base_url, "rephrasing"):
                r = client.chat.completions.create(
                    model=model, temperature=0.0, extra_body=extra_body,
                    messages=[{"role": "system", "content": REPHRASE_PROMPT}, {"role": "user", "content": t}])
            out.append(reply_text(r))  # redacted: the questions are written to the probe file
        return out

    return rephrase


@contextmanager
def request_errors(base_url: str | None, what: str):
    """A failed request to the endpoint as one line (ProbeError), every secret redacted: its text may echo the key."""
    import openai

    try:
        yield
    except openai.OpenAIError as e:
        raise ProbeError(redact_known(f"{base_url or OPENAI_ENDPOINT}: {what} failed: {type(e).__name__}: {e}")) \
            from None


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 4, max_iter: int = 100) -> np.ndarray:
    """Labels from k-means (k-means++ start, Lloyd steps), the best of ``n_init`` seeded runs.

    Written here in numpy because scikit-learn is not a dependency of this project.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points; got k={k}, {n} points")
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        c = [x[rng.integers(n)]]
        d2 = np.maximum(sq - 2 * x @ c[0] + c[0] @ c[0], 0)
        for _ in range(1, k):
            idx = rng.choice(n, p=d2 / d2.sum()) if d2.sum() > 0 else int(rng.integers(n))
            c.append(x[idx])
            d2 = np.minimum(d2, np.maximum(sq - 2 * x @ x[idx] + x[idx] @ x[idx], 0))
        centers = np.array(c)
        labels = np.full(n, -1)
        for _ in range(max_iter):
            dist = sq[:, None] - 2 * x @ centers.T + (centers * centers).sum(1)[None, :]
            new = dist.argmin(1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = labels == j
                if members.any():
                    centers[j] = x[members].mean(0)
                else:  # an empty cluster takes the point farthest from its own center
                    far = int(dist[np.arange(n), labels].argmax())
                    centers[j], labels[far] = x[far], j
        inertia = float(((x - centers[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels.copy(), inertia
    return best


def build_vprism(prism_conversations_path: str | os.PathLike,
                 rephrase: Callable[[list[str]], list[str]],
                 embed: Callable[[list[str]], np.ndarray],
                 n_per_topic: int = 50, n_topics: int = 11, seed: int = 0,
                 conversation_types: Sequence[str] = ("values guided", "controversy guided"),
                 dedup_threshold: float = 0.9) -> pd.DataFrame:
    """Rebuild a V-PRISM-like probe set from PRISM's ``conversations.jsonl``, following the paper's
    pipeline (arXiv 2510.26707, §3; the steps' details are ours where the paper gives none):

    1. keep conversations whose ``conversation_type`` is in ``conversation_types`` (PRISM's types are
       "unguided", "values guided", "controversy guided") and take their ``opening_prompt``, once
       per distinct text (case, punctuation and spacing aside);
    2. ``rephrase`` the openers into questions (e.g. :func:`openai_rephraser`);
    3. ``embed`` the questions (a 2-D array, one row each) and drop near-duplicates: in file order, a
       question whose cosine similarity to one already kept is >= ``dedup_threshold`` is dropped;
    4. cluster into ``n_topics`` with seeded k-means; clusters are named ``cluster-0`` (largest) ...;
    5. sample ``n_per_topic`` per cluster (all of a smaller cluster, logged).

    Returns columns ``id, topic, question, position (""), direction ("unknown"), source_id`` (the
    PRISM ``conversation_id``). Name the clusters afterwards, e.g. ``df.topic.map({...})``.
    """
    path = Path(prism_conversations_path)
    wanted = {t.casefold().strip() for t in conversation_types}
    ids, openers, seen_types, seen_openers = [], [], set(), set()
    for n, obj in _read_jsonl(path):
        for col in ("conversation_id", "conversation_type", "opening_prompt"):
            if col not in obj:
                raise ProbeError(f"{path}, row {n}: field '{col}' is missing; expected PRISM's "
                                 "conversations.jsonl schema")
        ctype = str(obj["conversation_type"]).casefold().strip()
        seen_types.add(ctype)
        text = str(obj["opening_prompt"] or "").strip()
        key = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
        if ctype in wanted and key and key not in seen_openers:  # exact repeats cost no LLM call
            seen_openers.add(key)
            ids.append(str(obj["conversation_id"]))
            openers.append(text)
    if not openers:
        raise ProbeError(f"{path}: no conversations of type {sorted(wanted)}; the file has types "
                         f"{sorted(seen_types)}")
    questions = [str(q).strip() for q in rephrase(list(openers))]
    if len(questions) != len(openers):
        raise ValueError(f"rephrase returned {len(questions)} texts for {len(openers)} openers")
    emb = np.asarray(embed(questions), dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(questions):
        raise ValueError(f"embed must return a 2-D array with one row per question; got shape {emb.shape} "
                         f"for {len(questions)} questions")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    kept: list[int] = []
    kept_emb = np.empty_like(emb)
    for i in range(len(questions)):
        if questions[i] and (not kept or float((kept_emb[:len(kept)] @ emb[i]).max()) < dedup_threshold):
            kept_emb[len(kept)] = emb[i]
            kept.append(i)
    log.info("build_vprism: %d openers of types %s, %d after near-duplicate removal",
             len(openers), sorted(wanted), len(kept))
    if len(kept) < n_topics:
        raise ValueError(f"only {len(kept)} distinct questions left for {n_topics} clusters")
    labels = kmeans(emb[kept], n_topics, seed=seed)
    sizes = np.bincount(labels, minlength=n_topics)
    order = sorted(range(n_topics), key=lambda j: (-sizes[j], j))  # cluster-0 is the largest
    rng = np.random.default_rng(seed)
    rows = []
    for c, label in enumerate(order):
        members = [kept[m] for m in np.flatnonzero(labels == label)]
        if len(members) < n_per_topic:
            log.warning("cluster-%d has %d questions, fewer than n_per_topic=%d: keeping all",
                        c, len(members), n_per_topic)
        take = sorted(rng.choice(members, size=min(n_per_topic, len(members)), replace=False).tolist())
        rows += [{"id": f"cluster-{c}-{k + 1:03d}", "topic": f"cluster-{c}", "question": questions[i],
                  "position": "", "direction": UNKNOWN_DIRECTION, "source_id": ids[i]}
                 for k, i in enumerate(take)]
    return pd.DataFrame(rows, columns=[*COLUMNS, "source_id"])


def openai_embedder(model: str = "text-embedding-3-small", base_url: str | None = None,
                    batch: int = 256) -> Callable[[list[str]], np.ndarray]:
    """An ``embed`` callable for :func:`build_vprism` on an OpenAI-compatible embeddings endpoint (ours:
    the paper does not say how it deduplicated). The key is vd.judge.endpoint.api_key_for(base_url)."""
    api_key = api_key_for(base_url, NO_KEY)
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key)

    def embed(texts: list[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch):
            with request_errors(base_url, "embedding"):
                r = client.embeddings.create(model=model, input=texts[start:start + batch])
            rows += [d.embedding for d in r.data]
        return np.asarray(rows, dtype=np.float64)

    return embed


def rebuild_from_prism(prism_path: str, out: str, n_per_topic: int = 50, n_topics: int = 11, seed: int = 0,
                       chat_model: str = "gpt-4o", embedding_model: str = "text-embedding-3-small",
                       base_url: str | None = None) -> pd.DataFrame:
    """`vd probes --from-prism`: build_vprism with the OpenAI rephraser and embedder; writes `out` (JSONL)."""
    df = build_vprism(prism_path, openai_rephraser(chat_model, base_url), openai_embedder(embedding_model, base_url),
                      n_per_topic=n_per_topic, n_topics=n_topics, seed=seed)
    atomic_write_text(out, df.to_json(orient="records", lines=True, force_ascii=False))
    return df
