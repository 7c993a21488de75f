#!/usr/bin/env bash
# Bring the metalbus dev stack up, configure it, and show a Service getting an IP the client reaches.
#
#   compose/up.sh
#
# Needs Docker with the compose plugin. Re-running it is safe. Stop with compose/down.sh.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=..
compose() { docker compose -f compose.yaml "$@"; }
kubectl() { compose exec -T k3s kubectl "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "building the metalbus image"
compose build

step "starting NATS, Jaeger, the k3s server and its nodes, the router and the client"
compose up -d nats jaeger k3s node-a node-b router client

step "waiting for the cluster (three nodes Ready)"
for _ in $(seq 1 90); do
  ready=$(kubectl get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l || true)
  [ "${ready:-0}" -ge 3 ] && break
  sleep 2
done
kubectl get nodes -o wide

step "installing the namespace and the metallb.io CRDs"
kubectl apply -f - < "$ROOT/k8s/base/namespace.yaml"
kubectl apply -f - < "$ROOT/k8s/base/crds.yaml"
kubectl wait --for=condition=Established crd --all --timeout=60s

step "starting the authenticator and provisioning the streams (the admin user, once)"
compose up -d authenticator
compose run --rm provision

step "starting the watcher, ipam and the announcers"
compose up -d watcher ipam announcer-a announcer-b

step "applying the configuration (compose/config/lab.yaml) and the example backend and Services"
kubectl apply -f - < config/lab.yaml
kubectl apply -f - < "$ROOT/examples/services/backend.yaml"
kubectl apply -f - < "$ROOT/examples/services/etp-local.yaml"
kubectl apply -f - < config/bgp-service.yaml
kubectl -n demo rollout status deployment/echo --timeout=180s

wait_for_ip() {
  local service=$1 ip=""
  for _ in $(seq 1 60); do
    ip=$(kubectl -n demo get service "$service" -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)
    [ -n "$ip" ] && { echo "$ip"; return 0; }
    sleep 2
  done
  echo "no IP for $service; see docs/troubleshooting.md" >&2
  kubectl -n demo describe service "$service" >&2
  return 1
}

step "waiting for the Services' external IPs"
l2_ip=$(wait_for_ip echo-local)
bgp_ip=$(wait_for_ip echo-bgp)
kubectl -n demo get services

step "from the client: layer 2 ($l2_ip) and BGP ($bgp_ip)"
compose exec -T client curl -sS --max-time 5 "http://$l2_ip/hostname"; echo
compose exec -T client ip neigh show "$l2_ip"
compose exec -T router vtysh -c "show ip route $bgp_ip"
compose exec -T client curl -sS --max-time 5 "http://$bgp_ip/hostname"; echo

step "what metalbus says (as the read-only operator user)"
OPERATOR_NATS=nats://operator:dev-operator@nats:4222
compose exec -T ipam metalbus status --nats "$OPERATOR_NATS"
compose exec -T ipam metalbus explain demo/echo-local --nats "$OPERATOR_NATS"

cat <<INFO

Jaeger (traces of every change, watcher -> ipam -> announcer -> watcher): http://localhost:16686
NATS monitoring: http://localhost:8222      kubectl: docker compose -f compose/compose.yaml exec k3s kubectl ...
Stop and clean up: compose/down.sh
INFO
