"""Developer tooling behind ``./dev``: local servers and the ``./dev up`` supervisor."""
