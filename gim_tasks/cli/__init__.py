"""The ``gim`` command line."""
