"""The oracle node: report states, intake, close, signature exchange, send, confirm, and the
loop that schedules them."""
