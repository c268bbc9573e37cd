"""The chatbot application: settings, CLI, composition root, ChatService and the chat adapters."""
