"""Webhooks (Standard Webhooks, https://www.standardwebhooks.com): tenants' secrets and signatures
(signing), the address check against SSRF (addresses), the outbox written with each status change
(outbox) and the loop that sends it (delivery)."""
