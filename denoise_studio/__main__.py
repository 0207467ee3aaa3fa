from denoise_studio.cli import main

raise SystemExit(main())
