#!/bin/bash
# watchfrr in the foreground: it starts the daemons /etc/frr/daemons enables (zebra and staticd always,
# bgpd and bfdd here) and starts again any that dies. frrcommon.sh is written for neither -e nor -u.
. /usr/lib/frr/frrcommon.sh
install -d -o "$FRR_USER" -g "$FRR_GROUP" -m 0755 "$V_PATH"
exec /usr/lib/frr/watchfrr $(daemon_list)
