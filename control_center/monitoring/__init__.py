"""Limit checking and alarms: pure checkers over decoded batches, and the alarm state
an operator acknowledges and shelves."""
