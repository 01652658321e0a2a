"""``python -m flamingo.cli``: the ``flamingo`` command."""

import sys

from flamingo.cli import main

sys.exit(main())
