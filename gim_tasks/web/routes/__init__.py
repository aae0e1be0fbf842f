"""The routes of the web app and the API, one router per feature; ``create_app`` includes
them (pages first, as before)."""
