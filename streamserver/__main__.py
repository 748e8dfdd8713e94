"""``python -m streamserver``: the same as the ``streamserver`` command."""

from .cli import main

raise SystemExit(main())
