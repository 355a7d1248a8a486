"""`python -m cllm.server.cli`: the `cllm` command."""

import sys

from . import main

sys.exit(main())
