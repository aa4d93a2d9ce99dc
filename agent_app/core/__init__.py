"""Agent logic without widgets: decisions, outbox, uploader, scheduler, health."""
