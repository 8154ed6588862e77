"""Serve the HTTP API on the index as it is: `python serve.py` (settings from the environment)."""

import sys

from qa.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
