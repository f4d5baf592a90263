"""What a figure or table of the tiny world shows, by construction of its data: shown under the figure's
"What to look for" only where the study runs in the tiny world, so that a notebook run at another size
makes no claim about data it does not use. (The notebooks' markdown holds what holds at every size.)

    vd.notes.show(study, "trajectories")   # the cell after a figure's markdown; nothing at other sizes
"""

from __future__ import annotations

from vd.world import uses_world

# "<notebook>.<figure>" -> what the tiny world's data make of it ({prompts_per_topic}: the study's budget).
TINY_WORLD = {
    "00_probes.counts": "This budget probes {prompts_per_topic} prompts per topic (half pro, half contra): the "
                        "title states how far it is shrunk from the paper's 50.",
    "00_probes.examples": "The tiny model sees these exact questions.",
    "00_probes.judge": "The lexicon judge reads the tiny world's stance phrases.",
    "01_sft_drift.trajectories": "The tiny SFT data take stances at fixed rates (WildChat-like mostly neutral, "
                                 "Alpaca-like mostly supportive), so the profile should move toward those rates; how "
                                 "early depends on the tiny learning rate, not on anything the paper measured.",
    "01_sft_drift.profiles": "The same direction by construction of the tiny data; the check is that the pipeline "
                             "shows it.",
    "02_preference_drift.trajectories": "The tiny standard pairs share a stance and differ only in style, so a flat "
                                        "trajectory is what the data say; whether the pipeline could have seen a "
                                        "move is what the positive controls (notebook 06) show.",
    "02_preference_drift.profiles": "Nearly the same profile, by construction of the data.",
    "03_value_gap.gap": "The same, verified by the lexicon judge.",
    "03_value_gap.drift": "The tiny pairs are written in the answer style the tiny model already produces, so a "
                          "move here is a move of what the model says; the size of it depends on the tiny "
                          "hyperparameters, which are not tuned to the paper.",
    "03_value_gap.prior_split": "With Alpaca-SFT, support is the high-prior stance overall; per topic the prior "
                                "can differ, or be tied.",
    "04_dataset_value_gap.distributions": "The tiny standard pairs share a stance by construction, the synthetic "
                                          "ones do not.",
    "04_dataset_value_gap.gaps": "The same, as the tiny data were built.",
    "04_dataset_value_gap.policy_fit": "The tiny preference data are written in the styles the tiny model learned "
                                       "in pre-training, so they should sit close to its own answers.",
    "05_ablations.ablations": "The tiny runs show whether each knob moves the tiny model at all; their sizes are "
                              "not the paper's.",
    "06_paper_tables.comparison": "Agreement in the tiny world shows the pipeline reproduces a mechanism its data "
                                  "build in; it is not evidence for the paper's claims.",
    "07_capabilities.capabilities": "The tiny task is near its ceiling, so only drops of a few points show.",
}


def world_note(cfg, notebook: str, name: str) -> str:
    """The tiny world's reading of figure `name` of `notebook`, as markdown; "" at any other size."""
    text = TINY_WORLD.get(f"{notebook}.{name}")
    if not text or not uses_world(cfg):
        return ""
    return "**In the tiny world.** " + text.format(prompts_per_topic=cfg.probes.prompts_per_topic)


def show(study, name: str) -> None:
    """Display world_note for this study's notebook (nothing at sizes that do not run in the tiny world)."""
    text = world_note(study.cfg, study.notebook, name)
    if text:
        from IPython.display import Markdown, display

        display(Markdown(text))
