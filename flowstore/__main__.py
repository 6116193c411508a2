"""`python -m flowstore` runs the command line."""

from __future__ import annotations

import sys

from flowstore.cli import main

sys.exit(main())
