"""What every benchmark shares: the machine's description, timing, worker processes, report files and plots."""
