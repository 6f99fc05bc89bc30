"""DynamoDB access. Every state change is a conditional write; counters move in the same
transaction as the state they count, so a count can never drift from the records."""
