"""``python -m heidi_engine.cli``: the ``heidi`` command."""

import sys

from .parser import main

sys.exit(main())
