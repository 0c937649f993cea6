"""What customers and auditors run: verification from the chain alone, and the replay of every report."""
