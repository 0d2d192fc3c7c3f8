"""The ``kd-gym`` subcommands, one module each with ``main(argv, prog)``; ``scripts/`` calls the same."""
