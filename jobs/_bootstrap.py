"""Make ``coldrec`` importable when a job runs from a plain checkout (``ray job submit --working-dir .``)."""

import sys
from pathlib import Path

PLATFORM = Path(__file__).resolve().parents[1] / "platform"
if str(PLATFORM) not in sys.path:
    sys.path.insert(0, str(PLATFORM))
