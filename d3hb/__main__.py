from d3hb.cli import main

raise SystemExit(main())
