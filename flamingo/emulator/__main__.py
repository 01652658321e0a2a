"""``python -m flamingo.emulator`` = ``flamingo emulator``."""

import sys

from flamingo.emulator.cli import main

sys.exit(main(sys.argv[1:]))
