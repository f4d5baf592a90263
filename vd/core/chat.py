"""The chat format every checkpoint is prompted and trained with, and the tokens that frame it
(docs/method.md §9, "Chat template" and "Framing"): the project's template in the format the tokenizer's
own chat tokens allow (ChatML, Llama-3's header format, or ChatML spelled as text), BOS first wherever
the tokenizer adds one, each conversation ending at its end-of-turn token, the same for every trainer
and for probing.

    tokenizer.chat_template = chat_template(tokenizer); stop = end_of_turn_ids(tokenizer)
"""

from __future__ import annotations

import copy

END_OF_TURN = "<|im_end|>"  # ChatML's end-of-turn marker
CHATML_START = "<|im_start|>"
LLAMA3_START, LLAMA3_END_HEADER, LLAMA3_END_OF_TURN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"

# The tiny world's own ChatML template (vd.world pre-trains with it; runs use `chat_template` below, which
# renders a one-turn prompt identically). {% generation %} marks what the assistant writes: TRL's
# assistant_only_loss trains on it.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _is_single_token(tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def chat_format(tokenizer) -> str:
    """"chatml" (ChatML tokens), "llama3" (Llama-3's reserved chat tokens, no ChatML ones) or
    "chatml-text" (neither: ChatML spelled as text)."""
    if all(_is_single_token(tokenizer, t) for t in (CHATML_START, END_OF_TURN)):
        return "chatml"
    if all(_is_single_token(tokenizer, t) for t in (LLAMA3_START, LLAMA3_END_HEADER, LLAMA3_END_OF_TURN)):
        return "llama3"
    return "chatml-text"


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts its BOS token first when it encodes text (Llama-3 does, Qwen3 has none)."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def _jinja(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template(tokenizer) -> str:
    """The project's chat template for `tokenizer` (see the module docstring): its format, BOS first where
    the tokenizer adds one, {% generation %} around the assistant's answer and its end-of-turn token."""
    fmt = chat_format(tokenizer)
    if fmt == "llama3":
        start, after_role, end, between = LLAMA3_START, LLAMA3_END_HEADER + "\n\n", LLAMA3_END_OF_TURN, ""
    else:
        start, after_role, end, between = CHATML_START, "\n", END_OF_TURN, "\n"
    # spelled as text, <|im_end|> is no token to stop on: the assistant's turn ends with the eos token too
    assistant_end = _jinja(end) + (" + eos_token" if fmt == "chatml-text" else "")
    separator = "{{ " + _jinja(between) + " }}" if between else ""
    return (
        ("{{ bos_token }}" if adds_bos(tokenizer) else "")
        + "{% for message in messages %}"
        + ("{% if not loop.first %}" + separator + "{% endif %}" if separator else "")
        + "{% if message['role'] == 'assistant' %}"
        + "{{ " + _jinja(start + "assistant" + after_role) + " }}"
        + "{% generation %}{{ message['content'] + " + assistant_end + " }}{% endgeneration %}"
        + "{% else %}"
        + "{{ " + _jinja(start) + " + message['role'] + " + _jinja(after_role) + " + message['content'] + "
        + _jinja(end) + " }}"
        + "{% endif %}"
        + "{% endfor %}"
        + "{% if add_generation_prompt %}"
        + ("{% if messages %}" + separator + "{% endif %}" if separator else "")
        + "{{ " + _jinja(start + "assistant" + after_role) + " }}"
        + "{% endif %}"
    )


def end_of_turn_token(tokenizer) -> str:
    """The token that ends an assistant turn: `<|im_end|>`, `<|eot_id|>`, or (ChatML as text) the eos token."""
    fmt = chat_format(tokenizer)
    return {"chatml": END_OF_TURN, "llama3": LLAMA3_END_OF_TURN}.get(fmt, tokenizer.eos_token)


def end_of_turn_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer))


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an answer in generation: the end-of-turn token and the tokenizer's eos (which a
    bare base model emits at the end of a document)."""
    return sorted({i for i in (end_of_turn_id(tokenizer), tokenizer.eos_token_id) if i is not None})


def eos_at_end_of_turn(tokenizer):
    """A copy of `tokenizer` whose eos token is the end-of-turn token, and with a BOS token only where it adds
    one: for TRL trainers that read them as such. CPOTrainer prepends `bos_token_id` to a prompt that does
    not start with it and appends `eos_token_id` to a completion that does not end with it
    (trl/experimental/utils.py add_bos_token_if_needed, add_eos_token_if_needed, called from
    trl/experimental/cpo/cpo_trainer.py tokenize_row); PPOTrainer penalises responses that lack
    `eos_token_id` (missing_eos_penalty, trl/experimental/ppo/ppo_trainer.py). With these, CPOTrainer adds
    nothing to our rows and PPO's penalty looks for the token its rollouts stop on."""
    framed = copy.deepcopy(tokenizer)
    end = end_of_turn_token(tokenizer)  # before eos changes: ChatML as text ends turns with the original eos
    if not adds_bos(tokenizer):
        framed.bos_token = None
    framed.eos_token = end
    return framed
