"""Browser tests: the web map in a real Chromium (Playwright)."""
