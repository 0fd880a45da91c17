"""What every package uses: user-facing errors, messages on stderr, parameter declarations, devices, precision,
graceful stop on signals, seeded weights, quiet library loading, the HTML pages' Jinja2 setup, the offline
environment of tests and benchmarks."""
