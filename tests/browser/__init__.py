"""Browser tests: Playwright driving Chromium against the real stack."""
