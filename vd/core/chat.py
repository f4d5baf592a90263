"""The chat format every checkpoint is prompted and trained with: ChatML, and the token that ends a turn.

Every checkpoint of a run, the bare base model included, sees the same template. Base checkpoints ship
no chat template (or one they were never trained on), so with `model.chat_template: chatml` (the
default) the tokenizer gets this template; a base model at step 0 thus sees
`<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n` and continues from there.
"""

from __future__ import annotations

END_OF_TURN = "<|im_end|>"

# ChatML, with {% generation %} markers around what the assistant writes: TRL's assistant_only_loss
# uses them to train on answers only.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _is_single_token(tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def chatml_template(tokenizer) -> str:
    """CHATML_TEMPLATE for `tokenizer`. Where `<|im_end|>` is not a token of its own (Llama-3 base), every
    assistant turn ends with `<|im_end|>` followed by the tokenizer's end-of-sequence token, which the
    base model already knows: SFT teaches the model to emit it, and generation and PPO stop on it."""
    if _is_single_token(tokenizer, END_OF_TURN):
        return CHATML_TEMPLATE
    return CHATML_TEMPLATE.replace("'<|im_end|>' }}{% endgeneration %}", "'<|im_end|>' + eos_token }}{% endgeneration %}")


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn (for generation's eos_token_id)."""
    ids = {tokenizer.eos_token_id}
    token = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(token, int) and token != tokenizer.unk_token_id and token is not None:
        ids.add(token)
    return sorted(i for i in ids if i is not None)


def end_of_turn_id(tokenizer) -> int:
    """The token that ends an assistant turn: <|im_end|> where it is one token, else the tokenizer's eos."""
    token = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(token, int) and token is not None and token != tokenizer.unk_token_id:
        return token
    return tokenizer.eos_token_id
