"""One module per `dropd` subcommand, and the command line as a table of them."""
