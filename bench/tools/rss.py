#!/usr/bin/env python3
"""Resident memory of a server's process tree (bench/compare.sh).

usage: rss.py now PID
           prints "KIB NPROCS": VmRSS summed over PID and all its descendants, now.
       rss.py watch PID OUTFILE [INTERVAL=0.2]
           samples that sum every INTERVAL seconds until PID is gone or SIGTERM/SIGINT;
           keeps "PEAK_KIB NPROCS_AT_PEAK LARGEST_KIB" in OUTFILE, rewritten at each new peak,
           where LARGEST_KIB is the highest VmRSS any one process of the tree reached (with
           worker processes, the figure to set beside one process's own).

The tree is found from each process's parent in /proc/*/stat (a process forked by a worker
counts too); a server's workers are summed, shared pages counted once per process as RSS does.
"""

import os
import signal
import sys
import time


def _ppids():
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    return parents


def tree(root):
    parents = _ppids()
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sample(root):
    """(sum of VmRSS over the tree, processes counted, the largest one's VmRSS)"""
    total = n = largest = 0
    for pid in tree(root):
        v = rss_kib(pid)
        if v is not None:
            total += v
            n += 1
            largest = max(largest, v)
    return total, n, largest


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "now":
        print("%d %d" % sample(int(sys.argv[2]))[:2])
        return
    if len(sys.argv) in (4, 5) and sys.argv[1] == "watch":
        root, out = int(sys.argv[2]), sys.argv[3]
        interval = float(sys.argv[4]) if len(sys.argv) == 5 else 0.2
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        signal.signal(signal.SIGINT, lambda *a: stop.append(1))
        peak, largest = (0, 0), 0
        while not stop and os.path.exists("/proc/%d" % root):
            total, n, big = sample(root)
            if total > peak[0] or big > largest:
                peak = max(peak, (total, n))
                largest = max(largest, big)
                with open(out + ".tmp", "w") as f:
                    f.write("%d %d %d\n" % (peak + (largest,)))
                os.replace(out + ".tmp", out)
            time.sleep(interval)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
