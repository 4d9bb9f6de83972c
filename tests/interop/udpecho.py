#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""UDP echo server for tests/interop/udp_test.sh: echoes every datagram to its sender; appends
the size of every datagram larger than 1252 bytes (over the tunnel MTU) to LOG.

  udpecho.py ADDR PORT LOG
"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
log = open(sys.argv[3], "a", buffering=1)
while True:
    data, peer = s.recvfrom(70000)
    if len(data) > 1252:
        log.write("%d %s:%d\n" % (len(data), peer[0], peer[1]))
    try:
        s.sendto(data, peer)
    except OSError as e:
        log.write("send error %s\n" % e)
