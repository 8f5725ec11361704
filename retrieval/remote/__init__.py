"""Answer workers as services of their own: `newsbot worker` answers over HTTP (server.py), the bot asks
them (client.py), and wire.py is what travels between the two."""
