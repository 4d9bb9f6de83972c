#!/usr/bin/env python3
"""Floods a WireGuard UDP port, bounded in count and time.

  wgflood.py garbage HOST PORT COUNT SECONDS
      random datagrams of random sizes (some with valid-looking type bytes)
  wgflood.py handshake HOST PORT COUNT SECONDS RESPONDER_PUBKEY_B64
      handshake initiations with a valid MAC1 for the responder (random ephemeral and
      garbage encrypted fields), the kind that costs the responder work; prints how many
      cookie replies (type 3) came back.

Prints "sent=N cookies=M" on the last line.
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import time


def mac1_key(pub):
    return hashlib.blake2s(b"mac1----" + pub).digest()


def main():
    mode, host, port, count, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    key = mac1_key(base64.b64decode(sys.argv[6])) if mode == "handshake" else None
    sent = cookies = 0
    deadline = time.monotonic() + secs
    while sent < count and time.monotonic() < deadline:
        if mode == "garbage":
            n = int.from_bytes(os.urandom(2), "little") % 1500
            pkt = bytearray(os.urandom(n))
            if n >= 4 and sent % 3 == 0:
                pkt[0:4] = struct.pack("<I", 1 + sent % 4)  # plausible message types
        else:
            body = struct.pack("<I", 1) + os.urandom(4) + os.urandom(32) + os.urandom(48) + os.urandom(28)
            mac1 = hashlib.blake2s(body, key=key, digest_size=16).digest()
            pkt = body + mac1 + bytes(16)
        try:
            s.sendto(bytes(pkt), (host, port))
            sent += 1
        except BlockingIOError:
            time.sleep(0.001)
        try:
            while True:
                r = s.recv(2048)
                if len(r) == 64 and r[0] == 3:
                    cookies += 1
        except BlockingIOError:
            pass
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        try:
            r = s.recv(2048)
            if len(r) == 64 and r[0] == 3:
                cookies += 1
        except BlockingIOError:
            time.sleep(0.01)
    print(f"sent={sent} cookies={cookies}")


if __name__ == "__main__":
    main()
