"""The agreement's core values: terms, periods and the calendar, the credit arithmetic, Merkle trees, addresses."""
