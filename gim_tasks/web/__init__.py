"""Monitor Jobs (SPEC §7): the web app, its JSON API, users and roles, notifications."""
