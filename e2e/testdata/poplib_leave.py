"""One "fetch" of a client that keeps mail on the server but deletes what
it is told to: log in, print the UIDL list, DELE the messages whose UIDLs
are given on the command line, QUIT. The password comes on stdin.

usage: poplib_leave.py HOST PORT USER [UIDL...]
"""
import poplib
import sys

host, port, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
delete = set(sys.argv[4:])
p = poplib.POP3(host, port, timeout=30)
p.user(user)
p.pass_(sys.stdin.readline().rstrip("\n"))
_, listing, _ = p.uidl()
for line in listing:
    n, uidl = line.decode().split()
    print(uidl)
    if uidl in delete:
        p.dele(int(n))
p.quit()
