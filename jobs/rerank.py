"""Ray job: coldrec rerank.

    ray job submit --working-dir . -- python jobs/rerank.py --config configs/ml-100k.yaml [section.key=value ...]

Thin on purpose: it parses the arguments and calls the same function as `coldrec rerank`.
"""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path)

from coldrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["rerank", *sys.argv[1:]]))
