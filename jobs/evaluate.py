"""Ray job: coldrec evaluate.

    ray job submit --working-dir . -- python jobs/evaluate.py --config configs/ml-100k.yaml [section.key=value ...]

Thin on purpose: it parses the arguments and calls the same function as `coldrec evaluate`.
"""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path)

from coldrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
