"""``python -m stream_guard.cli`` runs the ``stream-guard`` command."""

import sys

from stream_guard.cli.main import main

sys.exit(main())
