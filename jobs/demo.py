"""Ray job: coldrec demo.

    ray job submit --working-dir . -- python jobs/demo.py [--config configs/ml-100k.yaml] [section.key=value ...]

Thin on purpose: it parses the arguments and calls the same function as `coldrec demo`.
"""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path)

from coldrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
