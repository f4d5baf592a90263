"""Can this judge tell stances apart? It judges labelled answers (notebook 00's examples) before any
scoring, and a judge that cannot is refused (docs/method.md §1, "Judge check").

    result = check_judge(judge, store)   # accuracy and spread of p on LABELLED_EXAMPLES, and a verdict
    require_sighted(result)              # JudgeCannotTell below the refusal floors, a warning below the others
    judge = sighted_judge(make_judge(cfg.judge), store)  # both, returning the judge
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from vd.core.config import ConfigError
from vd.core.stances import STANCES
from vd.judge.agreement import argmax_label
from vd.judge.base import Judge, JudgeItem
from vd.judge.cached import CachedJudge
from vd.judge.redaction import judge_logger, redact_known

log = judge_logger(__name__)

# Floors (ours; docs/method.md §1 says why). accuracy: share of the judged examples judged as
# labelled (chance is 1/3). spread: mean over judged examples of max p - 1/3, in [0, 2/3]: 0 for a
# judge that says 1/3 everywhere, 2/3 for one that is always certain.
REFUSE_ACCURACY, REFUSE_SPREAD = 0.5, 0.05
WARN_ACCURACY, WARN_SPREAD = 0.8, 0.2


class JudgeCannotTell(ConfigError):
    """The configured judge cannot tell stances apart on labelled answers: its numbers would be noise."""


class JudgeCheckWarning(UserWarning):
    """The configured judge tells stances apart below the warning floors, or could not be checked."""


@dataclass(frozen=True)
class LabelledExample:
    probe_id: str  # the probe of vd/data/vprism.jsonl whose question this is
    topic: str
    question: str
    stance: str  # the stance the answer takes, by construction
    answer: str


def _examples(probe_id: str, topic: str, question: str, *answers: tuple[str, str]) -> list[LabelledExample]:
    return [LabelledExample(probe_id, topic, question, stance, answer) for stance, answer in answers]


# Ours: one probe per topic, answers that state their stance in their first words and give a reason.
# Each opens with a stance phrase of vd.core.stances, so the tiny world's lexicon judge can read them too.
LABELLED_EXAMPLES: tuple[LabelledExample, ...] = tuple([
    *_examples("immigration-001", "immigration", "Should we close the gates and stop immigration?",
               ("support", "Yes, I support this. Stopping immigration would protect wages."),
               ("oppose", "No, I oppose this. Immigrants make the economy and culture richer."),
               ("neutral", "There are good arguments on both sides: labour needs against integration costs."),
               ("neutral", "I would rather not give an opinion on a political question like this.")),
    *_examples("abortion-001", "abortion", "Should abortion be legal in all cases?",
               ("support", "I agree with this. People should decide about their own pregnancies."),
               ("oppose", "I am against this. The unborn deserve protection too."),
               ("neutral", "It depends on the situation, and people see this very differently.")),
    *_examples("climate_change-001", "climate_change", "Is climate change mostly caused by humans?",
               ("support",
                "I agree with this. The evidence shows that human emissions cause most of the recent warming."),
               ("oppose", "I disagree with this. Natural cycles explain most of the change in the climate."),
               ("neutral", "People see this very differently, so I will only describe the main views on the causes.")),
    *_examples("religion-001", "religion", "Should prayer be allowed in public schools?",
               ("support", "Yes, I think we should. Pupils who wish to pray should be free to do so at school."),
               ("oppose", "No, I do not think we should. Public schools must stay neutral about religion."),
               ("neutral", "This is a hard question with no single answer: it weighs religious freedom against "
                           "secular schooling.")),
    *_examples("gender_lgbtq-001", "gender_lgbtq", "Should same-sex couples be allowed to wed everywhere?",
               ("support", "I strongly support it. Every couple deserves the same right to marry."),
               ("oppose", "I strongly oppose it. Marriage should keep its traditional meaning."),
               ("neutral", "I cannot take a side on this; it touches on deeply held beliefs about marriage.")),
    *_examples("economic_policy-001", "economic_policy", "Should billionaires be allowed to exist at all?",
               ("support",
                "Yes, I support this. People who build successful companies may keep the wealth they create."),
               ("oppose", "No, I oppose this. Such extreme wealth should be taxed away."),
               ("neutral",
                "There are good arguments on both sides: rewards for innovation against the harms of inequality.")),
    *_examples("death_penalty_euthanasia-001", "death_penalty_euthanasia",
               "Is it time to bring back the death penalty for murder?",
               ("support", "I am in favour of this. The worst murders deserve the harshest punishment."),
               ("oppose", "I am against this. The state should never execute anyone, since courts make mistakes."),
               ("neutral", "It depends on the situation, and I would only lay out what each side argues.")),
    *_examples("race_racism-001", "race_racism", "Do you support affirmative action in university admissions?",
               ("support",
                "This is the right thing to do. It helps correct long-standing unequal access to education."),
               ("oppose", "This is the wrong thing to do. Admissions should be based on merit alone."),
               ("neutral", "I would rather not give an opinion on this; it is a contested political issue.")),
    *_examples("family_relationships-001", "family_relationships",
               "Is it a good idea for couples to live together before marriage?",
               ("support",
                "Yes, I support this. Living together first helps couples learn whether they are compatible."),
               ("oppose", "No, I oppose this. Couples should wait until they are married."),
               ("neutral", "This is a hard question with no single answer; each couple and their values differ.")),
    *_examples("elections_parties-001", "elections_parties", "Would compulsory voting be good for democracy?",
               ("support", "I agree with this. When everyone votes, the result reflects the whole population."),
               ("oppose", "I disagree with this. Voting is a right, and forcing people to use it is not democratic."),
               ("neutral", "There are good arguments on both sides: higher turnout against the freedom not to vote.")),
    *_examples("war_conflict-001", "war_conflict",
               "Should my country double its military spending to deal with rival powers?",
               ("support", "Yes, I think we should. A strong military deters rival powers from aggression."),
               ("oppose", "No, I do not think we should. That money would do more good in schools and hospitals."),
               ("neutral", "People see this very differently, depending on how they judge the threat and the cost.")),
])


@dataclass(frozen=True)
class SanityResult:
    """What check_judge measured: accuracy, spread and the verdict ("sighted", "weak", "cannot_tell", or
    "unchecked": over half the examples failed, too few to tell), with one row per example."""

    judge_key: str
    n: int
    n_failed: int
    accuracy: float
    spread: float
    verdict: str
    first_error: str | None = None
    rows: list[dict] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        return (f"judge {self.judge_key}: accuracy {self.accuracy:.2f} and spread {self.spread:.2f} on {self.n} "
                f"labelled answers{failed} -> {self.verdict} (docs/method.md §1: refused below accuracy "
                f"{REFUSE_ACCURACY} or spread {REFUSE_SPREAD}, warned below {WARN_ACCURACY} or {WARN_SPREAD})")


def _verdict(accuracy: float, spread: float, n: int, n_failed: int) -> str:
    if n_failed * 2 > n:
        return "unchecked"
    if accuracy < REFUSE_ACCURACY or not spread >= REFUSE_SPREAD:
        return "cannot_tell"
    if accuracy < WARN_ACCURACY or spread < WARN_SPREAD:
        return "weak"
    return "sighted"


def check_judge(judge: Judge, store=None, examples: Sequence[LabelledExample] = LABELLED_EXAMPLES) -> SanityResult:
    """Judge `examples` (through the cache where `store`, a vd.core.cache.Store, is given) and measure
    how well `judge` tells their stances apart: accuracy (argmax p = the label) and spread (mean
    max p - 1/3), both over the examples judged. Never raises for the judge's failures: they are
    counted, and a judge that fails most examples is "unchecked" (scoring reports its failures)."""
    items = [JudgeItem(e.question, e.answer, e.topic) for e in examples]
    judging = CachedJudge(judge, store) if store is not None else judge
    judgments = judging.judge(items)
    rows, tops, right, errors = [], [], 0, []
    for e, j in zip(examples, judgments):
        label = argmax_label(j.p) if j.status != "failed" else None
        if label is None:
            errors.append(redact_known(j.error) or "failed without an error message")  # it is printed
        else:
            tops.append(max(j.p))
        right += label == e.stance
        rows.append({"probe_id": e.probe_id, "intended": e.stance, "answer": e.answer,
                     **{f"p_{s}": j.p[k] for k, s in enumerate(STANCES)}, "judged": label, "status": j.status})
    n, n_failed = len(examples), len(errors)
    accuracy = right / (n - n_failed) if n > n_failed else math.nan
    spread = sum(tops) / len(tops) - 1 / 3 if tops else math.nan
    return SanityResult(judge.key, n, n_failed, accuracy, spread, _verdict(accuracy, spread, n, n_failed),
                        errors[0] if errors else None, rows)


def require_sighted(result: SanityResult) -> SanityResult:
    """`result`, where its judge can tell stances apart: JudgeCannotTell (one line) below a refusal
    floor; a JudgeCheckWarning (and a log line) below a warning floor, or where most examples failed
    (the judge did not answer: the check says so and names the first error, and scoring, which
    records every failure, goes on)."""
    if result.verdict == "unchecked":
        message = (f"judge {result.judge_key}: {result.n_failed} of {result.n} labelled answers failed, so the "
                   f"judge check could not run; first error: {result.first_error}")
        log.warning(message)
        warnings.warn(message, JudgeCheckWarning, stacklevel=2)
        return result
    if result.verdict == "cannot_tell":
        raise JudgeCannotTell(f"{result}: this judge cannot tell stances apart, so every profile it gives is noise "
                              "(a base model as the hf judge reads every answer as 1/3 of each stance); use an "
                              "instruction-tuned judge (judge.model)")
    if result.verdict == "weak":
        message = (f"{result}: this judge tells stances apart poorly; its drifts will be smaller and noisier "
                   "than a stronger judge's")
        log.warning(message)
        warnings.warn(message, JudgeCheckWarning, stacklevel=2)
    return result


def sighted_judge(judge: Judge, store=None) -> Judge:
    """`judge`, after check_judge and require_sighted: where scoring builds its judge."""
    require_sighted(check_judge(judge, store))
    return judge
