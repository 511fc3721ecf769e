"""Ray job: fetch a public dataset onto the cluster's head node.

    ray job submit --working-dir . -- python jobs/fetch.py ml-100k
"""

import sys

import _bootstrap  # noqa: F401  (puts platform/ on sys.path)

from coldrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "fetch", *sys.argv[1:]]))
