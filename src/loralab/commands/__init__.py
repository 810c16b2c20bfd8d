"""One module per ``loralab`` subcommand (argparse only; heavy imports happen in ``run``)."""
