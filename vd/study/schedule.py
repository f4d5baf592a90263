"""Which runs a notebook trains, listed and checked before any of them trains.

The runs come from the functions below, which the analyses iterate over themselves (vd.study.paper,
controls, analysis.ablations, capabilities.study_runs), so the list a notebook prints first is what it
trains. Only the datasets the params name are used: one the params remove (`data.sft.wildchat: null`)
is skipped, and said so once; a notebook parameter naming a removed dataset is an error.

    planned = vd.schedule.check(study, include_ablations=True)  # lists the runs, then the preflight
"""

from __future__ import annotations

from dataclasses import dataclass

from vd.core import registry
from vd.core.run import RunRecord
from vd.study import preflight
from vd.study.params import ParameterError, parse_algos


@dataclass(frozen=True)
class Planned:
    """One run: `stage` on `data`; a preference stage starts from the SFT run on `sft_data` (None: the
    study's), under `overrides` (the ablations' knob values)."""

    stage: str
    data: str | None  # None: the study's SFT data (an SFT run)
    sft_data: str | None = None
    overrides: tuple[tuple[str, float], ...] = ()


def sft_datasets(cfg) -> list[str]:
    """The SFT datasets the params name (data.sft), in the registry's order."""
    return [d for d in registry.SFT_DATA if d in cfg.data.sft]


def standard_datasets(cfg) -> list[str]:
    """The standard preference datasets the params name (data.preference)."""
    return list(cfg.data.preference)


def skipped(cfg) -> list[str]:
    """The registry's datasets the params remove (`data.sft.<name>: null`), as `data.<kind>.<name>`."""
    return ([f"data.sft.{d}" for d in registry.SFT_DATA if d not in cfg.data.sft]
            + [f"data.preference.{d}" for d in registry.PREFERENCE_DATA if d not in cfg.data.preference])


def sft_runs(cfg) -> list[Planned]:
    return [Planned("sft", d) for d in sft_datasets(cfg)]


def standard_runs(cfg, sft_data: str | None = None, algos=registry.ALGORITHMS) -> list[Planned]:
    return [Planned(a, d, sft_data) for a in algos for d in standard_datasets(cfg)]


def synthetic_runs(sft_data: str | None = None, algos=registry.ALGORITHMS) -> list[Planned]:
    return [Planned(a, d, sft_data) for a in algos for d in registry.SYNTHETIC_DATA]


ABLATION_DATA = "synthetic-support"  # what notebook 05 (and 06's ablations) train on by default
# Ours: three values per knob, as multiples of the size's configured value (so the sweep scales
# with whatever each size uses): PPO's KL coefficient, DPO's beta, SimPO's gamma (TRL's simpo_gamma).
ABLATIONS = {"ppo": ("ppo.kl_coef", (0.2, 1.0, 5.0)), "dpo": ("dpo.beta", (0.5, 1.0, 5.0)),
             "simpo": ("simpo.gamma", (0.0, 1.0, 2.0))}


def ablation_values(cfg) -> dict[str, tuple[str, list[float]]]:
    return {algo: (key, [round(cfg.get(key) * f, 6) for f in factors]) for algo, (key, factors) in ABLATIONS.items()}


def ablation_runs(cfg, data: str, sft_data: str | None = None) -> list[Planned]:
    """Notebook 05's runs: each knob of ABLATIONS at each of its values, on `data`."""
    return [Planned(algo, data, sft_data, ((key, v),)) for algo, (key, values) in ablation_values(cfg).items()
            for v in values]


def capability_runs(cfg, sft_data: str | None = None, algos=registry.ALGORITHMS) -> list[Planned]:
    """Every stage of the study: both SFT runs, and per algorithm its standard and synthetic runs."""
    return [*sft_runs(cfg), *[Planned(a, d, sft_data) for a in algos
                              for d in (*standard_datasets(cfg), *registry.SYNTHETIC_DATA)]]


def run(study, planned: Planned):
    """Train (if missing) and score one planned run: a RunResult."""
    if planned.stage == "sft":
        return study.sft(planned.data)
    return study.preference(planned.stage, planned.data, planned.sft_data, dict(planned.overrides) or None)


# ----------------------------------------------------------------------------- per notebook
def _sft(study) -> Planned:
    """The SFT run the preference stages start from (data None: the study's, as Study.sft takes it)."""
    return Planned("sft", study.params.get("sft_data"))


def notebook_runs(study, include_ablations: bool = True, include_capabilities: bool = True,
                  algos: str = "all") -> list[Planned]:
    """The runs study.notebook trains (in the order it trains them), each once."""
    cfg, p = study.cfg, study.params
    sft = p.get("sft_data")
    runs = {
        "01_sft_drift": lambda: sft_runs(cfg),
        "02_preference_drift": lambda: [_sft(study), Planned(p["algo"], p["pref_data"], sft)],
        "03_value_gap": lambda: [_sft(study), *synthetic_runs(sft, (p["algo"],))],
        "04_dataset_value_gap": lambda: [_sft(study)],
        "05_ablations": lambda: [_sft(study), *ablation_runs(cfg, p["ablation_data"], sft)],
        "06_paper_tables": lambda: [*sft_runs(cfg), *standard_runs(cfg), _sft(study), *synthetic_runs(),
                                    *(ablation_runs(cfg, ABLATION_DATA) if include_ablations else []),
                                    *(capability_runs(cfg, sft) if include_capabilities else []),
                                    *synthetic_runs(sft)],
        "07_capabilities": lambda: capability_runs(cfg, sft, parse_algos(algos)),
    }.get(study.notebook, list)()
    unique: dict[str, Planned] = {}
    for planned in runs:
        unique.setdefault(study.run_name(planned.stage, planned.data, planned.sft_data,
                                         dict(planned.overrides) or None)[1], planned)
    return list(unique.values())


# What each notebook needs beyond its runs: the synthetic pairs' writer, the capability tasks' data.
BUILDS_SYNTHETIC = ("03_value_gap", "04_dataset_value_gap", "05_ablations", "06_paper_tables", "07_capabilities")


def check_parameters_against_config(study) -> None:
    """A notebook parameter naming a dataset the params remove is an error naming the parameter."""
    cfg, p = study.cfg, study.params
    named = {"sft_data": ("sft", sft_datasets(cfg)), "pref_data": ("preference", standard_datasets(cfg)),
             "ablation_data": ("preference", [*standard_datasets(cfg), *registry.SYNTHETIC_DATA])}
    for param, (kind, configured) in named.items():
        if param in p and p[param] not in configured:
            where = cfg.source + (" or in the notebook's overrides" if study.tag else "")
            raise ParameterError(f"parameter {param}: {p[param]!r} is not among the {kind} datasets of size "
                                 f"{cfg.size} (data.{kind}.{p[param]} is null or missing in {where}); "
                                 f"expected one of {', '.join(configured) or '(none)'}")


def check(study, include_ablations: bool = True, include_capabilities: bool = True, algos: str = "all",
          ) -> list[Planned]:
    """Before anything trains: the parameters against the params' datasets; the runs this notebook uses,
    printed with which exist; then the preflight (judge, data files, GPU fit of the stages still to
    train, the synthetic writer, and the capability tasks' datasets where the notebook evaluates them);
    then the synthetic pairs the runs still to train read."""
    check_parameters_against_config(study)
    planned = notebook_runs(study, include_ablations, include_capabilities, algos)
    states = {p: run_state(study, p) for p in planned}
    missing = [p for p, (_, state) in states.items() if state != "exists"]
    if planned:
        print(f"runs this notebook uses: {len(planned)} (complete: {len(planned) - len(missing)}, to train or "
              f"finish: {len(missing)})", flush=True)
        for name, state in states.values():
            print(f"  {name} ({state})", flush=True)
        gone = skipped(study.cfg)
        if gone:
            print(f"skipped, as the params remove them: {', '.join(gone)}", flush=True)
    else:
        print("runs this notebook uses: none (it trains nothing)", flush=True)
    if study.notebook == "07_capabilities" or (study.notebook == "06_paper_tables" and include_capabilities):
        preflight.check_capability_data(study.cfg)
        print("checked: capability tasks' datasets", flush=True)
    if planned:
        study.preflight(stages=list(dict.fromkeys(p.stage for p in missing)),
                        synthetic=study.notebook in BUILDS_SYNTHETIC)
    # the pairs are shared by every run on a setting: built now (minutes of API calls), a writer or judge
    # that cannot make them fails here rather than after hours of training the runs listed before them
    for setting in dict.fromkeys(p.data.split("-", 1)[1] for p in missing if p.data in registry.SYNTHETIC_DATA):
        study.synthetic_pairs(setting)
    return planned


def run_state(study, planned: Planned) -> tuple[str, str]:
    """(run name, "exists" | "unfinished: resumes" | "to train")."""
    name = study.run_name(planned.stage, planned.data, planned.sft_data, dict(planned.overrides) or None)[1]
    record = RunRecord.find(study.runs_dir / study.cfg.size / name)
    return name, "exists" if record and record.complete else "unfinished: resumes" if record else "to train"
