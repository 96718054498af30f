"""`python -m daemon` is the `dropd` command."""

import sys

from daemon.commands.cli import main

sys.exit(main())
