from saekit.cli import main

raise SystemExit(main())
