"""``python -m nncli``: the same entry point as the ``nncli`` console script."""

from nncli.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
