"""`python -m harness.cli`: the same as the `ltbench` command."""

import sys

from harness.cli import main

sys.exit(main())
