"""Models of MetalLB's ``metallb.io`` configuration objects, parsed from the YAML users already apply.

Entry points: :func:`parse_config_object` (one raw object → model, or :class:`InvalidConfigObject`)
and :func:`validate_configuration` (parsed objects → :class:`ConfigurationReport`).
"""

from schemas.metallb.addresses import (
    AddressRange,
    IPAddress,
    IPFamily,
    UnusableKind,
    is_buggy_ip,
    parse_address_range,
)
from schemas.metallb.advertisements import (
    BGPAdvertisement,
    BGPAdvertisementSpec,
    L2Advertisement,
    L2AdvertisementSpec,
    PreferredNodeSelector,
)
from schemas.metallb.bfd import BFDProfile, BFDProfileSpec
from schemas.metallb.bgp import (
    BASIC_AUTH_SECRET_TYPE,
    INLINE_PASSWORD_KEY,
    SECRET_PASSWORD_KEY,
    BGPPeer,
    BGPPeerSpec,
    BGPPeerSpecV1Beta1,
    DynamicASNMode,
    InlinePassword,
    PasswordSecretProblem,
    SecretReference,
    SessionTimers,
    inline_password_of,
    password_secret_message,
    password_secret_problem,
)
from schemas.metallb.common import (
    GoDuration,
    InvalidConfigObject,
    LabelSelector,
    LabelSelectorRequirement,
    MetallbObject,
    ObjectMeta,
    SelectorOperator,
    any_selector_matches,
    format_go_duration,
    parse_go_duration,
)
from schemas.metallb.community import (
    BGPCommunity,
    Community,
    CommunityAlias,
    CommunitySpec,
    LargeCommunity,
    StandardCommunity,
    parse_community,
)
from schemas.metallb.parsing import MODELS, ConfigObject, parse_config_object
from schemas.metallb.pools import IPAddressPool, IPAddressPoolSpec, ServiceAllocation
from schemas.metallb.validation import (
    ConfigProblem,
    ConfigurationReport,
    validate_configuration,
    verdict_depends_on_nodes,
)

__all__ = [
    "BASIC_AUTH_SECRET_TYPE",
    "INLINE_PASSWORD_KEY",
    "MODELS",
    "SECRET_PASSWORD_KEY",
    "AddressRange",
    "BFDProfile",
    "BFDProfileSpec",
    "BGPAdvertisement",
    "BGPAdvertisementSpec",
    "BGPCommunity",
    "BGPPeer",
    "BGPPeerSpec",
    "BGPPeerSpecV1Beta1",
    "Community",
    "CommunityAlias",
    "CommunitySpec",
    "ConfigObject",
    "ConfigProblem",
    "ConfigurationReport",
    "DynamicASNMode",
    "GoDuration",
    "IPAddress",
    "IPAddressPool",
    "IPAddressPoolSpec",
    "IPFamily",
    "InlinePassword",
    "InvalidConfigObject",
    "L2Advertisement",
    "L2AdvertisementSpec",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LargeCommunity",
    "MetallbObject",
    "ObjectMeta",
    "PasswordSecretProblem",
    "PreferredNodeSelector",
    "SecretReference",
    "SelectorOperator",
    "ServiceAllocation",
    "SessionTimers",
    "StandardCommunity",
    "UnusableKind",
    "any_selector_matches",
    "format_go_duration",
    "inline_password_of",
    "is_buggy_ip",
    "parse_address_range",
    "parse_community",
    "parse_config_object",
    "parse_go_duration",
    "password_secret_message",
    "password_secret_problem",
    "validate_configuration",
    "verdict_depends_on_nodes",
]
