"""What every package uses: user-facing errors, parameter declarations, devices, quiet library loading."""
