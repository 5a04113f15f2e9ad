"""``python -m torchlap``: the ``torchlap`` command, as the console script runs it."""

from torchlap.cli import main

if __name__ == "__main__":
    main()
