"""One router per resource: health, cities, scenarios, runs, exports, admin (and
sessions, when ``twin.app.api.routers.sessions`` is there)."""
