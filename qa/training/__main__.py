"""`python -m qa.training`: see `qa.training.cli`."""

import sys

from .cli import main

sys.exit(main())
