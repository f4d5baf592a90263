"""The notebooks' parameters, checked before anything runs: each value coerced to the type its parameters
cell annotates (papermill's `-p smoke false` arrives as the text "false", which is truthy) and held to
its range or its choices (vd.core.registry), with one error line naming the parameter; and, in a
notebook kernel, the errors a user can fix shown as that one line instead of a traceback.

    vd.check_parameters(globals())   # the first line of every notebook's setup cell
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vd.core import registry
from vd.core.config import ConfigError


class ParameterError(ConfigError):
    """A notebook parameter with a value of the wrong type, out of range, or not among its choices."""


@dataclass(frozen=True)
class Param:
    kind: type
    choices: Callable[[], tuple] | None = None  # called on use: the registry's current entries
    minimum: int | None = None
    check: Callable[[str], object] | None = None  # a further check of the coerced value (raises ParameterError)
    hint: str = ""  # what the minimum means, for the error line


def parse_algos(algos: str) -> tuple[str, ...]:
    """The notebooks' `algos` parameter: "all" or a comma-separated subset of the preference algorithms."""
    if algos.strip() == "all":
        return registry.ALGORITHMS
    chosen = tuple(a.strip() for a in algos.split(",") if a.strip())
    if not chosen or any(a not in registry.ALGORITHMS for a in chosen):
        raise ParameterError(f"parameter algos: expected 'all' or a comma-separated subset of "
                             f"{', '.join(registry.ALGORITHMS)}, got {algos!r}")
    return chosen


def parse_datasets(text: str) -> list[str]:
    """The notebooks' `datasets` parameter: comma-separated preference datasets ("" : the default set)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in registry.PREFERENCE_CHOICES]
    if bad:
        raise ParameterError(f"parameter datasets: {bad[0]!r} is not a preference dataset; expected a comma-separated "
                             f"subset of {', '.join(registry.PREFERENCE_CHOICES)}")
    return names


# Every parameter of the numbered notebooks (tests/test_notebooks.py checks that each parameters cell
# declares these types).
SPEC: dict[str, Param] = {
    "size": Param(str), "smoke": Param(bool), "overrides": Param(str), "runs_dir": Param(str),
    "figures_dir": Param(str),
    "algo": Param(str, choices=lambda: registry.ALGORITHMS),
    "pref_data": Param(str, choices=lambda: tuple(registry.PREFERENCE_DATA)),
    "sft_data": Param(str, choices=lambda: tuple(registry.SFT_DATA)),
    "setting": Param(str, choices=lambda: registry.SYNTHETIC_SETTINGS),
    "ablation_data": Param(str, choices=lambda: registry.PREFERENCE_CHOICES),
    "max_pairs": Param(int, minimum=0, hint=" (0: all)"),
    "datasets": Param(str, check=parse_datasets),
    "algos": Param(str, check=parse_algos),
    "include_ablations": Param(bool), "include_capabilities": Param(bool),
}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def coerce(name: str, value, kind: type):
    """`value` as `kind` (bool, int, float or str), from what papermill or a caller passed; else a
    ParameterError naming the parameter and what it expects."""
    def fail(expected: str):
        return ParameterError(f"parameter {name}: expected {expected}, got {value!r}")

    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
            return value.strip().lower() in TRUE
        raise fail("true or false (True/False, true/false, 1/0)")
    if kind is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise fail("an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # papermill reads `-p x 2024` as 2024
            return str(value)
        raise fail("text")
    return value


def check_value(name: str, value, kind: type | None = None):
    """One parameter: coerced to `kind` (default: its SPEC type), then held to its SPEC's range, choices
    and check."""
    spec = SPEC.get(name)
    value = coerce(name, value, kind or (spec.kind if spec else type(value)))
    if spec is None:
        return value
    if spec.minimum is not None and value < spec.minimum:
        raise ParameterError(f"parameter {name}: expected an integer >= {spec.minimum}{spec.hint}, got {value!r}")
    if spec.choices is not None and value not in spec.choices():
        raise ParameterError(f"parameter {name}: expected one of {', '.join(spec.choices())}, got {value!r}")
    if spec.check is not None:
        spec.check(value)
    return value


def _annotation_type(annotation) -> type | None:
    """The class an annotation names (a class, or its name as text under postponed annotations)."""
    if isinstance(annotation, type):
        return annotation
    return {"bool": bool, "int": int, "float": float, "str": str}.get(str(annotation))


def check_parameters(namespace: dict) -> dict:
    """Check every annotated parameter in a notebook's namespace (`globals()`), coerce it in place to its
    annotated type, and return them {name: value}. Also shows user errors as one line from here on."""
    show_errors_as_one_line()
    annotations = dict(namespace.get("__annotations__") or {})
    names = [n for n in annotations if n in namespace] + [n for n in SPEC if n in namespace and n not in annotations]
    checked = {}
    for name in names:
        kind = _annotation_type(annotations.get(name)) or (SPEC[name].kind if name in SPEC else None)
        if kind is None:
            continue
        checked[name] = namespace[name] = check_value(name, namespace[name], kind)
    return checked


# ----------------------------------------------------------------------------- errors in a notebook
def notebook_errors() -> tuple[type, ...]:
    """What a notebook shows as one line: what the `vd` command reports as one (vd.train.cli.USER_ERRORS),
    and a capability dataset that cannot be read."""
    from vd.score.capabilities import DatasetAccessError
    from vd.train.cli import USER_ERRORS

    return (*USER_ERRORS, DatasetAccessError)


def one_line(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: `error: <message>` as the cell's error output, so that the cell
    still fails (papermill stops and exits non-zero) but shows no traceback of our internals."""
    shell._showtraceback(etype, value, [f"error: {value}"])


def show_errors_as_one_line() -> bool:
    """In an IPython kernel, install `one_line` for notebook_errors() (anything else keeps its traceback);
    elsewhere do nothing. Returns whether it is installed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    errors = notebook_errors()
    if tuple(getattr(shell, "custom_exceptions", ())) != errors:
        shell.set_custom_exc(errors, one_line)
    return True
