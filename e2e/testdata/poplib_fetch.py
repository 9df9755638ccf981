#!/usr/bin/env python3
"""Fetch a POP3 maildrop with Python's poplib, for popbridge's e2e tests.

usage: poplib_fetch.py HOST PORT USER OUTDIR   (password on stdin)

Logs in with USER/PASS, then STAT, LIST, UIDL; RETR and TOP n 0 of every
message; QUIT. Writes into OUTDIR:

  stat.txt          "count size" from STAT
  list.txt          "n size" per line, from LIST
  uidl.txt          "n uid" per line, from UIDL
  N.eml             RETR N: poplib's line list joined with CRLF, plus a
                    final CRLF (poplib strips the line ends and undoes the
                    dot-stuffing)
  N.top             TOP N 0, joined the same way
  N.octets          the octet count poplib reports for RETR N

poplib counts each line's CRLF in its octet total, so for a CRLF message
N.octets equals the size of N.eml.
"""

import os
import poplib
import sys


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


def main():
    host, port, user, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    password = sys.stdin.readline().rstrip("\n")
    # Lines past poplib's default _MAXLINE (2048) are legal in mail.
    poplib._MAXLINE = 1 << 20

    pop = poplib.POP3(host, port, timeout=60)
    pop.user(user)
    pop.pass_(password)

    count, size = pop.stat()
    write(outdir, "stat.txt", f"{count} {size}\n".encode())

    _, listing, _ = pop.list()
    write(outdir, "list.txt", b"".join(line + b"\n" for line in listing))

    _, uidls, _ = pop.uidl()
    write(outdir, "uidl.txt", b"".join(line + b"\n" for line in uidls))

    for entry in listing:
        n = int(entry.split()[0])
        _, lines, octets = pop.retr(n)
        write(outdir, f"{n}.eml", joined(lines))
        write(outdir, f"{n}.octets", f"{octets}\n".encode())
        _, lines, _ = pop.top(n, 0)
        write(outdir, f"{n}.top", joined(lines))

    pop.quit()


def write(outdir, name, data):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
