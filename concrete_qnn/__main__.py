"""``python -m concrete_qnn`` runs the command-line entry point."""

import sys

from concrete_qnn.cli import main

sys.exit(main())
