"""The authenticator: NATS's auth callout for announcers, run beside each NATS server.

Each announcer connects as ``node-<its node>`` with a credential that only that node holds; the
authenticator checks it and answers the server with a user JWT carrying that node's permissions
(:func:`services.common.permissions.announcer_permissions`). Static users never reach it.
"""
