"""``python -m engine.cli``: the ``gridwatch`` command."""

from engine.cli import main

main()
