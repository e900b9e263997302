"""The planner service: ledger, replanning loop, mesh endpoints, HTTP API and event stream."""
