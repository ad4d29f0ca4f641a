"""The seam between the bot and the workers, importable without torch.

The job contract, the emotion registry, typed errors with their wording, settings, the
photo intake both sides share, the Redis Streams transport and the submit client. The
bot imports nothing else from :mod:`inference`.
"""
