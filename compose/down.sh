#!/usr/bin/env bash
# Stop the metalbus dev stack and delete its volumes (cluster state, streams, kubeconfig).
set -euo pipefail
cd "$(dirname "$0")"
docker compose -f compose.yaml down --volumes --remove-orphans
