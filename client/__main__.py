"""`python -m client`: the digits-client command, as `python -m client.cli` runs it."""

import sys

from client.cli import main

sys.exit(main())
