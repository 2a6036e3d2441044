from fichierfs.cli import main

raise SystemExit(main())
