"""The `evx` command line: every command, one registration, one error-to-exit-code table."""
