"""Post-Pay: usage billing for SolusVM 2. Shared code of every function (the Lambda layer)."""
