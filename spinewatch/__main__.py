"""``python -m spinewatch`` = the ``spinewatch`` command."""

import sys

from spinewatch.service.cli import main

sys.exit(main())
