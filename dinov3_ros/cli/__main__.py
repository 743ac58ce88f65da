"""`python -m dinov3_ros.cli`, as the `dinov3` command."""

import sys

from .command import main

sys.exit(main())
