"""What the notebooks call: the study of one notebook run, its analyses and figures, the paper's tables,
and `vd reproduce`."""

from vd.study.notebook import *  # noqa: F401,F403  (notebooks: `from vd.study import setup`)
