"""Data protection: alert content sealed at rest (keys, crypto, types, rows, rotation), retention (policy, runs,
the daily schedule), subject access and concern exports, and their CLI handlers. See docs/dpia.md."""
