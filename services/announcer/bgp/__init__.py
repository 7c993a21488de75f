"""A native BGP-4 speaker: RFC-shaped wire codecs, a sans-IO session core and a thin asyncio shell."""
