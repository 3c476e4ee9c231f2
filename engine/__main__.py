"""``python -m engine ...`` -> the CLI."""
import sys

from engine.cli import main

sys.exit(main())
