"""What happens to events: windows, job processors, submission, cleanup, and the CLI."""
