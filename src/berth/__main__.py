"""`python -m berth`: the berth command line."""

from berth.cli.main import main

raise SystemExit(main())
