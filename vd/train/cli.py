"""`vd train`: one stage from the command line; `python -m vd.train train …` is the same command, for
`accelerate launch` (DDP / DeepSpeed / FSDP over several GPUs, or several CPU processes)."""

from __future__ import annotations

import argparse
import os
import sys

from vd.core import registry
from vd.core.config import ConfigError, load_config
from vd.core.run import RunError, RunRecord
from vd.judge.base import JudgingFailed
from vd.train.common import is_main
from vd.train.runner import check_steps, train_stage

# What a user's input can cause: printed as one `error:` line (exit status 2), never a traceback.
# What `vd` reports as one error line (exit 2): the user's input or state, not a bug of ours.
USER_ERRORS = (ConfigError, RunError, FileNotFoundError, JudgingFailed)
# Warnings about TRL's and the tokenizers' internals that a user of `vd` cannot act on (TRL's experimental
# PPO/CPO imports, the tokenizers' fork notice); a value the user set stays.
QUIET_ENVIRONMENT = {"TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}


def quiet_environment() -> None:
    """Set QUIET_ENVIRONMENT, where the user has not; before TRL is imported (it reads it on import)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def register_cli(subparsers) -> None:
    """Add `train` to the `vd` command."""
    p = subparsers.add_parser("train", help="train one post-training stage (" + ", ".join(
        registry.STAGES[s].title for s in registry.TRAINABLE) + ")",
        description="Train one stage; runs live in <runs-dir>/<size>/<run name>/.")
    p.add_argument("--size", default="tiny", help="params/<size>.yaml, or a params file (default: tiny)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params value, e.g. --set dpo.beta=0.2 (repeatable)")
    p.add_argument("--stage", required=True, help=f"one of {', '.join(registry.TRAINABLE)}")
    p.add_argument("--data", required=True, help=f"SFT: {', '.join(registry.SFT_DATA)}; preference stages: "
                                                 f"{', '.join(registry.PREFERENCE_CHOICES)}")
    p.add_argument("--from", dest="from_run", help="the finished SFT run a preference stage starts from (name or path)")
    p.add_argument("--run-name",
                   help="one folder name (letters, digits, -_.~); default: <stage>-<data>[-from-<sft run>]")
    p.add_argument("--runs-dir", default="runs", help="default: runs")
    p.add_argument("--max-steps", type=int, help="total steps of the stage, overriding the params (PPO: updates)")
    p.add_argument("--stop-after", type=int, help="stop at this step (with a checkpoint), leaving the run resumable")
    p.add_argument("--no-resume", action="store_true", help="start an unfinished run again from step 0")
    p.add_argument("--overwrite", action="store_true", help="retrain even a complete run")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    check_steps(args.max_steps, args.stop_after)  # before the params are read: nothing else to wait for
    cfg = load_config(args.size, args.set)
    run = train_stage(cfg, args.stage, args.data, from_run=args.from_run, run_name=args.run_name,
                      runs_dir=args.runs_dir, resume=not args.no_resume, max_steps=args.max_steps,
                      overwrite=args.overwrite, stop_after=args.stop_after)
    if is_main():
        record = RunRecord.read(run)
        print(f"{record.root}: {'complete' if record.complete else 'stopped'}, "
              f"{len(record.checkpoints) - 1} checkpoints of {record.total_steps} steps")
    return 0


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    parser = argparse.ArgumentParser(prog="vd")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
