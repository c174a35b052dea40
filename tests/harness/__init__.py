"""Real-Envoy test harness: start Envoy and the fake upstream on free ports, tear them down.

Used by the end-to-end tests (`tests/e2e`), `make run` and `make bench`.
"""
