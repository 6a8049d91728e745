import h, sys, time, threading, json, os, subprocess, signal
W = "/tmp/tmp.Gk05eOqhZO/w"
run = sys.argv[1]; delay_us = int(sys.argv[2]); grace = int(sys.argv[3]); nports = int(sys.argv[4]); sig = getattr(signal, sys.argv[5]); wait_before = float(sys.argv[6])
dd = f"{W}/d1_{run}"
cfg = f"{W}/c1_{run}.json"
h.config(cfg, 19720, 19721, dd, {"a": "http://127.0.0.1:19710/a"}, shutdownGraceSeconds=grace)
p = h.start_relay(cfg, f"{W}/r1_{run}.log", strace=["-e", "trace=fdatasync", "-e", f"inject=fdatasync:delay_enter={delay_us}"])
assert h.wait_ready(19720, 60)
time.sleep(1)
results = []
lock = threading.Lock()
def send(pout, status):
    body = h.event(pout, status)
    t0 = time.time()
    s, d = h.post_event(19720, body, timeout=120)
    with lock:
        results.append((pout, status, s, d[:200].decode(errors="replace"), round(time.time()-t0, 2), json.loads(body)["id"]))
threads = []
# per port out: issued first, then initiated/processing shortly after (wait on writes in flight)
for i in range(nports):
    pout = f"pout_{run}_{i}"
    t = threading.Thread(target=send, args=(pout, "issued")); t.start(); threads.append(t)
time.sleep(0.2)
for i in range(nports):
    pout = f"pout_{run}_{i}"
    for st in ("processing", "initiated", "completed"):
        t = threading.Thread(target=send, args=(pout, st)); t.start(); threads.append(t)
time.sleep(wait_before)
t_sig = time.time()
os.kill(p.pid, sig)  # strace forwards? send to relay child
for t in threads: t.join(150)
try:
    rc = p.wait(120)
except subprocess.TimeoutExpired:
    rc = "HUNG"
print("rc", rc, "exit after", round(time.time() - t_sig, 2))
from collections import Counter
print(Counter((r[2]) for r in results))
for r in sorted(results):
    print(r[:5])
json.dump(results, open(f"{W}/res1_{run}.json", "w"))
