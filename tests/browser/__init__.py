"""Helpers of the browser test: a real Airflow API server and Playwright driving Debian's Chromium."""
