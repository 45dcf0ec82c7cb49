"""`python -m elt.cli ...` (as used by torchrun)."""
import sys

from .main import main

sys.exit(main())
