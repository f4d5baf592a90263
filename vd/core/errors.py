"""The error a user's input causes (a params file, an override, a data or probe file, a CLI argument):
its message names the file, key or field and what is expected, and the `vd` command prints it as one
line. Subclasses say where it arose (vd.train.data.DataError, vd.data.probes.ProbeError, ...)."""


class ConfigError(ValueError):
    """A params file, override or input file is invalid; the message names the file, key and expectation."""
