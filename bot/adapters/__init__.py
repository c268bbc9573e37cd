"""Chat adapters: each translates one platform's events to IncomingMessage and sends replies back."""
