"""``metalbus lab``: the whole system on one machine, in Linux network namespaces.

``plan`` (pure) says what the lab is — names, addresses, the YAML it applies, the router's configuration;
``host`` makes namespaces, links and processes and removes them again; ``state`` records them as they are
made; ``up`` builds the lab; ``checks`` probes reachability with real tools; ``command`` is the CLI
(live table, checks, teardown); ``backend`` is the web server each node runs behind the VIPs.
"""
