"""What an operator runs: `isls up` and its local servers, security of the broker,
`isls doctor`, link status and the alarm console."""
