"""Command line: `vd world`, `vd reproduce`, `vd publish`, `vd train`, `vd score`, `vd probes`, `vd plan`.

The commands' modules are imported when a command runs, not here: `vd --help` stays instant, and
`main` sets the environment that quiets TRL and the tokenizers before either is imported.

Every command takes `--size` (a params file) and `--set key=value` overrides (dotted keys). A bad input
(params, override, data or probe file, run folder) ends in one line, `error: <file or key>: <what is
expected>`, and exit status 2; so does a full disk or a folder that cannot be written (the file, and what to do).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from vd.core.config import load_config, load_stored_config, params_path

VD_HOME_ELSEWHERE = "set $VD_HOME to a writable folder"
# Per command: the argument naming where it writes, what a rerun keeps, and how to write elsewhere
# (a command not here, `vd train`: its runs folder and vd.core.run.write_error's own words).
WRITES = {
    "score": ("run", "what was generated and judged is cached: scoring goes on where it stopped",
              "copy the run's <runs>/<size>/ folder somewhere writable and pass --run there"),
    "reproduce": ("runs_dir", "finished runs are reused",
                  "pass another --runs-dir and --figures-dir (or set $VD_RUNS_DIR and $VD_FIGURES_DIR)"),
    "publish": ("figures_dir", None, "publish from a writable clone of the repository"),
    "probes": ("out", None, "pass another --out"),
    "world": (None, None, VD_HOME_ELSEWHERE),
    "plan": (None, None, VD_HOME_ELSEWHERE),
}


def world_summary(world) -> str:
    """A readable summary of a tiny world: where it lives, its sizes, and its stance compositions."""
    from vd.core.stances import STANCES, TOPICS
    from vd.world.text import BASE_RATES, SFT_STANCE_MIX

    m = world.manifest
    lines = [f"tiny world at {world.root}",
             f"  model: Qwen3 architecture, {m['n_params']:,} parameters; "
             f"tokenizer: byte-level BPE, {m['vocab_size']} tokens",
             f"  built in {m['build_seconds']} s; final pre-training loss {m['final_pretrain_loss']:.3f}",
             "  datasets (rows): " + ", ".join(f"{k} {v['rows']}" for k, v in m["datasets"].items()),
             "  base-model stance base rates (support / neutral / oppose), intended vs. in the pre-training chats:"]
    pretrain = world.load_rows("pretrain")
    for topic in TOPICS:
        counts = collections.Counter(r["stance"] for r in pretrain if r["topic"] == topic)
        total = sum(counts.values())
        built = " / ".join(f"{counts[s] / total:.2f}" for s in STANCES)
        lines.append(f"    {topic:26s} {' / '.join(f'{x:.2f}' for x in BASE_RATES[topic])}   built {built}")
    lines.append("  SFT data stance mix (support / neutral / oppose), intended vs. built:")
    for name, mix in SFT_STANCE_MIX.items():
        counts = collections.Counter(r["stance"] for r in world.load_rows(name))
        total = sum(counts.values())
        built = " / ".join(f"{counts[s] / total:.2f}" for s in STANCES)
        lines.append(f"    {name:10s} {' / '.join(f'{x:.2f}' for x in mix)}   built {built}")
    for name in ("ultrafeedback", "hh-rlhf"):
        rows = world.load_rows(name)
        same = sum(r["chosen_stance"] == r["rejected_stance"] for r in rows)
        lines.append(f"    {name:13s} {same}/{len(rows)} pairs share the stance of chosen and rejected")
    return "\n".join(lines)


def cmd_world(args) -> int:
    from vd.world import ensure_world

    cfg = load_config(args.size, args.set)
    print(world_summary(ensure_world(cfg)))
    return 0


def cmd_probes(args) -> int:
    from vd.data.prism import rebuild_from_prism

    df = rebuild_from_prism(args.from_prism, args.out, n_per_topic=args.per_topic, n_topics=args.topics,
                            seed=args.seed, base_url=args.base_url)
    print(f"wrote {len(df)} questions in {df['topic'].nunique()} clusters to {args.out}; name the clusters, "
          "fill in position and direction, then set probes.file to it")
    return 0


def cmd_score(args) -> int:
    from vd.score.scoring import read_run, score_run

    run = read_run(args.run)
    # the config the run was trained under (a user's own params file need not exist here any more);
    # --size replaces it (a params file of the run's own size), --set applies on top of either
    cfg = load_config(args.size, args.set) if args.size else load_stored_config(run.config_path, args.set)
    j = cfg.judge
    judge = "lexicon" if j.kind == "lexicon" else f"{j.kind} {j.model}" + (f" at {j.base_url}" if j.base_url else "")
    print(f"scoring {args.run} under {cfg.source}{' (the config it was trained under)' if not args.size else ''}"
          f"{' with ' + ', '.join(args.set) if args.set else ''}; judge {judge} (prompt {j.prompt_version})",
          flush=True)
    scores = score_run(args.run, cfg, progress=True)
    profile, drift = scores
    overall = drift[(drift["topic"] == "overall") & (drift["eta_reading"] == "extremum95")]
    print(f"scored {profile['step'].nunique()} checkpoints of {args.run} with judge {scores.judge_label}; "
          f"wrote judgments.csv, profile.csv, drift.csv in {scores.folder}")
    if not drift["complete"].all():
        print(f"INCOMPLETE run: M is the drift up to {drift['end_fraction'].iloc[0]:.0%} of the stage's steps")
    print(overall[["stance", "M", "M_ci_low", "M_ci_high", "resolution", "eta"]].to_string(index=False))
    return 0


def cmd_publish(args) -> int:
    from vd.study.notebook import output_dirs, repo_root
    from vd.study.summary import publish

    root = repo_root()
    cfg = load_config(args.size)
    runs, figures = output_dirs(root, cfg.size, False, args.runs_dir or "", args.figures_dir or "")
    readme = Path(cfg.source).resolve() == params_path("tiny").resolve()  # the shipped tiny study is the README's
    out = publish(cfg.size, root, figures, runs / cfg.size / "notebooks", readme=readme)
    print(f"published {cfg.size}'s summary, executed notebooks and figure to {out}"
          + ("; README.md's results and cost blocks rewritten" if readme else ""))
    return 0


def cmd_reproduce(args) -> int:
    from vd.study.reproduce import reproduce

    return reproduce(args.size, only=args.only, smoke=args.smoke, overrides=",".join(args.set),
                     runs_dir=args.runs_dir or "", figures_dir=args.figures_dir or "", log_output=args.log_output)


def cmd_plan(args) -> int:
    import json

    from vd.study.plan import plan, render

    result = plan(load_config(args.size, args.set))
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--size", default="tiny", help="params/<size>.yaml (default: tiny)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a params value, e.g. --set dpo.beta=0.2 (repeatable)")
        return p

    common(sub.add_parser("world", help="build (once) and describe the tiny world")).set_defaults(func=cmd_world)
    rep = common(sub.add_parser("reproduce", help="run every notebook (papermill) over its parameter grid",
                                description="Run the numbered notebooks through papermill over their parameter "
                                            "grids: the whole study for a size. Finished runs are reused."))
    rep.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                     help="only these notebooks (names or prefixes, e.g. 02 03)")
    rep.add_argument("--smoke", action="store_true",
                     help="a few training steps and 2 prompts per topic (a quick check)")
    rep.add_argument("--runs-dir", help="default: runs/ at the repository root (or $VD_RUNS_DIR)")
    rep.add_argument("--figures-dir", help="default: figures/ at the repository root (or $VD_FIGURES_DIR)")
    rep.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    rep.set_defaults(func=cmd_reproduce)
    pub = sub.add_parser("publish", help="copy what `vd reproduce` made to docs/<size>/ (tiny: and the README)",
                         description="After `vd reproduce`: the summary, one executed notebook per notebook and "
                                     "the README's figure go to docs/<size>/; at size tiny the README's results "
                                     "block is rewritten from the summary.")
    pub.add_argument("--size", default="tiny", help="params/<size>.yaml (default: tiny)")
    pub.add_argument("--runs-dir", help="default: runs/ at the repository root (or $VD_RUNS_DIR)")
    pub.add_argument("--figures-dir", help="default: figures/ at the repository root (or $VD_FIGURES_DIR)")
    pub.set_defaults(func=cmd_publish)
    from vd.train.cli import register_cli

    register_cli(sub)
    score = sub.add_parser("score", help="score every checkpoint of a run: <run>/scores/<judge>/profile.csv, drift.csv")
    score.add_argument("--run", required=True, help="a run folder made by `vd train`")
    score.add_argument("--size", default=None, help="params for scoring, of the run's own size (default: the config "
                                                    "the run was trained under, its config.yaml)")
    score.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a params value")
    score.set_defaults(func=cmd_score)
    probes = sub.add_parser("probes", help="rebuild a V-PRISM-like probe set from PRISM's conversations",
                            description="The paper's curation pipeline on PRISM's openers (vd/data/prism.py): "
                                        "rephrase, embed, drop near-duplicates, cluster. Needs OPENAI_API_KEY "
                                        "(or --base-url of a local OpenAI-compatible server).")
    probes.add_argument("--from-prism", required=True, metavar="JSONL", help="PRISM's conversations.jsonl")
    probes.add_argument("--out", required=True, help="the probe file to write (JSONL, unnamed clusters)")
    probes.add_argument("--per-topic", type=int, default=50, help="questions per cluster (default 50, as V-PRISM)")
    probes.add_argument("--topics", type=int, default=11, help="clusters (default 11, as V-PRISM)")
    probes.add_argument("--seed", type=int, default=0)
    probes.add_argument("--base-url", help="an OpenAI-compatible server (default: OpenAI)")
    probes.set_defaults(func=cmd_probes)
    plan = common(sub.add_parser("plan", help="what the whole study will train, sample, judge, cost, store and take",
                                 description="Before anything starts: the runs `vd reproduce` trains, their steps and "
                                             "checkpoints, generations, judge calls and tokens, the API cost at the "
                                             "params' dated prices, disk, each stage's GPU peak and GPU hours per card "
                                             "(estimates, docs/method.md §11-§12), and how to cut it."))
    plan.add_argument("--json", action="store_true", help="the plan as JSON")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vd.train.cli import USER_ERRORS, quiet_environment

    quiet_environment()  # before any command imports TRL
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder not writable: one line naming the file, whatever the command
        error = disk_error(e, args)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def disk_error(e: OSError, args):
    """write_error's line for `e` met by the command of `args`; a file in the tiny world's home
    ($VD_HOME) is moved elsewhere by $VD_HOME, whatever the command."""
    from vd.core.run import RERUN_RESUMES, WRITE_ELSEWHERE, write_error
    from vd.world.build import vd_home

    arg, rerun, elsewhere = WRITES.get(args.command, ("runs_dir", RERUN_RESUMES, WRITE_ELSEWHERE))
    where = Path(getattr(args, arg, None) or Path.cwd()) if arg else Path.cwd()
    if e.filename and Path(str(e.filename)).resolve().is_relative_to(vd_home().resolve()):
        elsewhere = VD_HOME_ELSEWHERE
    return write_error(e, where, rerun, elsewhere)


if __name__ == "__main__":
    sys.exit(main())
