"""The tiny world's datasets written in the formats of the hub datasets they stand in for, so that the
pipeline reads them with the same loaders (vd.data.loaders) as WildChat, Alpaca, UltraFeedback and
HH-RLHF themselves: a tiny run exercises the real-size data path.

Each record keeps the world's labels (`topic`, `stance`, `chosen_stance`, `rejected_stance`) beside
the hub fields; the loaders read only the hub fields.
"""

from __future__ import annotations

LABELS = ("topic", "stance", "chosen_stance", "rejected_stance")
HUB_FORMATS = ("wildchat", "alpaca", "ultrafeedback", "hh-rlhf")


def _labels(row: dict) -> dict:
    return {k: row[k] for k in LABELS if k in row}


def _hh_transcript(messages: list[dict]) -> str:
    speaker = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in messages)


def to_hub(name: str, row: dict) -> dict:
    """One world row (SFT `messages` or preference `prompt/chosen/rejected`) in the hub format of `name`."""
    if name == "wildchat":  # allenai/WildChat-1M: a conversation with moderation fields
        return {"conversation": row["messages"], "language": "English", "toxic": False, "redacted": False,
                **_labels(row)}
    if name == "alpaca":  # tatsu-lab/alpaca: instruction, input, output
        user, answer = row["messages"]
        return {"instruction": user["content"], "input": "", "output": answer["content"], **_labels(row)}
    if name == "ultrafeedback":  # HuggingFaceH4/ultrafeedback_binarized: two full message lists
        prompt = row["prompt"]
        return {"prompt": prompt[-1]["content"], "chosen": prompt + row["chosen"],
                "rejected": prompt + row["rejected"], **_labels(row)}
    if name == "hh-rlhf":  # Anthropic/hh-rlhf: two "\n\nHuman: … \n\nAssistant: …" transcripts
        return {"chosen": _hh_transcript(row["prompt"] + row["chosen"]),
                "rejected": _hh_transcript(row["prompt"] + row["rejected"]), **_labels(row)}
    raise ValueError(f"no hub format for tiny dataset {name!r}; expected one of {', '.join(HUB_FORMATS)}")
