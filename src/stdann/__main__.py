import sys

try:
    from stdann.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command is still loading: an interruption like any other (130)
    print("\n[stdann] interrupted (Ctrl-C)", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
