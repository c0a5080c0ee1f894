"""``python -m inference.training``: train, export and evaluate the default grader."""

from __future__ import annotations

import sys

from inference.training.train import main

raise SystemExit(main(sys.argv[1:]))
