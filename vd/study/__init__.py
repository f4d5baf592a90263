"""What the notebooks call: the study of one notebook run, its analyses and figures, the paper's tables,
and `vd reproduce`."""

from vd.study.quiet import quiet_warnings

quiet_warnings()  # before the imports below load tqdm.auto, which warns in a kernel without ipywidgets

from vd.study.notebook import *  # noqa: E402,F401,F403  (notebooks: `from vd.study import setup`)
