from emu3.cli import main

raise SystemExit(main())
