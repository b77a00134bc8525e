"""Events for the authorities they concern: the feed, webhooks and their durable outbox."""
