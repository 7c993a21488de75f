"""Configuration examples from MetalLB's documentation (website/content/configuration), as users apply them.

They are facts of the API these models must accept unchanged.
"""

FIRST_POOL_MIXED = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
  - 192.168.9.1-192.168.9.5
  - fc00:f853:0ccd:e799::/124
"""

FIRST_POOL_RANGE = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.240-192.168.1.250
"""

CHEAP_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: cheap
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
"""

EXPENSIVE_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: expensive
  namespace: metallb-system
spec:
  addresses:
  - 42.176.25.64/30
  autoAssign: false
"""

SERVICE_ALLOCATION_POOL = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: ippool-ns-service-alloc-sample
  namespace: metallb-system
spec:
  addresses:
    - 192.168.20.0/24
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 50
    namespaces:
      - namespace-a
      - namespace-b
    namespaceSelectors:
      - matchLabels:
          foo: bar
    serviceSelectors:
      - matchExpressions:
          - {key: app, operator: In, values: [bar]}
"""

# From the advanced BGP page: MetalLB masks the host bits of "198.51.100.10/24" to the whole /24.
ADVANCED_BGP_POOL_WITH_HOST_BITS = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 198.51.100.10/24
"""

L2_ALL_POOLS = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
"""

L2_FIRST_POOL = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
"""

L2_NODE_SELECTORS = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  - matchLabels:
      kubernetes.io/hostname: NodeB
"""

L2_INTERFACES = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - third-pool
  interfaces:
  - eth0
  - eth1
"""

L2_NODE_AND_INTERFACE = """
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - fourth-pool
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  interfaces:
  - eth3
"""

BGP_PEER_SAMPLE = """
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: sample
  namespace: metallb-system
spec:
  myASN: 64500
  peerASN: 64501
  peerAddress: 10.0.0.1
"""

BGP_PEER_NODE_SELECTORS = """
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: example
  namespace: metallb-system
spec:
  myASN: 64512
  peerASN: 64512
  peerAddress: 172.30.0.3
  peerPort: 180
  nodeSelectors:
  - matchLabels:
      rack: frontend
    matchExpressions:
    - key: network-speed
      operator: NotIn
      values: [slow]
  - matchExpressions:
    - key: kubernetes.io/hostname
      operator: In
      values: [hostA, hostB]
"""

BGP_PEER_SOURCE_ADDRESS = """
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: example
  namespace: metallb-system
spec:
  myASN: 64512
  peerASN: 64512
  peerAddress: 172.30.0.3
  peerPort: 179
  sourceAddress: 172.30.0.2
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: node-1
"""

BGP_PEER_BFD = """
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: peersample
  namespace: metallb-system
spec:
  myASN: 64512
  peerASN: 64512
  peerAddress: 172.30.0.3
  bfdProfile: testbfdprofile
"""

BFD_PROFILE = """
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata:
  name: testbfdprofile
  namespace: metallb-system
spec:
  receiveInterval: 380
  transmitInterval: 270
"""

BGP_ADV_ALL_POOLS = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: example
  namespace: metallb-system
"""

BGP_ADV_FIRST_POOL = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
"""

BGP_ADV_LOCAL = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: local
spec:
  ipAddressPools:
  - first-pool
  aggregationLength: 32
  localPref: 100
  communities:
  - 65535:65282
"""

BGP_ADV_EXTERNAL = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: external
spec:
  ipAddressPools:
  - first-pool
  aggregationLength: 24
"""

BGP_ADV_NODES = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: example
spec:
  ipAddressPools:
  - first-pool
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  - matchLabels:
      kubernetes.io/hostname: NodeB
"""

BGP_ADV_PEERS = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: example
spec:
  ipAddressPools:
  - PoolA
  peers:
  - PeerA
  - PeerB
"""

COMMUNITY_ALIASES = """
apiVersion: metallb.io/v1beta1
kind: Community
metadata:
  name: communities
  namespace: metallb-system
spec:
  communities:
  - name: vpn-only
    value: 1234:1
  - name: NO_ADVERTISE
    value: 65535:65282
"""

BGP_ADV_ALIAS = """
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: local
spec:
  ipAddressPools:
  - first-pool
  aggregationLength: 32
  localPref: 100
  communities:
  - vpn-only
"""

ALL_ACCEPTED = {
    "FIRST_POOL_MIXED": FIRST_POOL_MIXED,
    "FIRST_POOL_RANGE": FIRST_POOL_RANGE,
    "CHEAP_POOL": CHEAP_POOL,
    "EXPENSIVE_POOL": EXPENSIVE_POOL,
    "SERVICE_ALLOCATION_POOL": SERVICE_ALLOCATION_POOL,
    "L2_ALL_POOLS": L2_ALL_POOLS,
    "L2_FIRST_POOL": L2_FIRST_POOL,
    "L2_NODE_SELECTORS": L2_NODE_SELECTORS,
    "L2_INTERFACES": L2_INTERFACES,
    "L2_NODE_AND_INTERFACE": L2_NODE_AND_INTERFACE,
    "BGP_PEER_SAMPLE": BGP_PEER_SAMPLE,
    "BGP_PEER_NODE_SELECTORS": BGP_PEER_NODE_SELECTORS,
    "BGP_PEER_SOURCE_ADDRESS": BGP_PEER_SOURCE_ADDRESS,
    "BGP_PEER_BFD": BGP_PEER_BFD,
    "BFD_PROFILE": BFD_PROFILE,
    "BGP_ADV_ALL_POOLS": BGP_ADV_ALL_POOLS,
    "BGP_ADV_FIRST_POOL": BGP_ADV_FIRST_POOL,
    "BGP_ADV_LOCAL": BGP_ADV_LOCAL,
    "BGP_ADV_EXTERNAL": BGP_ADV_EXTERNAL,
    "BGP_ADV_NODES": BGP_ADV_NODES,
    "BGP_ADV_PEERS": BGP_ADV_PEERS,
    "COMMUNITY_ALIASES": COMMUNITY_ALIASES,
    "BGP_ADV_ALIAS": BGP_ADV_ALIAS,
}
