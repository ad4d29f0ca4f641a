"""The Discord bot process. Never imports torch: inference happens in workers via Redis."""
