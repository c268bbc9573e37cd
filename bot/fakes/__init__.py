"""Fake Telegram and Discord servers on 127.0.0.1, for the end-to-end tests and `chatbot bench serve`.

The real client libraries talk to them over HTTP and websockets as they would to the platforms.
"""
