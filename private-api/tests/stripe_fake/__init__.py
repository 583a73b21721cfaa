"""A local stand-in for the Stripe API and its webhooks, for end-to-end billing tests."""
