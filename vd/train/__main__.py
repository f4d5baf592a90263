"""`python -m vd.train train …`: what `vd train …` runs, as a module `accelerate launch` can start."""

import sys

from vd.train.cli import main

sys.exit(main())
