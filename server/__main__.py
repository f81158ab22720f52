"""`python -m server` is `msp-console`."""

import sys

from server.cli import main

sys.exit(main())
