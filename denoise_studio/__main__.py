from denoise_studio.cli import main

if __name__ == "__main__":   # the guard matters: training children (spawn) re-import __main__
    raise SystemExit(main())
