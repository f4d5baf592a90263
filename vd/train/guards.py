"""What keeps a stage from training garbage silently: preference pairs too long for the stage are left out
before any trainer sees them (and counted), a stage stops at the step its loss, gradient norm or weights
stop being finite, and a run whose final weights are not finite is never marked complete.

    rows = drop_long_pairs(rows, tokenizer, st.max_length)     # then count len(before) - len(rows)
    trainer.add_callback(stop_on_non_finite(cfg, "dpo", "dpo-x", fp16=False))
"""

from __future__ import annotations

import math
from pathlib import Path

from vd.core.config import Config, ConfigError
from vd.core.run import RunRecord


class NonFiniteTraining(ConfigError, RuntimeError):
    """A stage's loss, gradient norm or weights became NaN or infinite: the user's settings to change (learning
    rate, max_length, precision), printed by the `vd` command as one line."""


def pair_lengths(rows: list[dict], tokenizer) -> list[int]:
    """The longer of prompt + chosen and prompt + rejected, in tokens as DPO tokenises them (the chat
    template's tokens, trl/data_utils.py _tokenize called from trl/trainer/dpo_trainer.py _prepare_dataset)."""
    def tokens(key):
        chats = [r["prompt"] + r[key] for r in rows]
        return [len(ids) for ids in tokenizer.apply_chat_template(chats, tokenize=True, return_dict=True)["input_ids"]]

    return [max(c, r) for c, r in zip(tokens("chosen"), tokens("rejected"))] if rows else []


def drop_long_pairs(rows: list[dict], tokenizer, max_length: int) -> list[dict]:
    """The preference pairs whose prompt + chosen and prompt + rejected both fit `max_length` tokens (ours).

    TRL's trainers differ on a longer pair: DPOTrainer truncates it (dropping only a prompt that fills
    max_length), CPOTrainer cuts both completions to max_length minus the longer one, which leaves the
    shorter empty and SimPO's length-normalised log-probability 0/0 (trl/experimental/cpo/cpo_trainer.py
    tokenize_row), RewardTrainer drops it. Dropped here, every preference stage trains on the same pairs.
    """
    return [r for r, n in zip(rows, pair_lengths(rows, tokenizer)) if n <= max_length]


def fitting_pairs(rows: list[dict], tokenizer, stage: str, max_length: int) -> list[dict]:
    """drop_long_pairs, with an error naming `<stage>.max_length` where no pair fits."""
    kept = drop_long_pairs(rows, tokenizer, max_length)
    if rows and not kept:
        raise ConfigError(f"{stage}.max_length = {max_length}: no preference pair fits (the shortest takes "
                          f"{min(pair_lengths(rows, tokenizer))} tokens); raise it")
    return kept


def _watched(key: str, fp16: bool) -> bool:
    """The logged values that must stay finite: losses (PPO's `loss/...` too) and, but under fp16's loss
    scaling (which skips steps whose gradients overflow, as it should), the gradient norm."""
    return key in ("loss", "train_loss") or key.startswith("loss/") or (key == "grad_norm" and not fp16)


def stop_on_non_finite(cfg: Config, stage: str, label: str, fp16: bool):
    """A TrainerCallback that raises NonFiniteTraining at the first step whose trainable weights, or the first
    log whose loss or gradient norm, is not finite: before that step's checkpoint is saved (the Trainer calls
    on_step_end, then logs, then saves: transformers/trainer.py _inner_training_loop, _maybe_log_save_evaluate;
    TRL 1.12's PPOTrainer.train logs, calls on_step_end, then saves)."""
    import torch
    from transformers import TrainerCallback

    st = cfg.stage(stage)

    def stop(what: str, step: int):
        precision = ", train in bf16 rather than fp16 (a GPU with native bf16)" if fp16 else ""
        raise NonFiniteTraining(
            f"{label}: {what} at step {step} is not finite; training stopped, the run is left unfinished at its "
            f"last checkpoint. Lower {stage}.learning_rate (now {st.learning_rate:g}), check the data for pairs "
            f"near {stage}.max_length ({st.max_length}){precision}, then train it again with --overwrite")

    class StopOnNonFinite(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            params = [p for p in model.parameters() if p.requires_grad] if model is not None else []
            if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
                stop("a trainable weight", state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            bad = {k: v for k, v in (logs or {}).items()
                   if _watched(k, fp16) and isinstance(v, (int, float)) and not math.isfinite(v)}
            if bad:
                stop(", ".join(f"{k} = {v}" for k, v in bad.items()), state.global_step)

    return StopOnNonFinite()


def check_final_weights(record: RunRecord, stage: str) -> None:
    """Raise NonFiniteTraining where the run's final checkpoint holds a NaN or infinite weight: a run is never
    marked complete (nor merged, nor scored) with such weights."""
    import torch
    from safetensors import safe_open

    final = record.checkpoints[-1] if record.checkpoints else None
    folder = record.adapter_dir(final) if final is not None else None
    if folder is None:
        return
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if not torch.isfinite(f.get_tensor(name)).all():
                    raise NonFiniteTraining(
                        f"{record.root}: the final checkpoint ({final.adapter}) holds non-finite weights ({name}); "
                        f"the run is not complete. Lower {stage}.learning_rate or check the data for pairs near "
                        f"{stage}.max_length, then train it again with --overwrite")
