"""`python -m agent_app` is the `deskwarden` command."""

import sys

from agent_app.cli import main

sys.exit(main())
