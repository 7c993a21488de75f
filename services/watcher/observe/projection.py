"""What the ``K8S`` stream should hold for one resource, kept up to date from lists and watch events.

Pure state, no I/O: a projection is told the whole list (``replace``, or a page at a time: ``begin_list``,
``folding`` per page, ``ending_list``) or one watch event (``apply``) and answers which subjects may have
changed and what each should now hold (``desired``). The reflector compares that with what it knows the
stream holds and publishes the difference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from schemas.events import NodeEndpoints, ObjectKind, SecretObserved, ServiceObserved
from schemas.metallb import SECRET_PASSWORD_KEY, PasswordSecretProblem, PasswordSecretState, password_secret_problem
from services.common.compact import add_member, discard_member
from services.common.subjects import k8s_subject, parse_k8s_subject
from services.watcher.observe.translate import (
    Identity,
    Observation,
    PackedObservation,
    RawObject,
    SliceSummary,
    endpoints_hash,
    endpoints_identity,
    endpoints_observed,
    fold_endpoints,
    object_key,
    password_secret_of,
    peer_password_observed,
    referenced_secrets,
    slice_summary,
    tombstone,
    with_password_secret,
)

#: One raw object → its observation; None when the object has nothing to publish on this projection's kind.
Translate = Callable[[RawObject], Observation | None]


def observed(translate: Translate, obj: RawObject, *, on_error: Callable[[RawObject, Exception], None]
             ) -> Observation | None:
    """``translate(obj)``; None, told to ``on_error``, when it cannot be translated."""
    try:
        return translate(obj)
    except ValueError as error:  # Untranslatable, or a value the event model refuses
        on_error(obj, error)
        return None


class Projection(ABC):
    def __init__(self, kind: ObjectKind) -> None:
        self.kind = kind
        self._list_version = ""

    def replace(self, items: Sequence[RawObject], list_version: str) -> None:
        """Forget everything and take ``items`` (a full list at ``list_version``) as the world."""
        for _ in self.replacing(items, list_version):
            pass

    def replacing(self, items: Sequence[RawObject], list_version: str) -> Iterator[None]:
        """:meth:`replace`, a step per object: the caller may let the event loop turn between steps (a list
        of 50 000 objects is seconds of work). Nothing else may use the projection until the last step."""
        self.begin_list(list_version)
        yield from self.folding(items)
        yield from self.ending_list()

    def begin_list(self, list_version: str) -> None:
        """A list at ``list_version`` starts: its pages go to :meth:`folding`, one after the other, and
        :meth:`ending_list` makes them the world, whatever the list lacks gone. The raw objects of a page are
        not kept (only what is published is): a page can be let go once folded. Nothing else may use the
        projection from here to the last step of :meth:`ending_list`."""
        self._list_version = list_version

    @abstractmethod
    def folding(self, items: Sequence[RawObject]) -> Iterator[None]:
        """Take one page of the list begun, a step per object."""

    def ending_list(self) -> Iterator[None]:
        """The list begun is whole: it becomes the world (a step per piece of work)."""
        yield from ()

    @abstractmethod
    def apply(self, change: str, obj: RawObject) -> list[str]:
        """Take one watch event (ADDED, MODIFIED, DELETED); the subjects that may have changed."""

    @abstractmethod
    def desired(self, subject: str) -> Observation | None:
        """What ``subject`` should hold now; None when it should hold a tombstone."""

    def desired_identity(self, subject: str) -> Identity | None:
        """The identity of what ``subject`` should hold now (None: a tombstone), to compare with the stream's
        without making the value itself."""
        observation = self.desired(subject)
        return observation.identity if observation is not None else None

    @abstractmethod
    def subjects(self) -> Iterable[str]:
        """Every subject that should hold a value now."""

    def refresh(self) -> list[str]:
        """Inputs from outside the resource changed; the subjects that may have changed."""
        return []

    #: Whether a subject can be emptied again and again while its object lives on (a fold, a Secret no longer
    #: referenced, a password taken off its peer): then each emptying is a tombstone of its own, with an id
    #: per change; otherwise an object is deleted once and its tombstone's id is per uid.
    empties_while_the_object_lives = False

    def tombstone(self, subject: str, stored: Identity, trigger: str) -> Observation:
        kind, namespace, name = parse_k8s_subject(subject)
        uid = "" if self.empties_while_the_object_lives else stored.uid
        return tombstone(kind, namespace, name, uid, trigger)


class ObjectProjection(Projection):
    """One object, one subject, at most one event (Services, Nodes, Namespaces, metallb.io objects, the
    inline passwords of BGPPeers, ...)."""

    def __init__(
        self, kind: ObjectKind, translate: Translate, *, on_error: Callable[[RawObject, Exception], None]
    ) -> None:
        super().__init__(kind)
        self._translate = translate
        self._on_error = on_error
        self._current: dict[str, Observation] = {}
        self._listed: dict[str, Observation] = {}  # the list begun, so far

    def _observe(self, obj: RawObject) -> Observation | None:
        return observed(self._translate, obj, on_error=self._on_error)

    def begin_list(self, list_version: str) -> None:
        super().begin_list(list_version)
        self._listed = {}

    def folding(self, items: Sequence[RawObject]) -> Iterator[None]:
        for obj in items:
            if (observation := self._observe(obj)) is not None:
                self._listed[observation.subject] = observation
            yield

    def ending_list(self) -> Iterator[None]:
        self._current, self._listed = self._listed, {}
        yield from super().ending_list()

    def apply(self, change: str, obj: RawObject) -> list[str]:
        namespace, name, _ = object_key(obj)
        subject = k8s_subject(self.kind, namespace, name)
        observation = self._observe(obj) if change != "DELETED" else None
        if observation is None:
            self._current.pop(subject, None)
        else:
            self._current[observation.subject] = observation
        return [subject]

    def desired(self, subject: str) -> Observation | None:
        return self._current.get(subject)

    def subjects(self) -> Iterable[str]:
        return self._current.keys()


ServiceName = tuple[str, str]  # namespace, name

#: The only Services whose endpoints any consumer reads: ipam places and advertises LoadBalancers alone.
LOAD_BALANCER = "LoadBalancer"


#: Names compared per step when a list's Services replace the known ones.
REPLACE_STEP = 2000


class LoadBalancerServices:
    """The Services that are LoadBalancers now, and every Service seen (listed, or changed since): told by
    the Services' projection, read by the endpoints' one, which publishes the endpoints of the LoadBalancers,
    and of a Service not seen yet whose endpoints came by a watch first (a new Service's decision then holds
    its endpoints: one decision, one trace). Changes are kept until the endpoints' projection takes them
    (:meth:`take_changes`), and each is told to the listeners (the endpoints' reflector, to refresh). A
    deleted Service stays seen until the next list of the Services, so endpoints Kubernetes has not deleted
    yet are not published again meanwhile."""

    def __init__(self) -> None:
        self.names: set[ServiceName] = set()
        self.seen: set[ServiceName] = set()
        self.known = False
        self._changed: set[ServiceName] = set()
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def replacing(self, names: set[ServiceName], *, seen: set[ServiceName]) -> Iterator[None]:
        """A list's Services replace the known ones, the differences found a step per ``REPLACE_STEP`` names
        (the sets' differences at once held the loop ~50 ms at 50 000 Services)."""
        changed: set[ServiceName] = set()
        for new, old in ((names, self.names), (seen, self.seen), (self.names, names), (self.seen, seen)):
            for count, name in enumerate(new, start=1):
                if name not in old:
                    changed.add(name)
                if count % REPLACE_STEP == 0:
                    yield
        self._changed |= changed
        self.names, self.seen, self.known = names, seen, True
        self._tell()

    def put(self, name: ServiceName, *, load_balancer: bool) -> None:
        if load_balancer == (name in self.names) and name in self.seen:
            return
        if load_balancer:
            self.names.add(name)
        else:
            self.names.discard(name)
        self.seen.add(name)
        self._changed.add(name)
        self._tell()

    def take_changes(self) -> set[ServiceName]:
        changed, self._changed = self._changed, set()
        return changed

    def _tell(self) -> None:
        if self._changed:
            for listener in self._listeners:
                listener()


def _load_balancer_name(observation: Observation | None) -> ServiceName | None:
    """The Service's namespace and name when it is a LoadBalancer."""
    event = observation.event if observation is not None else None
    if isinstance(event, ServiceObserved) and event.service_type == LOAD_BALANCER:
        return event.ref.namespace, event.ref.name
    return None


class ServiceProjection(Projection):
    """Services; tells ``load_balancers`` which of them are LoadBalancers. Each Service's observation is kept
    packed (``PackedObservation``: its event as JSON, a sixth of the model's memory — with 50 000 Services
    these are most of the watcher's heap) and made a model again when it is published."""

    def __init__(
        self, translate: Translate, *, load_balancers: LoadBalancerServices,
        on_error: Callable[[RawObject, Exception], None],
    ) -> None:
        super().__init__(ObjectKind.SERVICE)
        self._translate = translate
        self._on_error = on_error
        self._load_balancers = load_balancers
        self._current: dict[str, PackedObservation] = {}
        # the list begun, so far: each Service packed as it is folded, its raw object let go with its page
        self._listed: dict[str, PackedObservation] = {}
        self._listed_load_balancers: set[ServiceName] = set()
        self._listed_seen: set[ServiceName] = set()

    def _observe(self, obj: RawObject) -> Observation | None:
        return observed(self._translate, obj, on_error=self._on_error)

    def begin_list(self, list_version: str) -> None:
        super().begin_list(list_version)
        self._listed, self._listed_load_balancers, self._listed_seen = {}, set(), set()

    def folding(self, items: Sequence[RawObject]) -> Iterator[None]:
        for obj in items:
            if (observation := self._observe(obj)) is not None:
                self._listed[observation.subject] = PackedObservation.of(observation)
                if isinstance(event := observation.event, ServiceObserved):
                    self._listed_seen.add((event.ref.namespace, event.ref.name))
                if (name := _load_balancer_name(observation)) is not None:
                    self._listed_load_balancers.add(name)
            yield

    def ending_list(self) -> Iterator[None]:
        self._current, self._listed = self._listed, {}  # the last list's Services are let go: a step of its own
        yield
        names, seen = self._listed_load_balancers, self._listed_seen
        self._listed_load_balancers, self._listed_seen = set(), set()
        yield from self._load_balancers.replacing(names, seen=seen)
        yield from super().ending_list()

    def apply(self, change: str, obj: RawObject) -> list[str]:
        namespace, name, _ = object_key(obj)
        subject = k8s_subject(self.kind, namespace, name)
        observation = self._observe(obj) if change != "DELETED" else None
        if observation is None:
            self._current.pop(subject, None)
        else:
            self._current[observation.subject] = PackedObservation.of(observation)
        is_one = observation is not None and observation.subject == subject and _load_balancer_name(observation)
        self._load_balancers.put((namespace, name), load_balancer=bool(is_one))
        return [subject]

    def desired(self, subject: str) -> Observation | None:
        packed = self._current.get(subject)
        return packed.unpacked(subject) if packed is not None else None

    def desired_identity(self, subject: str) -> Identity | None:
        packed = self._current.get(subject)  # kept beside the packed event: compared without unpacking it
        return packed.identity if packed is not None else None

    def subjects(self) -> Iterable[str]:
        return self._current.keys()


class SecretReferences:
    """The Secret names BGPPeers reference, shared by the BGPPeer and Secret projections."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.known = False
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def update(self, names: frozenset[str]) -> None:
        changed = names != self.names or not self.known
        self.names, self.known = names, True
        if changed:
            for listener in self._listeners:
                listener()


class SecretStates:
    """What each Secret of the configuration namespace gives a BGPPeer that names it (a password, or
    MetalLB's reason why not), never the password itself: kept by the Secrets' projection, read by the
    BGPPeers', which says it beside each peer it publishes (``PasswordSecretState``)."""

    def __init__(self) -> None:
        self._present: dict[str, PasswordSecretState] = {}
        self._gone: dict[str, str] = {}  # name → the version at which it went
        self.known = False
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def state_of(self, name: str) -> PasswordSecretState:
        missing = PasswordSecretState(problem=PasswordSecretProblem.MISSING, version=self._gone.get(name, ""))
        return self._present.get(name, missing)

    def replace(self, present: dict[str, PasswordSecretState], version: str) -> None:
        gone = {name: version for name in self._present.keys() - present.keys()}
        self._set(present, {**self._gone, **gone}, first=not self.known)

    def put(self, name: str, state: PasswordSecretState | None, version: str) -> None:
        """``state`` None: the Secret went (or cannot be read) at ``version``."""
        present, gone = dict(self._present), dict(self._gone)
        if state is None:
            present.pop(name, None)
            gone[name] = version
        else:
            present[name] = state
        self._set(present, gone, first=False)

    def _set(self, present: dict[str, PasswordSecretState], gone: dict[str, str], *, first: bool) -> None:
        changed = present != self._present or first
        self._present, self._gone, self.known = present, gone, True
        if changed:
            for listener in self._listeners:
                listener()


def secret_state(observation: Observation | None) -> PasswordSecretState | None:
    """What a Secret, as observed, gives a BGPPeer; None when it could not be read."""
    event = observation.event if observation is not None else None
    if not isinstance(event, SecretObserved):
        return None
    problem = password_secret_problem(event.secret_type, has_password=SECRET_PASSWORD_KEY in event.data)
    return PasswordSecretState(problem=problem, version=event.ref.resource_version)


class PeerProjection(ObjectProjection):
    """BGPPeers; keeps their raw objects to tell which Secrets they reference, and, once the Secrets are
    known (``states``), says beside each peer with a ``passwordSecret`` what that Secret gives."""

    def __init__(
        self, translate: Translate, *, namespace: str, references: SecretReferences,
        on_error: Callable[[RawObject, Exception], None], states: SecretStates | None = None,
    ) -> None:
        super().__init__(ObjectKind.BGP_PEER, translate, on_error=on_error)
        self._namespace = namespace
        self._references = references
        self._states = states
        self._raw: dict[str, RawObject] = {}
        self._listed_raw: dict[str, RawObject] = {}

    def _observe(self, obj: RawObject) -> Observation | None:
        observation = super()._observe(obj)
        reference = password_secret_of(obj, self._namespace)
        if observation is None or reference is None or self._states is None or not self._states.known:
            return observation
        namespace, name = reference
        if namespace != self._namespace:  # never read: MetalLB reads the configuration namespace's only
            return with_password_secret(observation, PasswordSecretState(problem=PasswordSecretProblem.MISSING))
        return with_password_secret(observation, self._states.state_of(name))

    def refresh(self) -> list[str]:
        """The Secrets changed: the peers whose passwordSecret now gives something else."""
        changed = []
        for subject, obj in self._raw.items():
            before = self._current.get(subject)
            if before is None or password_secret_of(obj, self._namespace) is None:
                continue
            after = self._observe(obj)
            if after is not None and after.identity != before.identity:
                self._current[subject] = after
                changed.append(subject)
        return changed

    def begin_list(self, list_version: str) -> None:
        super().begin_list(list_version)
        self._listed_raw = {}

    def folding(self, items: Sequence[RawObject]) -> Iterator[None]:
        yield from super().folding(items)
        self._listed_raw.update((k8s_subject(self.kind, *object_key(obj)[:2]), obj) for obj in items)

    def ending_list(self) -> Iterator[None]:
        yield from super().ending_list()
        self._raw, self._listed_raw = self._listed_raw, {}
        self._publish_references()

    def apply(self, change: str, obj: RawObject) -> list[str]:
        subjects = super().apply(change, obj)
        if change == "DELETED":
            self._raw.pop(subjects[0], None)
        else:
            self._raw[subjects[0]] = obj
        self._publish_references()
        return subjects

    def _publish_references(self) -> None:
        self._references.update(referenced_secrets(self._raw.values(), self._namespace))


class PeerPasswordProjection(ObjectProjection):
    """The inline passwords of BGPPeers, one subject per peer that has a usable one (on ``SECRETS``), fed the
    same objects as the BGPPeers' projection. An unreadable peer is reported there, not twice."""

    empties_while_the_object_lives = True  # a password removed, put back and removed again

    def __init__(self) -> None:
        super().__init__(ObjectKind.BGP_PEER_PASSWORD, peer_password_observed, on_error=self._reported_by_the_peers)

    @staticmethod
    def _reported_by_the_peers(obj: RawObject, error: Exception) -> None:
        pass


class SecretProjection(ObjectProjection):
    """Secrets of the configuration namespace; only those a BGPPeer references are desired."""

    empties_while_the_object_lives = True  # no longer referenced, referenced again, and so on

    def __init__(
        self, translate: Translate, *, references: SecretReferences, on_error: Callable[[RawObject, Exception], None],
        states: SecretStates | None = None,
    ) -> None:
        super().__init__(ObjectKind.SECRET, translate, on_error=on_error)
        self._references = references
        self._states = states
        self._seen_names: frozenset[str] = frozenset()

    def _wanted(self, subject: str) -> bool:
        return parse_k8s_subject(subject)[2] in self._references.names

    def ending_list(self) -> Iterator[None]:
        yield from super().ending_list()
        self._seen_names = self._references.names
        if self._states is not None:
            present = {parse_k8s_subject(subject)[2]: secret_state(o) for subject, o in self._current.items()}
            self._states.replace({name: state for name, state in present.items() if state is not None},
                                 self._list_version)

    def apply(self, change: str, obj: RawObject) -> list[str]:
        subjects = super().apply(change, obj)
        if self._states is not None:
            _, name, version = object_key(obj)
            self._states.put(name, secret_state(self._current.get(subjects[0])), version)
        return subjects

    def desired(self, subject: str) -> Observation | None:
        return super().desired(subject) if self._wanted(subject) else None

    def subjects(self) -> Iterable[str]:
        return [s for s in super().subjects() if self._wanted(s)]

    def refresh(self) -> list[str]:
        changed = self._seen_names ^ self._references.names
        self._seen_names = self._references.names
        return [s for s in super().subjects() if parse_k8s_subject(s)[2] in changed]


class _Fold(NamedTuple):
    """What is kept of a Service's fold between changes: its digest, and enough to make it again from the
    slices (kept whole, it was ~400 bytes a Service)."""

    service: ServiceName
    #: the resourceVersion of the change, or list, that made it (part of its id)
    trigger: str
    digest: str


class EndpointsProjection(Projection):
    """EndpointSlices folded per Service: one subject per Service that has slices — given
    ``load_balancers``, per LoadBalancer Service only: a Service that stops being one has its fold
    tombstoned, one that becomes one has it published, whichever of the two objects changes first. A fold is
    made again from the slices' summaries when it is published; only its digest is kept (``_Fold``)."""

    empties_while_the_object_lives = True  # a fold has no uid of its own

    def __init__(
        self, *, on_error: Callable[[RawObject, Exception], None], load_balancers: LoadBalancerServices | None = None
    ) -> None:
        super().__init__(ObjectKind.ENDPOINTS)
        self._on_error = on_error
        self._load_balancers = load_balancers
        self._slices: dict[tuple[str, str], SliceSummary] = {}
        # each Service's slices, a small set kept as a tuple (``add_member``)
        self._by_service: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._folds: dict[str, _Fold] = {}  # by subject
        self._early: set[ServiceName] = set()  # Services not seen yet whose endpoints a watch brought

    def _summary(self, obj: RawObject) -> SliceSummary | None:
        try:
            return slice_summary(obj)
        except ValueError as error:
            self._on_error(obj, error)
            return None

    def _add(self, summary: SliceSummary) -> None:
        key = (summary.namespace, summary.name)
        self._slices[key] = summary
        if summary.service:
            add_member(self._by_service, (summary.namespace, summary.service), key)

    def _remove(self, key: tuple[str, str]) -> SliceSummary | None:
        old = self._slices.pop(key, None)
        if old is not None and old.service:
            discard_member(self._by_service, (old.namespace, old.service), key)
        return old

    def _nodes(self, service: tuple[str, str]) -> tuple[NodeEndpoints, ...]:
        return fold_endpoints(self._slices[key] for key in sorted(self._by_service.get(service, ())))

    def _refold(self, service: tuple[str, str], trigger: str) -> str:
        subject = k8s_subject(self.kind, *service)
        if service not in self._by_service:
            self._folds.pop(subject, None)
        else:
            self._folds[subject] = _Fold(service, trigger, endpoints_hash(self._nodes(service)))
        return subject

    def begin_list(self, list_version: str) -> None:
        super().begin_list(list_version)
        self._slices, self._by_service, self._folds = {}, {}, {}
        self._early = set()  # listed after the Services: a Service not seen now is gone, not early

    def folding(self, items: Sequence[RawObject]) -> Iterator[None]:
        for obj in items:
            if (summary := self._summary(obj)) is not None:
                self._add(summary)  # a summary alone is kept, not the slice
            yield

    def ending_list(self) -> Iterator[None]:
        for service in list(self._by_service):
            self._refold(service, self._list_version)
            yield
        if self._load_balancers is not None:
            self._load_balancers.take_changes()  # the list compares every subject anyway
        yield from super().ending_list()

    def apply(self, change: str, obj: RawObject) -> list[str]:
        namespace, name, version = object_key(obj)
        old = self._remove((namespace, name))
        new = self._summary(obj) if change != "DELETED" else None
        if new is not None:
            self._add(new)
        services = {(s.namespace, s.service) for s in (old, new) if s is not None and s.service}
        if self._load_balancers is not None:
            self._early |= {service for service in services if service not in self._load_balancers.seen}
        return [self._refold(service, version) for service in sorted(services)]

    def _wanted(self, subject: str) -> bool:
        if self._load_balancers is None:
            return True
        fold = self._folds.get(subject)
        if fold is None:
            return False
        return fold.service in self._load_balancers.names or (
            fold.service in self._early and fold.service not in self._load_balancers.seen
        )

    def desired(self, subject: str) -> Observation | None:
        fold = self._folds.get(subject) if self._wanted(subject) else None
        if fold is None:
            return None
        return endpoints_observed(*fold.service, self._nodes(fold.service), fold.trigger, fold.digest)

    def desired_identity(self, subject: str) -> Identity | None:
        fold = self._folds.get(subject) if self._wanted(subject) else None
        return endpoints_identity(fold.digest) if fold is not None else None

    def subjects(self) -> Iterable[str]:
        if self._load_balancers is None:
            return self._folds.keys()
        return [subject for subject in self._folds if self._wanted(subject)]

    def refresh(self) -> list[str]:
        """Services became LoadBalancers or stopped being ones: their folds' subjects."""
        if self._load_balancers is None:
            return []
        changed = self._load_balancers.take_changes()
        return sorted(k8s_subject(self.kind, namespace, name) for namespace, name in changed)
