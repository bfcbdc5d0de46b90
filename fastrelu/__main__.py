from fastrelu.cli import main

raise SystemExit(main())
